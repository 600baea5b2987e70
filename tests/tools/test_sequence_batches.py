"""Shared sequential machinery: next-item windows, batches, the loss, and the encoder contract every
sequential tool relies on (causal, blind to padding, so scores never depend on batch company; learns order).
The per-tool contract checks live in tests/tools/contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reasonrec.tools.data import PAD, Histories, Queries, ToolData
from reasonrec.tools.gru4rec import GRU4Rec
from reasonrec.tools.lightsans import LightSANs
from reasonrec.tools.nextitnet import NextItNet
from reasonrec.tools.sasrec import SASRec
from reasonrec.tools.sequence_batches import (IGNORE_TARGET, next_item_batches, next_item_examples,
                                              next_item_loss, trim_left_padding)
from tests.tools.conftest import prepared
from tests.tools.contract import popularity_metrics, sampled_metrics

torch.set_num_threads(1)
SEQUENTIAL_TOOLS = (SASRec, LightSANs, NextItNet, GRU4Rec)


@pytest.fixture(scope="module")
def chain_data(tmp_path_factory) -> ToolData:
    """An order-only set: 400 users walk a ring of 200 items (next = current + 1 with probability 0.85, else
    a random item), 12 steps each. Every item is about equally popular, so only the order predicts the next
    item: popularity is near chance (HR@5 ~ 0.05) and an order-aware model can reach ~0.85."""
    root = tmp_path_factory.mktemp("chain")
    rng = np.random.default_rng(7)
    n_items, rows = 200, []
    for user in range(400):
        item = int(rng.integers(n_items))
        for step in range(12):
            rows.append(f"u{user:03d}\ti{item:03d}\t{step}")
            item = (item + 1) % n_items if rng.random() < 0.85 else int(rng.integers(n_items))
    (root / "source").mkdir()
    (root / "source" / "chain.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows) + "\n")
    return prepared(root / "prepared", name="chain", source={"kind": "recbole", "path": str(root / "source")},
                    splits={"protocols": ["loo"]}, candidates={"ranking_negatives": [99]})


def histories(*sequences: list[int]) -> Histories:
    lengths = [len(s) for s in sequences]
    return Histories(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                     np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences] or [[]]).astype(np.int64))


def test_examples_put_every_transition_once_right_aligned():
    examples = next_item_examples(histories([1, 2, 3], [7], [], [4, 5]), max_len=4)
    assert examples.inputs.tolist() == [[PAD, PAD, 1, 2], [PAD, PAD, PAD, 4]]
    assert examples.targets.tolist() == [[PAD, PAD, 2, 3], [PAD, PAD, PAD, 5]]


def test_long_history_continues_in_older_windows():
    examples = next_item_examples(histories(list(range(10, 17))), max_len=3)   # 7 items, 6 transitions
    assert examples.inputs.tolist() == [[13, 14, 15], [10, 11, 12]]
    assert examples.targets.tolist() == [[14, 15, 16], [11, 12, 13]]
    pairs = {(i, t) for i, t in zip(examples.inputs.ravel(), examples.targets.ravel()) if t != PAD}
    assert pairs == {(k, k + 1) for k in range(10, 16)}


def test_examples_reject_bad_max_len():
    with pytest.raises(ValueError, match="max_len"):
        next_item_examples(histories([1, 2]), max_len=0)


def test_batches_cover_every_window_once_trimmed_and_reproducible():
    rng_items = np.random.default_rng(0)
    seqs = [list(rng_items.integers(0, 20, size=n)) for n in rng_items.integers(2, 12, size=37)]
    examples = next_item_examples(histories(*seqs), max_len=8)
    n_items = 20

    def epoch(seed):
        return list(next_item_batches(examples, batch_size=5, n_items=n_items, rng=np.random.default_rng(seed),
                                      bucket_batches=2))

    batches = epoch(3)
    assert sum(len(b["inputs"]) for b in batches) == len(examples)
    seen_targets = sorted(int(t) for b in batches for t in b["targets"][b["targets"] != IGNORE_TARGET])
    assert seen_targets == sorted(int(t) for t in examples.targets[examples.targets != PAD])
    for b in batches:
        assert b["inputs"].shape == b["targets"].shape
        assert (b["inputs"][:, 0] != n_items).any()                     # trimmed to the longest window
        assert ((b["inputs"] == n_items) == (b["targets"] == IGNORE_TARGET)).all()
    again = epoch(3)
    assert all(torch.equal(a["inputs"], b["inputs"]) for a, b in zip(batches, again))
    assert not all(torch.equal(a["inputs"], b["inputs"]) for a, b in zip(batches, epoch(4)))


def test_trim_keeps_at_least_one_column():
    history = torch.tensor([[9, 9, 9, 1], [9, 9, 2, 3]])
    assert trim_left_padding(history, pad=9).tolist() == [[9, 1], [2, 3]]
    assert trim_left_padding(torch.full((2, 4), 9), pad=9).shape == (2, 1)


def test_loss_is_cross_entropy_over_the_catalogue_at_target_positions():
    torch.manual_seed(0)
    hidden, items = torch.randn(2, 3, 4), torch.randn(6, 4)
    targets = torch.tensor([[IGNORE_TARGET, 1, 5], [IGNORE_TARGET, IGNORE_TARGET, 0]])
    expected = F.cross_entropy(torch.stack([hidden[0, 1], hidden[0, 2], hidden[1, 2]]) @ items.T,
                               torch.tensor([1, 5, 0]))
    assert torch.allclose(next_item_loss(hidden, targets, items), expected)


@pytest.mark.parametrize("tool_class", SEQUENTIAL_TOOLS, ids=lambda c: c.name)
def test_encoder_is_causal_and_blind_to_padding(tool_class):
    n_items, max_len = 30, 8
    tool = tool_class(tool_class.config_class(embedding_dim=16, max_len=max_len), n_users=3, n_items=n_items)
    module = tool.module.eval()
    with torch.no_grad():
        a = module(torch.tensor([[n_items, n_items, 1, 2, 3, 4, 5, 6]]))
        b = module(torch.tensor([[n_items, n_items, 1, 2, 3, 9, 9, 9]]))
        assert torch.allclose(a[:, :5], b[:, :5], atol=1e-5)          # the past does not see the future
        assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-3)       # ... and the future is used
        unpadded = module(torch.tensor([[1, 2, 3, 4, 5, 6]]))
        assert torch.allclose(unpadded[:, -1], a[:, -1], atol=1e-5)


@pytest.mark.parametrize("tool_class", SEQUENTIAL_TOOLS, ids=lambda c: c.name)
def test_scores_do_not_depend_on_batch_company(tool_class):
    n_items, max_len = 30, 10
    tool = tool_class(tool_class.config_class(embedding_dim=16, max_len=max_len), n_users=4, n_items=n_items)
    history = np.full((4, max_len), PAD)
    history[0, -2:] = [3, 4]
    history[1, :] = np.arange(10, 20)
    history[2, -5:] = [5, 6, 7, 8, 9]                 # row 3: no history at all
    queries = Queries(np.arange(4), history)
    together = tool.score_all(queries)
    alone = np.concatenate([tool.score_all(queries.take(slice(u, u + 1))) for u in range(4)])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.isfinite(together).all()
    assert not np.allclose(together[0], together[2])


@pytest.mark.parametrize("tool_class", SEQUENTIAL_TOOLS, ids=lambda c: c.name)
def test_every_sequential_tool_learns_item_order(tool_class, chain_data):
    tool = tool_class(tool_class.config_class(epochs=8, seed=0), chain_data.n_users, chain_data.n_items)
    tool.fit(chain_data)
    hr5, popularity = sampled_metrics(tool, chain_data)["HR@5"], popularity_metrics(chain_data)["HR@5"]
    assert popularity < 0.15
    assert hr5 >= 0.6, (tool.name, hr5, popularity)   # measured: sasrec, lightsans, gru4rec 0.85; nextitnet 0.81


@pytest.mark.parametrize("tool_class", SEQUENTIAL_TOOLS, ids=lambda c: c.name)
def test_training_is_deterministic_given_the_seed(tool_class, chain_data):
    def scores(seed: int) -> np.ndarray:
        tool = tool_class(tool_class.config_class(epochs=1, seed=seed), chain_data.n_users, chain_data.n_items)
        tool.fit(chain_data)
        return tool.score_all(chain_data.queries(np.arange(20), "train", tool.cfg.max_len))

    first = scores(3)
    np.testing.assert_array_equal(first, scores(3))
    assert not np.allclose(first, scores(4))

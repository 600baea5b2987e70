"""The shared CTR input layer and plumbing (reasonrec/tools/ctr_fields.py); the CTR contract checks the
per-model tests share live in tests/tools/contract.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reasonrec.tools import ctr_fields
from reasonrec.tools.ctr_fields import (DENSE_FIELD, FIELD_NAMES, CTRFields, CTRTool, group_positives,
                                        prefix_histories, standardised)
from reasonrec.tools.data import PAD, Histories
from reasonrec.tools.training import ctr_probabilities

torch.set_num_threads(1)

HISTORY, LAST_ITEM, ITEM = FIELD_NAMES.index("history"), FIELD_NAMES.index("last_item"), FIELD_NAMES.index("item")


def tiny_fields(n_users=3, n_items=10, dim=4, features=None, with_linear=False) -> CTRFields:
    torch.manual_seed(0)
    return CTRFields(n_users, n_items, dim, features, dense_hidden=8, max_len=4, with_linear=with_linear).eval()


class FlatHead(torch.nn.Module):
    """The simplest interaction head: a linear function of the concatenated fields (with dropout, so the
    determinism test covers the random draws of training too)."""

    def __init__(self, n_fields: int, dim: int):
        super().__init__()
        self.dropout = torch.nn.Dropout(0.2)
        self.out = torch.nn.Linear(n_fields * dim, 1)

    def forward(self, inputs):
        return self.out(self.dropout(inputs.fields.flatten(1))).squeeze(-1)


class FlatCTR(CTRTool):
    name = "test_flat_ctr"

    def build_head(self, n_fields, dim):
        return FlatHead(n_fields, dim)


# ------------------------------------------------------------------ training rows

def test_group_positives_maps_each_row_to_its_groups_positive():
    users = np.array([4, 4, 4, 7, 7, 7])
    items = np.array([10, 11, 12, 20, 21, 22])
    labels = np.array([1, 0, 0, 1, 0, 0])
    assert group_positives(users, items, labels).tolist() == [10, 10, 10, 20, 20, 20]


def test_group_positives_rejects_rows_out_of_group_order():
    with pytest.raises(ValueError, match="row 0"):
        group_positives(np.array([1, 1]), np.array([5, 6]), np.array([0, 1]))
    with pytest.raises(ValueError, match="CTR row 2: user_idx 9 differs"):
        group_positives(np.array([1, 1, 9]), np.array([5, 6, 7]), np.array([1, 0, 0]))


def test_prefix_histories_stop_before_the_first_occurrence_of_the_positive():
    # user 0: 5 6 7 8 5 ; user 1: (none) ; user 2: 1 2
    histories = Histories(np.array([0, 5, 5, 7]), np.array([5, 6, 7, 8, 5, 1, 2]))
    users = np.array([0, 0, 0, 0, 2, 1])
    positives = np.array([7, 5, 9, 8, 2, 3])
    assert prefix_histories(histories, users, positives, 3).tolist() == [
        [PAD, 5, 6],       # before item 7
        [PAD, PAD, PAD],   # item 5 is the user's first item (its repeat later does not count)
        [7, 8, 5],         # positive not in the history: the whole history, most recent 3
        [5, 6, 7],
        [PAD, PAD, 1],
        [PAD, PAD, PAD],   # empty history
    ]


def test_training_batches_share_a_prefix_per_group_that_excludes_the_positive(synthetic_data):
    class InOrder:  # rows in file order, so each group's rows stay together
        def permutation(self, n):
            return np.arange(n)

    tool = FlatCTR(FlatCTR.config_class(batch_size=10**6), synthetic_data.n_users, synthetic_data.n_items)
    (batch,) = list(tool.training_batches(synthetic_data, InOrder()))
    frame = synthetic_data.ctr["train"]
    assert len(batch["label"]) == len(frame)
    assert batch["label"].sum().item() == frame["label"].sum()
    history, item, label = batch["history"], batch["item"], batch["label"]
    assert not (history == item.unsqueeze(1)).any(), "no CTR train row sees its own item in its history"
    starts = torch.nonzero(label == 1).squeeze(1)
    group = torch.cumsum(label == 1, 0) - 1
    assert torch.equal(history, history[starts][group]), "a positive and its negatives share one history"
    assert (history != synthetic_data.n_items).any(1).float().mean() > 0.5, "most rows do have a history"


# ------------------------------------------------------------------ fields

def test_fields_have_one_vector_per_field_for_every_pair():
    fields = tiny_fields(with_linear=True)
    out = fields(torch.tensor([0, 2]), torch.tensor([[10, 10, 1, 2], [3, 4, 5, 6]]), torch.tensor([[7, 8, 9],
                                                                                                    [1, 2, 3]]))
    assert out.fields.shape == (6, len(FIELD_NAMES), 4)
    assert out.linear.shape == (6,)
    assert tiny_fields()(torch.tensor([0]), torch.tensor([[1, 2, 3, 4]]), torch.tensor([[5]])).linear is None


def test_candidate_is_left_out_of_its_own_history():
    fields = tiny_fields()
    user = torch.tensor([1])
    with torch.no_grad():
        in_history = fields(user, torch.tensor([[1, 2, 3, 4]]), torch.tensor([[3]])).fields[0]
        removed = fields(user, torch.tensor([[10, 1, 2, 4]]), torch.tensor([[3]])).fields[0]
        other = fields(user, torch.tensor([[1, 2, 3, 4]]), torch.tensor([[6]])).fields[0]
        item = fields.items
        assert torch.allclose(in_history[HISTORY], item(torch.tensor([1, 2, 4])).mean(0))
        assert torch.allclose(in_history[HISTORY], removed[HISTORY])
        assert torch.allclose(other[HISTORY], item(torch.tensor([1, 2, 3, 4])).mean(0))
    # History length counts the candidate, so the dense field does not tell a history member apart.
    assert torch.equal(in_history[DENSE_FIELD], other[DENSE_FIELD])


def test_last_item_is_the_most_recent_item_that_is_not_the_candidate():
    fields = tiny_fields()
    with torch.no_grad():
        out = fields(torch.tensor([0]), torch.tensor([[10, 1, 2, 4]]), torch.tensor([[4, 9]])).fields
        assert torch.equal(out[0, LAST_ITEM], fields.items(torch.tensor(2)))  # candidate 4 is skipped
        assert torch.equal(out[1, LAST_ITEM], fields.items(torch.tensor(4)))
        assert torch.equal(out[1, ITEM], fields.items(torch.tensor(9)))


def test_an_empty_history_gives_zero_history_fields():
    fields = tiny_fields()
    with torch.no_grad():
        out = fields(torch.tensor([0]), torch.tensor([[10, 10, 10, 3]]), torch.tensor([[3]])).fields[0]
    assert not out[HISTORY].any() and not out[LAST_ITEM].any()


def test_content_variant_starts_as_the_id_model_on_standardised_features():
    raw = torch.rand(10, 6) * 50 + 100
    raw[:, 2] = 7.0  # a constant column
    fields = tiny_fields(features=raw)
    buffer = fields.items.item_features
    assert torch.allclose(buffer.mean(0), torch.zeros(6), atol=1e-5)
    assert torch.allclose(buffer[:, [0, 1, 3, 4, 5]].std(0), torch.ones(5), atol=1e-5)
    assert not buffer[:, 2].any()
    assert torch.equal(standardised(raw), buffer)
    with torch.no_grad():
        assert torch.equal(fields.items(torch.arange(10)), fields.items.ids(torch.arange(10)))
    assert fields.bottom_mlp[0].in_features == 1 + 6  # log history length + the candidate's content


# ------------------------------------------------------------------ scoring

def test_whole_catalogue_scoring_in_item_chunks_matches_candidate_scoring(synthetic_data, monkeypatch):
    tool = FlatCTR(FlatCTR.config_class(), synthetic_data.n_users, synthetic_data.n_items)
    queries = synthetic_data.queries(np.arange(7), "train", tool.cfg.max_len)
    every_item = np.tile(np.arange(synthetic_data.n_items), (7, 1))
    monkeypatch.setattr(ctr_fields, "MAX_SCORED_PAIRS", 100)  # 14 items per chunk
    np.testing.assert_allclose(tool.score_all(queries), tool.score(queries, every_item), rtol=1e-5, atol=1e-6)


def test_a_dataset_without_ctr_rows_is_refused(synthetic_data):
    import dataclasses

    tool = FlatCTR(FlatCTR.config_class(), synthetic_data.n_users, synthetic_data.n_items)
    with pytest.raises(ValueError, match="no CTR rows"):
        next(tool.training_batches(dataclasses.replace(synthetic_data, ctr=None), np.random.default_rng(0)))


def test_training_is_deterministic_given_the_seed(synthetic_data):
    """Initialisation, batch order and dropout all follow cfg.seed (the three models add no other randomness)."""
    def fitted_scores(seed):
        tool = FlatCTR(FlatCTR.config_class(epochs=1, seed=seed), synthetic_data.n_users, synthetic_data.n_items)
        tool.fit(synthetic_data)
        return ctr_probabilities(tool, synthetic_data, "valid")[1]

    first = fitted_scores(0)
    np.testing.assert_array_equal(first, fitted_scores(0))
    assert not np.array_equal(first, fitted_scores(1))

"""Tool labels: usable = target in the top-k of the history the instance shows; shown outputs and noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from reasonrec.tools.data import PAD
from reasonrec.vlm.tokens import item_token
from reasonrec.vlm.tool_labels import (TOOL_HINTS, ToolOutputs, choose_consulted, ctr_tools, label_ctr,
                                       label_ranking, pad_histories, ranking_tools, show_outputs)
from tests.vlm.conftest import user_items


def test_pad_histories_right_aligned():
    out = pad_histories([np.array([1, 2, 3]), np.array([], dtype=np.int64), np.array([4])], 2)
    assert out.tolist() == [[2, 3], [PAD, PAD], [PAD, 4]]


def test_tools_split_by_task(fake_tools, bpr_tool):
    tools = {**fake_tools, "bpr_mf": bpr_tool}
    assert list(ranking_tools(tools)) == ["bpr_mf", "low_id"]
    assert list(ctr_tools(tools)) == ["parity"]
    assert ranking_tools(None) == {}


def test_low_id_tool_top_k_by_hand(fake_tools):
    tools = {"low_id": fake_tools["low_id"]}
    histories = [np.array([0, 5]), np.array([], dtype=np.int64), np.array([1, 2, 3])]
    targets = np.array([4, 9, 2])
    out = label_ranking(tools, np.array([0, 1, 2]), histories, targets, n_items=200, k=3, m=2)
    # excluding the history, the low-id tool's top-3 are [1,2,3], [0,1,2] and [0,4,5]
    assert out.top_items[:, 0].tolist() == [[1, 2], [0, 1], [0, 4]]
    assert out.usable[:, 0].tolist() == [False, False, False]
    out = label_ranking(tools, np.array([0, 1, 2]), histories, np.array([3, 2, 5]), n_items=200, k=3, m=2)
    assert out.usable[:, 0].tolist() == [True, True, True]
    kept = label_ranking(tools, np.array([2]), histories[2:], np.array([2]), n_items=200, k=3, m=2,
                         exclude_history=False)
    assert kept.top_items[0, 0].tolist() == [0, 1] and kept.usable[0, 0]  # history item 2 is now allowed
    assert np.isnan(out.click).all() and ((out.confidence >= 0) & (out.confidence <= 1)).all()
    assert out.usable_names(0) == ["low_id"] and out.usable_share().tolist() == [1.0, 1.0, 1.0]


def test_real_tool_matches_its_own_topk_and_batching(vlm_data, bpr_tool):
    """For valid instances the history is the whole train part: label_ranking must agree with Tool.topk
    excluding train items, and must not depend on the batch size."""
    frame = vlm_data.valid_candidates
    users = frame["user_idx"].to_numpy()
    targets = frame["target_item_idx"].to_numpy()
    histories = [user_items(vlm_data.train, int(u)) for u in users]
    out = label_ranking({"bpr_mf": bpr_tool}, users, histories, targets, vlm_data.n_items, k=10, m=10,
                        batch_size=7)
    rows = np.repeat(np.arange(vlm_data.n_users), vlm_data.train.lengths())
    exclude = sparse.csr_array((np.ones(len(rows), dtype=bool), (rows, vlm_data.train.items)),
                               shape=(vlm_data.n_users, vlm_data.n_items))
    expected, _ = bpr_tool.topk(vlm_data.queries(users, "train", bpr_tool.cfg.max_len), 10, exclude=exclude)
    assert np.array_equal(out.top_items[:, 0], expected)
    assert np.array_equal(out.usable[:, 0], (expected == targets[:, None]).any(axis=1))
    again = label_ranking({"bpr_mf": bpr_tool}, users, histories, targets, vlm_data.n_items, k=10, m=10,
                          batch_size=1000)
    assert np.array_equal(again.top_items, out.top_items)
    assert np.allclose(again.confidence, out.confidence, atol=1e-5)  # float32 matmuls differ by batch shape
    # a trained tool finds far more targets than chance (10 / ~185 unseen items, about 5%)
    assert out.usable.mean() > 0.1


def test_ctr_labels(fake_tools):
    out = label_ctr({"parity": fake_tools["parity"]}, np.array([0, 0, 1, 1]), [np.array([3])] * 4,
                    np.array([2, 3, 4, 5]), np.array([1, 1, 0, 0]))
    assert out.click[:, 0] == pytest.approx([0.731, 0.269, 0.731, 0.269], abs=1e-3)
    assert out.usable[:, 0].tolist() == [True, False, False, True]
    assert out.confidence[:, 0] == pytest.approx([0.731] * 4, abs=1e-3)


def test_choose_consulted_rules():
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    assert choose_consulted(rng(), 3, force=False, share=0.0, max_consulted=2, noise_prob=0.0) == ([], [])
    columns, noisy = choose_consulted(rng(), 3, force=True, share=0.0, max_consulted=2, noise_prob=0.0)
    assert len(columns) == 2 and columns == sorted(set(columns)) and noisy == [False, False]
    columns, noisy = choose_consulted(rng(), 3, force=False, share=1.0, max_consulted=5, noise_prob=1.0)
    assert columns == [0, 1, 2] and noisy == [True] * 3
    assert choose_consulted(rng(), 0, force=True, share=1.0, max_consulted=2, noise_prob=0.0) == ([], [])
    shares = [bool(choose_consulted(np.random.default_rng(s), 2, False, 0.3, 1, 0.0)[0]) for s in range(2000)]
    assert np.mean(shares) == pytest.approx(0.3, abs=0.04)


def test_show_outputs_format_and_noise():
    out = ToolOutputs(["low_id", "parity"], np.array([[True, False]]), np.array([[[4, 7, 1], [-1, -1, -1]]]),
                      np.array([[0.55, 0.8]]), np.array([[np.nan, 0.2]]))
    text = show_outputs(out, 0, [0, 1], [False, False], np.random.default_rng(0), n_items=50, target=7)
    assert text == f"{TOOL_HINTS} <tool_low_id> <item_4> <item_7> <item_1> <conf_5>; <tool_parity> <no> <conf_8>."
    assert show_outputs(out, 0, [], [], np.random.default_rng(0), 50, 7) == ""
    for seed in range(200):  # a noisy list is random items, never the target
        noisy = show_outputs(out, 0, [0], [True], np.random.default_rng(seed), n_items=10, target=7)
        shown = noisy.split()[2:5]
        assert item_token(7) not in shown and len(set(shown)) == 3
    assert show_outputs(out, 0, [0], [True], np.random.default_rng(1), 10, 7) == \
        show_outputs(out, 0, [0], [True], np.random.default_rng(1), 10, 7)


def test_confidence_is_finite_when_history_leaves_fewer_than_k_items(fake_tools):
    out = label_ranking({"low_id": fake_tools["low_id"]}, np.array([0]), [np.arange(198)], np.array([199]),
                        n_items=200, k=10, m=3)
    assert out.top_items[0, 0, :2].tolist() == [198, 199] and out.usable[0, 0]
    assert np.isfinite(out.confidence).all() and 0 <= out.confidence[0, 0] <= 1

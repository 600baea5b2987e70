"""Checks every tool must pass, shared by the per-tool test files (the Tool interface is one contract)."""

from __future__ import annotations

import numpy as np
import scipy.sparse

from reasonrec.baselines import MostPopular, evaluate_sampled
from reasonrec.metrics.ranking import ranking_metrics
from reasonrec.tools.base import Tool, load_tool
from reasonrec.tools.data import ToolData
from reasonrec.tools.training import ranking_ranks


def popularity_hr5(data: ToolData) -> float:
    return evaluate_sampled(MostPopular().fit(data.split.train, data.n_items), data.test_candidates, (5,))["HR@5"]


def sampled_metrics(tool: Tool, data: ToolData) -> dict[str, float]:
    return ranking_metrics(ranking_ranks(tool, data, "test", "train+valid"), (5,))


def check_scores_topk_and_confidence(tool: Tool, data: ToolData) -> None:
    """score agrees with score_all, topk skips excluded items and is sorted, confidence lies in [0, 1]."""
    queries = data.queries(np.arange(30), "train+valid", tool.cfg.max_len)
    candidates = np.random.default_rng(1).integers(0, tool.n_items, size=(30, 15))
    scores = tool.score(queries, candidates)
    assert scores.shape == (30, 15) and scores.dtype == np.float32 and np.isfinite(scores).all()
    np.testing.assert_allclose(scores, np.take_along_axis(tool.score_all(queries), candidates, 1),
                               rtol=1e-5, atol=1e-6)
    exclude = scipy.sparse.csr_array((np.ones(30, dtype=bool), (np.arange(30), np.arange(30))),
                                     shape=(data.n_users, tool.n_items))
    items, top_scores = tool.topk(queries, 7, exclude=exclude)
    assert items.shape == top_scores.shape == (30, 7)
    assert not (items == np.arange(30)[:, None]).any()  # user u's excluded item u never comes back
    assert np.all(np.diff(top_scores, axis=1) <= 0)
    confidence = tool.confidence(scores)
    assert confidence.shape == (30,) and np.all((confidence >= 0) & (confidence <= 1))


def check_content_round_trip(tool: Tool, data: ToolData, features: np.ndarray, tmp_path):
    """A fitted '+V' tool scores, and its checkpoint reloads to identical scores; returns what a caller may
    check further: (queries, candidates, scores, the checkpoint folder)."""
    assert tool.fit_history[-1]["best"]["valid_NDCG@5"] > 0
    queries = data.queries(np.arange(20), "train+valid", tool.cfg.max_len)
    candidates = np.tile(np.arange(10), (20, 1))
    scores = tool.score(queries, candidates)
    assert scores.shape == (20, 10) and np.isfinite(scores).all()
    folder = tool.save(tmp_path / "ckpt")
    np.testing.assert_array_equal(load_tool(folder, features).score(queries, candidates), scores)
    return queries, candidates, scores, folder

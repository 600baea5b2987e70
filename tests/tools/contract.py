"""Checks every tool must pass, shared by the per-tool test files (the Tool interface is one contract): ranking
tools (collaborative and sequential) and CTR tools."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse
import torch

from reasonrec.baselines import MostPopular, evaluate_sampled
from reasonrec.metrics.ctr import auc, ctr_metrics, log_loss
from reasonrec.metrics.ranking import ranking_metrics, seen_matrix
from reasonrec.tools.base import Tool, load_tool
from reasonrec.tools.data import ToolData
from reasonrec.tools.training import ctr_probabilities, ranking_ranks


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


def check_same_weights(first: Tool, second: Tool) -> None:
    """Two fits with the same seed end with identical weights (training is deterministic)."""
    for a, b in zip(first.module.state_dict().values(), second.module.state_dict().values()):
        assert torch.equal(a, b)


def check_save_load_scores(tool: Tool, data: ToolData, folder) -> Tool:
    """save -> load_tool gives the same class and config, and identical scores and top-5; returns the copy."""
    queries = data.queries(np.arange(50), "train+valid", tool.cfg.max_len)
    candidates = np.random.default_rng(0).integers(0, tool.n_items, size=(50, 20))
    loaded = load_tool(tool.save(folder))
    assert type(loaded) is type(tool) and loaded.cfg == tool.cfg
    np.testing.assert_array_equal(loaded.score(queries, candidates), tool.score(queries, candidates))
    np.testing.assert_array_equal(loaded.topk(queries, 5)[0], tool.topk(queries, 5)[0])
    return loaded


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


# ---------------------------------------------------------------- sequential tools (full contract + round trip)

def popularity_metrics(data: ToolData) -> dict[str, float]:
    """Most-popular on the test lists, counting train + valid: the same interactions the tools see at test."""
    seen = pd.concat([data.split.train, data.split.valid], ignore_index=True)
    return evaluate_sampled(MostPopular().fit(seen, data.n_items), data.test_candidates, ks=(5,))


def check_tool_contract(tool: Tool, data: ToolData, folder: Path, n_queries: int = 40) -> None:
    """Scores, full-catalogue scores, top-k with exclusion, confidence, and an exact save/load round trip."""
    from reasonrec.tools import TOOLS
    TOOLS.setdefault(tool.name, type(tool))   # the lead registers the class in reasonrec/tools/__init__.py
    frame = data.test_candidates.iloc[:n_queries]
    candidates = np.stack(frame["candidates"].to_numpy()).astype(np.int64)
    queries = data.queries(frame["user_idx"].to_numpy(), "train+valid", tool.cfg.max_len)

    scores = tool.score(queries, candidates)
    assert scores.shape == candidates.shape and scores.dtype == np.float32 and np.isfinite(scores).all()
    every_item = tool.score_all(queries)
    assert every_item.shape == (len(queries), data.n_items)
    np.testing.assert_allclose(np.take_along_axis(every_item, candidates, axis=1), scores, rtol=1e-4, atol=1e-4)

    train = data.split.train
    seen = seen_matrix(train["user_idx"].to_numpy(), train["item_idx"].to_numpy(), data.n_users, data.n_items)
    items, top_scores = tool.topk(queries, 10, exclude=seen)
    assert items.shape == top_scores.shape == (len(queries), 10)
    assert (np.diff(top_scores, axis=1) <= 0).all()
    assert not np.take_along_axis(seen[queries.user_idx].toarray(), items, axis=1).any()

    confidence = tool.confidence(scores)
    assert confidence.shape == (len(queries),) and ((confidence >= 0) & (confidence <= 1)).all()

    tool.save(folder)
    loaded = load_tool(folder)
    assert type(loaded) is type(tool) and loaded.cfg == tool.cfg
    np.testing.assert_array_equal(loaded.score(queries, candidates), scores)


# ------------------------------------------------------------------------------------------------ CTR tools

def held_out_metrics(tool, data: ToolData) -> dict[str, float]:
    """AUC and LogLoss on the CTR test rows, histories from train + valid."""
    return ctr_metrics(*ctr_probabilities(tool, data, "test"))


def popularity_auc(data: ToolData) -> float:
    """Test AUC of scoring an item by how often it is a positive among the CTR train rows (what the models
    train on). Counts over the ranking split's train part would include the CTR test positives themselves."""
    train, test = data.ctr["train"], data.ctr["test"]
    counts = np.bincount(train["item_idx"][train["label"] == 1], minlength=data.n_items)
    return auc(test["label"].to_numpy(), counts[test["item_idx"].to_numpy()] / max(counts.max(), 1))


def constant_log_loss(data: ToolData) -> float:
    """Test LogLoss of always predicting the train click rate (0.2 for 1:4 negatives)."""
    labels = data.ctr["test"]["label"].to_numpy()
    return log_loss(labels, np.full(len(labels), data.ctr["train"]["label"].mean()))


def check_scoring_interface(tool, data: ToolData) -> None:
    """Logits for the fixed 1+99 test lists, top-k without seen items, confidence in [0, 1]."""
    frame = data.test_candidates.head(25)
    queries = data.queries(frame["user_idx"].to_numpy(), "train+valid", tool.cfg.max_len)
    candidates = np.stack(frame["candidates"].to_numpy())
    scores = tool.score(queries, candidates)
    assert scores.shape == candidates.shape and np.isfinite(scores).all()
    assert scores.std() > 0
    seen = data.train_valid
    owner = np.repeat(np.arange(data.n_users), seen.lengths())
    exclude = scipy.sparse.csr_array((np.ones(len(owner), dtype=bool), (owner, seen.items)),
                                     shape=(data.n_users, data.n_items))
    items, top_scores = tool.topk(queries, 5, exclude=exclude)
    assert items.shape == top_scores.shape == (len(frame), 5)
    assert not exclude[np.repeat(queries.user_idx, 5), items.ravel()].any(), "top-k must skip seen items"
    assert (np.diff(top_scores, axis=1) <= 0).all()
    confidence = tool.confidence(scores)
    assert confidence.shape == (len(frame),) and ((confidence >= 0) & (confidence <= 1)).all()


def check_round_trip(tool, data: ToolData, folder) -> None:
    """save -> load_tool (content features, if any, restored from the weights) scores identically."""
    loaded = load_tool(tool.save(folder))
    assert type(loaded) is type(tool) and loaded.cfg == tool.cfg
    frame = data.ctr["test"].head(500)
    queries = data.queries(frame["user_idx"].to_numpy(), "train+valid", tool.cfg.max_len)
    candidates = frame["item_idx"].to_numpy()[:, None]
    np.testing.assert_array_equal(loaded.score(queries, candidates), tool.score(queries, candidates))

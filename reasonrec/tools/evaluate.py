"""One evaluation for every tool, on the fixed lists written by prepare_data (never redrawn):

- sampled ranking: HR/NDCG@5,10 on the 1+N test lists, history = train + valid;
- full ranking: HR/NDCG@5,10 against the whole catalogue minus the user's train + valid items (targets the
  user had already seen are left out and counted);
- CTR tools also: AUC and LogLoss on the CTR test rows.
The most-popular baseline and the majority-vote ensemble go through the same functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reasonrec.baselines import MostPopular
from reasonrec.data.candidates import full_ranking_targets
from reasonrec.metrics.ctr import auc, ctr_metrics
from reasonrec.metrics.ranking import full_ranking_ranks, rank_of_target, ranking_metrics
from reasonrec.tools.base import Tool
from reasonrec.tools.data import ToolData
from reasonrec.tools.ensemble import MajorityVote
from reasonrec.tools.training import ctr_probabilities, ranking_ranks

KS = (5, 10)


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}{name}": value for name, value in metrics.items() if not name.startswith("MRR")}


def sampled_metrics(tool: Tool, data: ToolData) -> dict[str, float]:
    return _prefixed("sampled_", ranking_metrics(ranking_ranks(tool, data, "test", "train+valid"), KS))


def full_metrics(tool: Tool | MostPopular, data: ToolData, batch_size: int = 512) -> dict[str, Any]:
    targets = full_ranking_targets(data.split, "test")
    keep = ~targets.targets["target_seen_before"].to_numpy()
    users = targets.targets["user_idx"].to_numpy()[keep]
    items = targets.targets["target_item_idx"].to_numpy()[keep]
    if isinstance(tool, MostPopular):
        score_fn = tool.score_all_items
    else:
        def score_fn(batch_users):
            return tool.score_all(data.queries(batch_users, "train+valid", tool.cfg.max_len))
    ranks = full_ranking_ranks(score_fn, users, items, data.n_items, seen=targets.exclude, batch_size=batch_size)
    return {**_prefixed("full_", ranking_metrics(ranks, KS)), "full_targets_seen_before": int((~keep).sum())}


def evaluate_tool(tool: Tool, data: ToolData) -> dict[str, Any]:
    """Ranking tools: sampled + full ranking on the ranking split. CTR tools: AUC/LogLoss on the CTR split
    only -- they train on CTR rows of the random split, which contain most users' ranking-test items, so their
    numbers on the ranking lists would not be a test."""
    row: dict[str, Any] = {"tool": tool.name + ("+V" if tool.cfg.use_content else ""), "task": tool.task}
    if tool.task == "ctr":
        row.update(ctr_metrics(*ctr_probabilities(tool, data, "test")))
    else:
        row.update(sampled_metrics(tool, data))
        row.update(full_metrics(tool, data))
    return row


def evaluate_popularity(data: ToolData) -> dict[str, Any]:
    model = MostPopular().fit(_train_valid_frame(data), data.n_items)
    frame = data.test_candidates
    candidates = np.stack(frame["candidates"].to_numpy())
    ranks = rank_of_target(model.score(frame["user_idx"].to_numpy(), candidates), frame["target_position"].to_numpy())
    row: dict[str, Any] = {"tool": "most_popular", "task": "baseline"}
    row.update(_prefixed("sampled_", ranking_metrics(ranks, KS)))
    row.update(full_metrics(model, data))
    if data.ctr is not None:
        # AUC of "score = train count" on the CTR test rows, counted on the CTR split's own train part.
        ctr_train = data.ctr["train"]
        ctr_model = MostPopular().fit(ctr_train[ctr_train["label"] == 1], data.n_items)
        test = data.ctr["test"]
        scores = ctr_model.score(test["user_idx"].to_numpy(), test["item_idx"].to_numpy()[:, None]).ravel()
        row["AUC"] = auc(test["label"].to_numpy(), scores / (scores.max() + 1.0))  # AUC only needs the order
    return row


def evaluate_majority_vote(tools: list[Tool], data: ToolData) -> dict[str, Any]:
    vote = MajorityVote(tools)
    frame = data.test_candidates
    candidates = np.stack(frame["candidates"].to_numpy()).astype(np.int64)
    users = frame["user_idx"].to_numpy()
    queries = [data.queries(users, "train+valid", t.cfg.max_len) for t in tools]
    ranks = rank_of_target(vote.score(queries, candidates), frame["target_position"].to_numpy())
    row: dict[str, Any] = {"tool": vote.name, "task": "ensemble", "members": [t.name for t in tools]}
    row.update(_prefixed("sampled_", ranking_metrics(ranks, KS)))
    return row


def _train_valid_frame(data: ToolData) -> pd.DataFrame:
    """Popularity for the test lists counts train + valid interactions, the history every tool sees at test."""
    return pd.concat([data.split.train, data.split.valid], ignore_index=True)

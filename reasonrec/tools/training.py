"""The one training loop of the zoo: AdamW, epochs of the tool's own batches, early stopping on validation.

Ranking tools stop on NDCG@5 of the fixed 1+N validation candidates (scored with train-only histories);
CTR tools stop on validation AUC. The best epoch's weights are restored at the end, so a late bad epoch
never ships.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from reasonrec.metrics.ctr import auc
from reasonrec.metrics.ranking import ndcg_at_k, rank_of_target
from reasonrec.tools.data import HistoryScope, ToolData

if TYPE_CHECKING:
    from reasonrec.tools.base import Tool


def ranking_ranks(tool: "Tool", data: ToolData, part: str, scope: HistoryScope) -> np.ndarray:
    """0-based ranks of the targets in the fixed candidate lists of `part` ('valid' or 'test')."""
    frame = data.valid_candidates if part == "valid" else data.test_candidates
    candidates = np.stack(frame["candidates"].to_numpy()).astype(np.int64)
    queries = data.queries(frame["user_idx"].to_numpy(), scope, tool.cfg.max_len)
    scores = tool.score(queries, candidates)
    return rank_of_target(scores, frame["target_position"].to_numpy())


def ctr_probabilities(tool: "Tool", data: ToolData, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of a CTR tool on the CTR rows of `part`, with the CTR split's own histories
    (train for 'valid', train + valid for 'test'), never the ranking split's."""
    if data.ctr is None:
        raise ValueError("this dataset has no CTR rows (prepare it with the random split and CTR negatives)")
    frame = data.ctr[part]
    scope: HistoryScope = "ctr_train" if part in ("train", "valid") else "ctr_train+valid"
    queries = data.queries(frame["user_idx"].to_numpy(), scope, tool.cfg.max_len)
    logits = tool.score(queries, frame["item_idx"].to_numpy()[:, None]).ravel()
    return frame["label"].to_numpy(), 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def validation_metric(tool: "Tool", data: ToolData) -> tuple[str, float]:
    if tool.task == "ctr":
        labels, probs = ctr_probabilities(tool, data, "valid")
        return "valid_AUC", auc(labels, probs)
    return "valid_NDCG@5", ndcg_at_k(ranking_ranks(tool, data, "valid", "train"), 5)


def fit_tool(tool: "Tool", data: ToolData) -> list[dict[str, Any]]:
    cfg = tool.cfg
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    optimizer = torch.optim.AdamW([p for p in tool.module.parameters() if p.requires_grad],
                                  lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, Any]] = []
    best_metric, best_state, stale = -np.inf, None, 0
    started = time.perf_counter()
    deadline = started + cfg.max_train_seconds
    for epoch in range(1, cfg.epochs + 1):
        tool.module.train()
        losses = []
        out_of_time = False
        for batch in tool.training_batches(data, rng):
            batch = {key: value.to(tool.device, non_blocking=True) for key, value in batch.items()}
            loss = tool.loss(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{tool.name}: non-finite loss {loss.item()} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            # The budget is checked every step, not only between epochs: one epoch of a large data set can
            # outlast it. The partial epoch is validated like a whole one and kept if it is the best.
            if time.perf_counter() > deadline:
                out_of_time = True
                break
        metric_name, metric = validation_metric(tool, data)
        elapsed = time.perf_counter() - started
        history.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
                        metric_name: metric, "seconds": round(elapsed, 2), "steps": len(losses),
                        **({"stopped_by_budget": True} if out_of_time else {})})
        if metric > best_metric + 1e-6:
            best_metric, best_state, stale = metric, copy.deepcopy(tool.module.state_dict()), 0
        else:
            stale += 1
        if stale >= cfg.patience or out_of_time or elapsed > cfg.max_train_seconds:
            break
    if best_state is not None:
        tool.module.load_state_dict(best_state)
    history.append({"best": {metric_name: best_metric,
                             "epoch": int(np.argmax([h[metric_name] for h in history]) + 1)}})
    return history

"""Ranking quality of VLM readings on fixed candidate lists, and whether its confidence means anything.

The ranking uses the shared rank rule (reasonrec.metrics.ranking: pessimistic ties), so VLM numbers sit in
the same table as the tools'. The confidence check splits the users into the more and the less confident
half: a confidence worth routing on has a clearly higher HR@5 in its top half than in its bottom half.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reasonrec.metrics.ctr import ctr_metrics
from reasonrec.metrics.ranking import hit_rate_at_k, ranking_metrics, rank_of_target
from reasonrec.vlm.records import Instruction
from reasonrec.vlm.scoring import VLMOutput


def target_columns(output: VLMOutput, instructions: Sequence[Instruction]) -> np.ndarray:
    """Column of each row's target_item among its scored candidates; an error names a row without one."""
    if len(instructions) != len(output.scores):
        raise ValueError(f"{len(instructions)} instructions but {len(output.scores)} scored rows")
    columns = np.empty(len(instructions), dtype=np.int64)
    for row, record in enumerate(instructions):
        hits = np.flatnonzero(output.candidates[row] == record.target_item)
        if record.target_item < 0 or hits.size == 0:
            raise ValueError(f"row {row} (user {record.user_idx}, {record.task}): target_item "
                             f"{record.target_item} is not among its {int((output.candidates[row] >= 0).sum())} "
                             f"candidates")
        columns[row] = hits[0]
    return columns


def ranks(output: VLMOutput, instructions: Sequence[Instruction]) -> np.ndarray:
    """0-based rank of each target (padding columns are excluded, ties pessimistic)."""
    return rank_of_target(output.scores, target_columns(output, instructions), output.candidates < 0)


def confidence_halves(values: np.ndarray, row_ranks: np.ndarray, k: int = 5) -> dict[str, float]:
    """HR@k of the more / less confident half (rows with NaN confidence left out; ties broken by row order,
    a stable sort, so equal confidences do not favour either half)."""
    values = np.asarray(values, dtype=np.float64)
    keep = np.flatnonzero(~np.isnan(values))
    if keep.size < 2:
        return {"top_half": float("nan"), "bottom_half": float("nan"), "n": int(keep.size)}
    order = keep[np.argsort(-values[keep], kind="stable")]
    half = keep.size // 2
    top, bottom = order[:half], order[half:]
    return {"top_half": hit_rate_at_k(row_ranks[top], k), "bottom_half": hit_rate_at_k(row_ranks[bottom], k),
            "n": int(keep.size)}


def evaluate_ranking(output: VLMOutput, instructions: Sequence[Instruction], k: int = 5,
                     ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """HR/NDCG/MRR at `ks` on each row's candidates (1+N lists, or the catalogue for rows without a list),
    plus HR@k of the top vs bottom half by `confidence` and by `answer_prob`, and the parse rate."""
    row_ranks = ranks(output, instructions)
    metrics: dict[str, float] = {"n": float(len(row_ranks)), **ranking_metrics(row_ranks, ks)}
    for name in ("confidence", "answer_prob"):
        halves = confidence_halves(getattr(output, name), row_ranks, k)
        metrics[f"{name}_top_half_HR@{k}"] = halves["top_half"]
        metrics[f"{name}_bottom_half_HR@{k}"] = halves["bottom_half"]
    metrics["parse_ok_rate"] = float(np.mean(output.parse_ok)) if len(output.parse_ok) else float("nan")
    return metrics


def evaluate_ctr(output: VLMOutput, instructions: Sequence[Instruction]) -> dict[str, float]:
    """AUC / LogLoss of P(<yes>) against the CTR labels."""
    labels = np.array([r.label for r in instructions], dtype=np.float64)
    if np.isnan(labels).any():
        raise ValueError("evaluate_ctr needs CTR instructions (every label 0/1)")
    return ctr_metrics(labels, output.ctr_prob)

"""Ranking quality of VLM readings on fixed candidate lists, and whether its confidence means anything.

The ranking uses the shared rank rule (reasonrec.metrics.ranking: pessimistic ties), so VLM numbers sit in
the same table as the tools'. The confidence check splits the users into the more and the less confident
half: a confidence worth routing on has a clearly higher HR@5 in its top half than in its bottom half.
`evaluate_run` is a trained run's test table (`jobs/train_vlm.py`'s metrics.json rows and metrics.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import tempfile
import time
from typing import Any

import numpy as np

from reasonrec.io import fetch_dir, join
from reasonrec.metrics.ctr import ctr_metrics
from reasonrec.metrics.ranking import hit_rate_at_k, ranking_metrics, rank_of_target
from reasonrec.vlm.records import Instruction
from reasonrec.vlm.scoring import VLMOutput
from reasonrec.vlm.train_config import TrainVLMConfig


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
    greedy = output.greedy_ok
    metrics["greedy_parse_rate"] = (float(np.mean(greedy)) if greedy is not None and len(greedy)
                                    else float("nan"))
    return metrics


def evaluate_ctr(output: VLMOutput, instructions: Sequence[Instruction]) -> dict[str, float]:
    """AUC / LogLoss of P(<yes>) against the CTR labels."""
    labels = np.array([r.label for r in instructions], dtype=np.float64)
    if np.isnan(labels).any():
        raise ValueError("evaluate_ctr needs CTR instructions (every label 0/1)")
    return ctr_metrics(labels, output.ctr_prob)


def evaluate_run(cfg: TrainVLMConfig, model_uri: str, test_path: str, tool_names: list[str]) -> list[dict[str, Any]]:
    """A trained run's test table (jobs/train_vlm.py): per eval task, the VLM and most-popular on the same
    test lists, with the confidence halves."""
    import torch

    from reasonrec.baselines import MostPopular
    from reasonrec.data.schema import Dataset
    from reasonrec.data.splits import load_split
    from reasonrec.metrics.ranking import ranking_metrics, rank_of_target
    from reasonrec.vlm.build import load_vlm
    from reasonrec.vlm.images import ItemImages
    from reasonrec.vlm.instructions import read_instructions
    from reasonrec.vlm.scoring import VLMScorer

    if not cfg.eval.tasks:
        return []
    ds = Dataset.load(cfg.dataset)
    popular = MostPopular().fit(load_split(join(cfg.dataset, "splits"), cfg.split).train, ds.n_items)
    test = read_instructions(test_path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # <out>/model is complete: no fresh adapters, no re-initialised item rows on top of the trained ones.
    eval_model_cfg = cfg.model.model_copy(update={"lora": cfg.model.lora.model_copy(update={"enabled": False}),
                                                  "item_embedding_tool": None})
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = load_vlm(fetch_dir(model_uri, tmp), eval_model_cfg, device=device)
    model.eval()
    scorer = VLMScorer(model, processor, ItemImages(ds, cfg.model.image_size), tool_names,
                       batch_size=cfg.eval.batch_size, device=device, max_length=cfg.model.max_length)
    rows = []
    for task in cfg.eval.tasks:
        instructions = subset_users([ins for ins in test if ins.task == task], cfg.eval.max_users, cfg.seed)
        if not instructions or any(ins.target_item not in ins.candidates for ins in instructions):
            raise SystemExit(f"task {task!r}: no test instructions, or some without a fixed candidate list "
                             "holding their target")
        started = time.perf_counter()
        metrics = evaluate_ranking(scorer.score(instructions), instructions)
        seconds = time.perf_counter() - started
        candidates = np.array([ins.candidates for ins in instructions])
        targets = np.array([ins.candidates.index(ins.target_item) for ins in instructions])
        users = np.array([ins.user_idx for ins in instructions])
        baseline = ranking_metrics(rank_of_target(popular.score(users, candidates), targets), (1, 5, 10))
        rows.append({"model": "vlm", "task": task, "protocol": f"1+{candidates.shape[1] - 1}",
                     "instances": len(instructions), "score_seconds": round(seconds, 2), **metrics})
        rows.append({"model": "most_popular", "task": task, "protocol": f"1+{candidates.shape[1] - 1}",
                     "instances": len(instructions), **baseline})
    return rows


def subset_users(instructions: list, max_users: int | None, seed: int) -> list:
    """All instructions of a seeded subset of users (all users when max_users is None)."""
    users = sorted({ins.user_idx for ins in instructions})
    if max_users is None or len(users) <= max_users:
        return instructions
    keep = set(np.random.default_rng(seed).choice(users, size=max_users, replace=False).tolist())
    return [ins for ins in instructions if ins.user_idx in keep]


def metrics_markdown(cfg: TrainVLMConfig, train: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """<out>/metrics.md: what was trained, then evaluate_run's rows as a table."""
    columns = ["model", "task", "protocol", "instances", "HR@5", "NDCG@5", "HR@10", "NDCG@10",
               "confidence_top_half_HR@5", "confidence_bottom_half_HR@5", "answer_prob_top_half_HR@5",
               "answer_prob_bottom_half_HR@5", "parse_ok_rate", "greedy_parse_rate"]
    lines = [f"Dataset {cfg.dataset}, split {cfg.split}, test part. Trained {train['step']} steps "
             f"({train['samples']} samples, final loss {train['loss']:.4f}, ZeRO-{cfg.zero_stage}, "
             f"{cfg.num_workers} workers, curriculum {cfg.instructions.curriculum.mode}, "
             f"templates {cfg.instructions.templates}, tools {'on' if cfg.instructions.use_tools else 'off'}).",
             "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

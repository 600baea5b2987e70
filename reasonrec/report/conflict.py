"""Table 4, conflict analysis: when the best tool and ReasonRec put different items first, who is right?
Accuracy is hit@1 (the top-1 item is the held-out one) — the top-1 is what "disagree" is defined on."""

from __future__ import annotations

import numpy as np


def conflict_row(tool_top1: np.ndarray, model_top1: np.ndarray, targets: np.ndarray) -> dict:
    """Accuracy of each, disagreement rate, and each one's accuracy on the rows where they disagree."""
    tool_top1, model_top1, targets = (np.asarray(a, dtype=np.int64) for a in (tool_top1, model_top1, targets))
    if not tool_top1.shape == model_top1.shape == targets.shape:
        raise ValueError(f"shapes differ: tool {tool_top1.shape}, model {model_top1.shape}, targets {targets.shape}")
    n = len(targets)
    tool_hit, model_hit = tool_top1 == targets, model_top1 == targets
    disagree = tool_top1 != model_top1
    d = int(disagree.sum())
    return {"rows": n, "tool_accuracy": float(tool_hit.mean()) if n else None,
            "model_accuracy": float(model_hit.mean()) if n else None,
            "disagreement_rate": d / n if n else None, "disagreements": d,
            "tool_accuracy_on_disagreements": float(tool_hit[disagree].mean()) if d else None,
            "model_accuracy_on_disagreements": float(model_hit[disagree].mean()) if d else None}

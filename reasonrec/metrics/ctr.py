"""Click-through-rate metrics: AUC and LogLoss of predicted click probabilities, computed by sklearn.

The inputs are checked here first because sklearn's own messages (or silent NaN results) do not say which
row is wrong, and an undefined AUC must stop an evaluation rather than be reported as a number.
"""

from __future__ import annotations

import numpy as np
import sklearn.metrics

# LogLoss clips probabilities to [PROB_CLIP, 1 - PROB_CLIP] so one confident wrong prediction costs
# -log(PROB_CLIP) ~= 36.04 instead of infinity. This is float64 machine epsilon, the same bound recent sklearn
# applies itself; clipping here keeps the number identical across sklearn versions.
PROB_CLIP = float(np.finfo(np.float64).eps)


def _checked(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    probs = np.asarray(probs)
    if labels.ndim != 1 or probs.ndim != 1:
        raise ValueError(f"labels {labels.shape} and probs {probs.shape} must be 1-D")
    if len(labels) != len(probs):
        raise ValueError(f"length mismatch: {len(labels)} labels, {len(probs)} probs")
    if len(labels) == 0:
        raise ValueError("no examples: labels and probs are empty")
    if not (np.issubdtype(labels.dtype, np.number) or labels.dtype == np.bool_):
        raise ValueError(f"labels must be 0/1 numbers or bools, got dtype {labels.dtype}")
    if not np.issubdtype(probs.dtype, np.number) or probs.dtype == np.bool_:
        raise ValueError(f"probs must be float probabilities, got dtype {probs.dtype}")
    labels = labels.astype(np.float64)
    probs = probs.astype(np.float64)
    bad_label = np.flatnonzero((labels != 0) & (labels != 1))  # NaN is != both, so caught here too
    if bad_label.size:
        row = int(bad_label[0])
        raise ValueError(f"row {row}: label {float(labels[row])} is not 0 or 1 ({bad_label.size} bad label(s))")
    nan = np.flatnonzero(np.isnan(probs))
    if nan.size:
        raise ValueError(f"row {int(nan[0])}: prob is NaN ({nan.size} NaN prob(s))")
    outside = np.flatnonzero((probs < 0) | (probs > 1))
    if outside.size:
        row = int(outside[0])
        raise ValueError(f"row {row}: prob {float(probs[row])} is outside [0, 1] ({outside.size} such prob(s)); "
                         f"pass probabilities, not logits")
    return labels.astype(np.int64), probs


def auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC: the chance a random positive scores above a random negative (ties count one half)."""
    labels, probs = _checked(labels, probs)
    if labels.min() == labels.max():
        raise ValueError(f"AUC is undefined: all {len(labels)} labels are {int(labels[0])}; it needs both "
                         f"clicks and non-clicks")
    return float(sklearn.metrics.roc_auc_score(labels, probs))


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy in nats, probabilities clipped to [PROB_CLIP, 1 - PROB_CLIP].

    Defined for a single-class label set too (labels=[0, 1] is passed to sklearn), unlike AUC.
    """
    labels, probs = _checked(labels, probs)
    clipped = np.clip(probs, PROB_CLIP, 1.0 - PROB_CLIP)
    return float(sklearn.metrics.log_loss(labels, clipped, labels=[0, 1]))


def ctr_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """{"AUC": ..., "LogLoss": ...}."""
    return {"AUC": auc(labels, probs), "LogLoss": log_loss(labels, probs)}

"""Confidence calibration: does a stated confidence of 0.7 come true 70% of the time? Reliability bins and
the expected calibration error (ECE) of a confidence against a 0/1 outcome (the report uses hit@1 or hit@5
of the answer the confidence was stated for)."""

from __future__ import annotations

import numpy as np


def reliability(confidence: np.ndarray, hit: np.ndarray, bins: int = 10) -> list[dict]:
    """Equal-width bins over [0, 1] (the last one closed): count, mean confidence and hit rate per bin.
    Rows with a NaN confidence (an unreadable answer) are left out; confidences are clipped to [0, 1]."""
    confidence = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(hit, dtype=np.float64)
    if confidence.shape != hit.shape:
        raise ValueError(f"confidence {confidence.shape} and hit {hit.shape} differ in shape")
    keep = ~np.isnan(confidence)
    conf, hit = np.clip(confidence[keep], 0.0, 1.0), hit[keep]
    index = np.minimum((conf * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        on = index == b
        n = int(on.sum())
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "count": n,
                    "confidence": float(conf[on].mean()) if n else None,
                    "accuracy": float(hit[on].mean()) if n else None})
    return out


def ece(confidence: np.ndarray, hit: np.ndarray, bins: int = 10) -> float | None:
    """sum over bins of (share of rows) * |hit rate - mean confidence|; None when no row has a confidence."""
    table = reliability(confidence, hit, bins)
    total = sum(b["count"] for b in table)
    if total == 0:
        return None
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in table if b["count"]))


def calibration_row(name: str, confidence: np.ndarray, hit: np.ndarray, bins: int = 10) -> dict:
    """One line of the calibration table (and the data of its reliability curve)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    readable = ~np.isnan(confidence)
    return {"answer": name, "rows": int(len(confidence)), "readable": int(readable.sum()),
            "mean_confidence": float(confidence[readable].mean()) if readable.any() else None,
            "accuracy": float(np.asarray(hit, dtype=np.float64).mean()) if len(hit) else None,
            "ECE": ece(confidence, hit, bins), "bins": reliability(confidence, hit, bins)}

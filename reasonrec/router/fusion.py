"""The high-risk answer as evidence fusion: the refined VLM ranking and the tools' scores, weighted by validation.

The paper's high-risk path lets the tools refine the VLM's prediction without being authoritative. Keeping the
refined VLM ranking alone (the default `merge`) throws the tools' scores away once their top-3 has been shown;
fusing them with weights fit on validation keeps every source's evidence, and the weights say how much each one
counts. The features are the majority vote's (`standardise`: per row z-scores over the
valid candidates), one column for the VLM's refined log-probabilities and one per pool tool, so the fusion is
the learned tool stack (reasonrec.tools.ensemble.LearnedStack) plus the VLM: whether the VLM adds anything a
tuned ensemble of the same tools cannot reach is read off the two rows side by side.

Weights are fit by a logistic regression on validation lists only (a list's target = 1, its other candidates =
0; jobs/calibrate.py) and stored in policy.json with the thresholds of the same model version.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from reasonrec.config import StrictModel


class FusionWeights(StrictModel):
    """Weights of the VLM+tools fusion (fit on validation by jobs/calibrate.py)."""

    vlm: float = Field(description="Weight of the refined VLM pass's z-scored log-probabilities.")
    tools: dict[str, float] = Field(description=(
        "Weight of each pool tool's z-scored scores (a tool missing here, or not scored for a row, counts 0)."))
    n_rows: int = Field(0, ge=0, description="Validation lists the weights were fit on.")
    regularisation: float = Field(1.0, gt=0, description="Inverse L2 strength C of the logistic regression.")

    def combine(self, vlm_scores: np.ndarray, tool_scores: np.ndarray, names: Sequence[str],
                valid: np.ndarray) -> np.ndarray:
        """[n, C] fused scores (-inf on padding): vlm_scores [n, C], tool_scores [n, T, C] named `names`."""
        features = fusion_features(vlm_scores, tool_scores, valid)
        weights = np.array([self.vlm] + [self.tools.get(name, 0.0) for name in names])
        return np.where(valid, features @ weights, -np.inf)

    def moved_by(self, names: Sequence[str]) -> str:
        """The sources in order of weight, e.g. 'vlm 1.21, sasrec 0.83, gru4rec 0.40' (for rationales)."""
        weights = {"vlm": self.vlm, **{n: self.tools.get(n, 0.0) for n in names}}
        return ", ".join(f"{n} {w:.2f}" for n, w in sorted(weights.items(), key=lambda kv: -abs(kv[1])))


def fusion_features(vlm_scores: np.ndarray, tool_scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[n, C, 1 + T]: the VLM's and each tool's per-row z-scores over the valid candidates."""
    vlm_scores = np.asarray(vlm_scores, dtype=np.float64)
    tool_scores = np.asarray(tool_scores, dtype=np.float64)
    stacked = np.concatenate([vlm_scores[:, None, :], tool_scores], axis=1)        # [n, 1 + T, C]
    z = standardise(stacked, np.asarray(valid, dtype=bool)[:, None, :])
    return np.moveaxis(z, 1, 2)


def fit_fusion(vlm_scores: np.ndarray, tool_scores: np.ndarray, names: Sequence[str], candidates: np.ndarray,
               targets: np.ndarray, regularisation: float = 1.0) -> FusionWeights:
    """Weights from validation lists: one (candidate, is-target) example per valid list entry."""
    from sklearn.linear_model import LogisticRegression

    candidates = np.asarray(candidates, dtype=np.int64)
    valid = candidates >= 0
    y = candidates == np.asarray(targets)[:, None]
    if len(candidates) == 0 or not y.any(axis=1).all():
        raise ValueError("fusion needs validation lists that each hold their target")
    x = fusion_features(vlm_scores, tool_scores, valid)
    model = LogisticRegression(C=regularisation, max_iter=1000)
    model.fit(x[valid], y[valid])
    weights = model.coef_[0]   # the intercept moves every candidate alike: not kept
    return FusionWeights(vlm=round(float(weights[0]), 6),
                         tools={n: round(float(w), 6) for n, w in zip(names, weights[1:])},
                         n_rows=len(candidates), regularisation=regularisation)


def standardise(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per (row, tool) z-scores over the valid, finite columns; other columns get the lowest valid z - 1, so
    a tool that could not score an item votes it last (tools score on different scales: logits, dots)."""
    ok = valid & np.isfinite(scores)
    count = np.maximum(ok.sum(axis=-1, keepdims=True), 1)
    filled = np.where(ok, scores, 0.0)
    mean = filled.sum(axis=-1, keepdims=True) / count
    std = np.sqrt((np.where(ok, scores - mean, 0.0) ** 2).sum(axis=-1, keepdims=True) / count)
    z = np.where(ok, (filled - mean) / np.where(std > 0, std, 1.0), np.inf)
    low = z.min(axis=-1, keepdims=True)
    return np.where(ok, z, np.where(np.isfinite(low), low, 0.0) - 1.0)

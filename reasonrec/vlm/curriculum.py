"""The order training reads instructions in: a risk curriculum on the evidence horizon C(u).

Users with thin or stale evidence (high C) are the hard cases: their targets are barely predictable and
their thoughts should hedge. Showing those first teaches the model to hedge before it has learnt anything
to hedge about, so training starts on low-risk examples, adds medium-risk ones, then all, and in the last
stretch draws high-risk examples `high_risk_upsample` times as often, so the behaviour the router depends
on most (low confidence, consult tools) is the freshest. Pure numpy: the exact index sequence is a
function of (eh, total_samples, cfg, seed) and can be written down, tested and replayed.

Within a phase, examples are drawn in passes: a seeded permutation of the eligible pool, then another,
so every eligible example is seen once before any is seen twice.
"""

from __future__ import annotations

import numpy as np

from reasonrec.vlm.instruction_config import CurriculumConfig

LOW, MEDIUM, HIGH = 0, 1, 2


def risk_levels(eh: np.ndarray, tau_low: float, tau_high: float) -> np.ndarray:
    """int8 per example: LOW (eh < tau_low), HIGH (eh > tau_high), MEDIUM in between (both ends included)."""
    eh = np.asarray(eh, dtype=np.float64)
    out = np.full(eh.shape, MEDIUM, dtype=np.int8)
    out[eh < tau_low] = LOW
    out[eh > tau_high] = HIGH
    return out


def phase_bounds(total_samples: int, cfg: CurriculumConfig) -> tuple[int, int, int]:
    """Sample positions where phase 1 (low), phase 2 (low + medium) and phase 3 (all, unweighted) end."""
    return (int(round(cfg.phase_ends[0] * total_samples)), int(round(cfg.phase_ends[1] * total_samples)),
            int(round(cfg.upsample_after * total_samples)))


def curriculum_order(eh: np.ndarray, total_samples: int, cfg: CurriculumConfig, seed: int) -> np.ndarray:
    """int64 [total_samples] example indices in the order training consumes them.

    A phase whose pool is empty (e.g. no low-risk example) draws from the next wider pool instead.
    """
    eh = np.asarray(eh, dtype=np.float64)
    if total_samples < 0:
        raise ValueError(f"total_samples must be >= 0, got {total_samples}")
    if total_samples == 0:
        return np.empty(0, dtype=np.int64)
    if eh.ndim != 1 or len(eh) == 0:
        raise ValueError(f"eh must be a non-empty 1-d array, got shape {eh.shape}")
    if np.isnan(eh).any():
        raise ValueError("eh contains NaN")
    rng = np.random.default_rng(seed)
    everything = np.arange(len(eh), dtype=np.int64)
    if cfg.mode == "uniform":
        return _passes(rng, everything, total_samples)

    risk = risk_levels(eh, cfg.tau_low, cfg.tau_high)
    low_medium = everything[risk <= MEDIUM]
    low = everything[risk == LOW]
    if len(low_medium) == 0:
        low_medium = everything
    if len(low) == 0:
        low = low_medium
    weighted = np.concatenate([everything, np.repeat(everything[risk == HIGH], cfg.high_risk_upsample - 1)])

    b1, b2, b3 = phase_bounds(total_samples, cfg)
    segments = [(low, b1), (low_medium, b2 - b1), (everything, b3 - b2), (weighted, total_samples - b3)]
    return np.concatenate([_passes(rng, pool, count) for pool, count in segments])


def _passes(rng: np.random.Generator, pool: np.ndarray, count: int) -> np.ndarray:
    if count <= 0:
        return np.empty(0, dtype=np.int64)
    n_passes = -(-count // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(n_passes)])[:count].astype(np.int64)

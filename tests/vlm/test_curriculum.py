"""Curriculum order on constructed EH arrays: phases, shares, upsampling, determinism, the uniform ablation."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.vlm.curriculum import HIGH, LOW, MEDIUM, curriculum_order, phase_bounds, risk_levels
from reasonrec.vlm.instruction_config import CurriculumConfig

# 50 low, 30 medium, 20 high examples, interleaved so index order says nothing about risk.
EH = np.empty(100)
EH[0::2] = 0.1
EH[1::10], EH[3::10], EH[5::10] = 0.5, 0.3, 0.7   # tau_low and tau_high themselves are medium
EH[7::10], EH[9::10] = 0.71, 1.0
CFG = CurriculumConfig(phase_ends=(0.2, 0.5), upsample_after=0.9, high_risk_upsample=3)
TOTAL = 1400  # the upsampled phase is 140 samples: exactly one pass over the 100 + 2 * 20 weighted pool


def test_risk_levels_boundaries():
    assert risk_levels(np.array([0.0, 0.29, 0.3, 0.7, 0.700001, 1.0]), 0.3, 0.7).tolist() == \
        [LOW, LOW, MEDIUM, MEDIUM, HIGH, HIGH]
    risk = risk_levels(EH, CFG.tau_low, CFG.tau_high)
    assert [(risk == level).sum() for level in (LOW, MEDIUM, HIGH)] == [50, 30, 20]


def test_phases_pools_and_upsampled_share():
    order = curriculum_order(EH, TOTAL, CFG, seed=0)
    assert order.dtype == np.int64 and len(order) == TOTAL
    risk = risk_levels(EH, CFG.tau_low, CFG.tau_high)
    b1, b2, b3 = phase_bounds(TOTAL, CFG)
    assert (b1, b2, b3) == (280, 700, 1260)
    phase1, phase2, phase3, tail = order[:b1], order[b1:b2], order[b2:b3], order[b3:]
    assert (risk[phase1] == LOW).all()
    assert set(phase1[:50]) == set(np.flatnonzero(risk == LOW))  # a full pass before any repeat
    assert (risk[phase2] <= MEDIUM).all() and (risk[phase2] == MEDIUM).any()
    assert set(phase2) == set(np.flatnonzero(risk <= MEDIUM))
    assert set(phase3) == set(range(100))
    assert np.bincount(phase3, minlength=100).max() - np.bincount(phase3, minlength=100).min() <= 1
    # tail: one pass over the weighted pool -> each high example 3 times, every other once
    counts = np.bincount(tail, minlength=100)
    assert (counts[risk == HIGH] == 3).all() and (counts[risk != HIGH] == 1).all()
    assert (risk[tail] == HIGH).mean() == pytest.approx(60 / 140)
    # before the tail, high-risk examples appear at their natural share only
    assert (risk[phase3] == HIGH).mean() == pytest.approx(0.2, abs=0.01)


def test_deterministic_and_seed_dependent():
    first = curriculum_order(EH, 500, CFG, seed=7)
    assert np.array_equal(first, curriculum_order(EH, 500, CFG, seed=7))
    assert not np.array_equal(first, curriculum_order(EH, 500, CFG, seed=8))


def test_uniform_mode_is_plain_passes():
    cfg = CFG.model_copy(update={"mode": "uniform"})
    order = curriculum_order(EH, 250, cfg, seed=0)
    assert set(order[:100]) == set(range(100)) and set(order[100:200]) == set(range(100))
    assert np.bincount(order, minlength=100).min() >= 2
    risk = risk_levels(EH, cfg.tau_low, cfg.tau_high)
    assert (risk[order[:50]] == HIGH).any()  # no curriculum: high-risk examples show up from the start


def test_empty_pools_fall_back_to_wider_ones():
    only_high = np.full(10, 0.9)
    order = curriculum_order(only_high, 100, CFG, seed=0)
    assert len(order) == 100 and set(order[:20]) == set(range(10))
    no_low = np.array([0.5, 0.5, 0.9])
    order = curriculum_order(no_low, 100, CFG, seed=0)
    assert set(order[:50]) == {0, 1}  # phases 1 and 2 both use the medium pool


def test_edge_cases_and_config_validation():
    assert len(curriculum_order(EH, 0, CFG, seed=0)) == 0
    with pytest.raises(ValueError):
        curriculum_order(np.array([]), 10, CFG, seed=0)
    with pytest.raises(ValueError):
        curriculum_order(np.array([0.1, np.nan]), 10, CFG, seed=0)
    with pytest.raises(ValueError):
        CurriculumConfig(tau_low=0.8, tau_high=0.2)
    with pytest.raises(ValueError):
        CurriculumConfig(phase_ends=(0.6, 0.3))
    with pytest.raises(ValueError):
        CurriculumConfig(phase_ends=(0.3, 0.96), upsample_after=0.95)

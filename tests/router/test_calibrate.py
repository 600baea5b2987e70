"""Threshold search on hand-built validation arrays whose optimum is known, and against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reasonrec.router.calibrate import calibrate, evaluate
from reasonrec.router.config import Policy, RouterConfig

# Six rows, each built to want one thing (tau_high fixed at 0.75):
#   r0 tool right, VLM wrong          -> tool route (needs tau_low > 0.1, tau_tool <= 0.9)
#   r1 tool unsure (0.2) and wrong    -> keep it off the tool route (tau_tool > 0.2)
#   r2 VLM unsure (0.2), only the second pass is right; its tool is wrong -> escalate, not tool (tau_low <= 0.4)
#   r3 right everywhere               -> indifferent
#   r4 EH 0.9: always escalated       -> right there
#   r5 malformed VLM output: always escalated -> right there
EH = np.array([0.1, 0.1, 0.4, 0.4, 0.9, 0.5])
TOOL = np.array([0.9, 0.2, 0.9, 0.9, 0.9, 0.1])
VLM = np.array([0.9, 0.9, 0.2, 0.9, 0.9, 0.3])
OK = np.array([True, True, True, True, True, False])
HITS = {"tool": np.array([1, 0, 0, 1, 0, 0.0]), "vlm": np.array([0, 1, 0, 1, 0, 0.0]),
        "vlm+tools": np.array([0, 1, 1, 1, 1, 1.0])}
LATENCY = {"tool": 1.0, "vlm": 10.0, "vlm+tools": 30.0}
GRID = {"tau_low": [0.0, 0.25, 0.5], "tau_tool": [0.0, 0.5], "tau_conf": [0.0, 0.5]}
CFG = RouterConfig(tau_high=0.75)


def _run(**kw) -> Policy:
    return calibrate(EH, TOOL, VLM, OK, HITS, LATENCY, model_version="v1", cfg=CFG, **GRID, **kw)


def _taus(p: Policy) -> tuple[float, float, float, float]:
    return p.tau_low, p.tau_tool, p.tau_conf, p.tau_high


def test_unconstrained_optimum_is_the_hand_solution():
    p = _run(target_share=0.0)
    assert _taus(p) == (0.25, 0.5, 0.5, 0.75)
    cal = p.calibration
    assert cal.valid_hr5 == 1.0 and cal.achieved_share == pytest.approx(1 / 6)
    assert cal.expected_latency == pytest.approx((1 + 2 * 10 + 3 * 30) / 6)  # r0 tool; r1, r3 vlm; r2, r4, r5 both
    assert cal.route_shares == pytest.approx({"tool": 1 / 6, "vlm": 2 / 6, "vlm+tools": 3 / 6})
    assert (cal.objective, cal.target, cal.n_rows, cal.split, cal.grid_points) == \
        ("delegation_share", 0.0, 6, "valid", 3 * 2 * 2)
    assert p.model_version == "v1" and p.best_tool == CFG.best_tool


def test_delegation_target_trades_hits_for_share_and_ties_go_to_grid_order():
    # Half the rows on the tool route: tau_low 0.5, tau_tool 0.5 delegates r0, r2, r3 (r2's miss costs 1/6).
    # tau_conf 0 and 0.5 then route every row alike: the first in grid order (0.0) is kept.
    p = _run(target_share=0.5)
    assert _taus(p) == (0.5, 0.5, 0.0, 0.75)
    assert p.calibration.valid_hr5 == pytest.approx(5 / 6) and p.calibration.achieved_share == 0.5
    with pytest.raises(ValueError, match="best is 0.667"):
        _run(target_share=0.8)


def test_latency_budget():
    assert _taus(_run(latency_budget=18.5)) == (0.25, 0.5, 0.5, 0.75)   # the optimum costs exactly 18.5
    # Under 17 the best HR@5 is 5/6; of those settings the cheapest (12.17: r0, r2, r3 on the tool) wins.
    p = _run(latency_budget=17.0)
    assert _taus(p) == (0.5, 0.5, 0.0, 0.75)
    assert p.calibration.expected_latency == pytest.approx(73 / 6) and p.calibration.objective == "latency_budget"
    with pytest.raises(ValueError, match="lowest expected latency is 10.6667"):
        _run(latency_budget=5.0)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="exactly one"):
        _run()
    with pytest.raises(ValueError, match="exactly one"):
        _run(target_share=0.1, latency_budget=3.0)
    with pytest.raises(ValueError, match="shape"):
        calibrate(EH, TOOL[:5], VLM, OK, HITS, LATENCY, model_version="v1", target_share=0.0)


def test_matches_brute_force_over_the_grid():
    rng = np.random.default_rng(0)
    n = 500
    eh, tool, conf = rng.random(n), rng.random(n), rng.random(n)
    eh[:5] = np.nan                                   # unknown EH: never tool, always escalated
    ok = rng.random(n) > 0.1
    # Hits correlated with the signals the router sees, so the thresholds matter.
    hits = {"tool": (rng.random(n) < tool * (1 - np.nan_to_num(eh, nan=1.0))).astype(float),
            "vlm": (rng.random(n) < conf * ok).astype(float),
            "vlm+tools": (rng.random(n) < 0.5).astype(float)}
    latency = {"tool": 2.0, "vlm": 20.0, "vlm+tools": 45.0}
    grid = {"tau_low": [0.0, 0.2, 0.4, 0.6, 0.8], "tau_tool": [0.0, 0.3, 0.6, 0.9], "tau_conf": [0.0, 0.25, 0.5, 0.75],
            "tau_high": [0.5, 0.7, 0.9]}
    for kw in ({"target_share": 0.1}, {"latency_budget": 25.0}):
        policy = calibrate(eh, tool, conf, ok, hits, latency, model_version="v", **grid, **kw)
        best = None
        for low, tl, tc, th in itertools.product(*grid.values()):
            if low > th:
                continue
            cfg = RouterConfig(tau_low=low, tau_tool=tl, tau_conf=tc, tau_high=th)
            r = evaluate(eh, tool, conf, ok, hits, latency, cfg)
            if ("target_share" in kw and r["share"] >= 0.1) or ("latency_budget" in kw and r["latency"] <= 25.0):
                key = (-round(r["hr5"], 12), round(r["latency"], 9), -r["share"])
                if best is None or key < best[0]:
                    best = (key, (low, tl, tc, th))
        assert _taus(policy) == best[1]
        assert policy.calibration.grid_points == 5 * 4 * 4 * 3


def test_calibrated_policy_round_trips(tmp_path):
    p = _run(target_share=0.0)
    p.save(str(tmp_path))
    assert Policy.load(str(tmp_path), "v1") == p

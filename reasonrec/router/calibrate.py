"""Pick the router's thresholds on validation arrays: best HR@5 under a delegation target or a latency budget.

Input: every validation row run down every route (the tool alone, the VLM alone, VLM + tools), so each row's
hit@5 is known for each route, plus each route's mean latency per row. A threshold setting then only decides
which of the three known outcomes a row gets, and HR@5 is

    sum(hit_vlm) + sum_low (hit_tool - hit_vlm) + sum_{high, not low} (hit_vlm+tools - hit_vlm)

The low mask depends on (tau_low, tau_tool), the high mask on (tau_conf, tau_high), so the whole grid is a
few matrix products of [settings x rows] masks (chunked over rows), with no loop over settings. The masks
repeat policy.first_stage / second_stage's inequalities; the chosen point is re-scored through
policy.decide, and a disagreement is raised, so the two cannot drift apart silently.

Choice: the feasible setting with the highest HR@5; ties (to 1e-12) go to the lower expected latency, then
the higher delegation share, then the first setting in grid order (tau_low, tau_tool, tau_conf, tau_high,
each ascending). A setting with tau_low > tau_high is never considered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from reasonrec.router.config import Calibration, Policy, RouterConfig
from reasonrec.router.policy import ROUTES, Thresholds, decide

DEFAULT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 21), 2).tolist())
_CHUNK = 4096
_TIE = 1e-12  # slack on the share / latency constraints (float sums)


def evaluate(eh: np.ndarray, tool_confidence: np.ndarray, vlm_confidence: np.ndarray, parse_ok: np.ndarray,
             hits: Mapping[str, np.ndarray], latency: Mapping[str, float], thresholds: Thresholds) -> dict[str, float]:
    """HR@5, delegation share, expected latency per row and route shares of one threshold setting."""
    decision = decide(eh, tool_confidence, vlm_confidence, parse_ok, thresholds)
    n = max(len(decision.route), 1)
    hit = np.zeros(len(decision.route))
    for route in ROUTES:
        on = decision.route == route
        hit[on] = np.asarray(hits[route], dtype=np.float64)[on]
    shares = decision.shares()
    return {"hr5": float(hit.sum() / n), "share": shares["tool"],
            "latency": float(sum(shares[r] * float(latency[r]) for r in ROUTES)),
            **{f"share_{r}": shares[r] for r in ROUTES}}


def calibrate(eh: np.ndarray, tool_confidence: np.ndarray, vlm_confidence: np.ndarray, parse_ok: np.ndarray,
              hits: Mapping[str, np.ndarray], latency: Mapping[str, float], *, model_version: str,
              cfg: RouterConfig | None = None, target_share: float | None = None,
              latency_budget: float | None = None, tau_low: Sequence[float] = DEFAULT_GRID,
              tau_tool: Sequence[float] = DEFAULT_GRID, tau_conf: Sequence[float] = DEFAULT_GRID,
              tau_high: Sequence[float] | None = None, split: str = "valid") -> Policy:
    """The Policy maximising HR@5 subject to share(tool route) >= target_share, or expected latency per row
    <= latency_budget (exactly one of the two). hits: route -> per-row hit@5 [n] (any per-row quality in
    [0, 1] works, e.g. CTR accuracy); latency: route -> mean latency per row on that route, end to end (the
    vlm+tools figure includes the first pass, the tools and the second pass). tau_high stays cfg.tau_high
    unless a grid is given."""
    cfg = cfg or RouterConfig()
    if (target_share is None) == (latency_budget is None):
        raise ValueError("give exactly one of target_share and latency_budget")
    eh = np.asarray(eh, dtype=np.float64)
    n = len(eh)
    if n == 0:
        raise ValueError("calibration needs at least one validation row")
    tool_confidence = np.asarray(tool_confidence, dtype=np.float64)
    vlm_confidence = np.asarray(vlm_confidence, dtype=np.float64)
    parse_ok = np.asarray(parse_ok, dtype=bool)
    hit = {r: np.asarray(hits[r], dtype=np.float64) for r in ROUTES}
    for name, arr in [("tool_confidence", tool_confidence), ("vlm_confidence", vlm_confidence),
                      ("parse_ok", parse_ok), *((f"hits[{r}]", hit[r]) for r in ROUTES)]:
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}, expected ({n},)")
    lat = {r: float(latency[r]) for r in ROUTES}

    # Grid axes: g1 = (tau_low, tau_tool) decides the low mask, g2 = (tau_conf, tau_high) the high mask.
    lows, tools = _axis(tau_low), _axis(tau_tool)
    confs, highs = _axis(tau_conf), _axis([cfg.tau_high] if tau_high is None else tau_high)
    g1_low, g1_tool = (a.ravel() for a in np.meshgrid(lows, tools, indexing="ij"))
    g2_conf, g2_high = (a.ravel() for a in np.meshgrid(confs, highs, indexing="ij"))
    g1, g2 = len(g1_low), len(g2_conf)

    n_low, gain_low = np.zeros(g1), np.zeros(g1)
    n_high, gain_high = np.zeros(g2), np.zeros(g2)
    both_n, both_gain = np.zeros((g1, g2)), np.zeros((g1, g2))
    d_tool = hit["tool"] - hit["vlm"]
    d_high = hit["vlm+tools"] - hit["vlm"]
    for start in range(0, n, _CHUNK):
        rows = slice(start, start + _CHUNK)
        low = _low_masks(eh[rows], tool_confidence[rows], g1_low, g1_tool)
        high = _high_masks(eh[rows], vlm_confidence[rows], parse_ok[rows], g2_conf, g2_high)
        n_low += low.sum(axis=1)
        gain_low += low @ d_tool[rows]
        n_high += high.sum(axis=1)
        gain_high += high @ d_high[rows]
        both_n += low @ high.T
        both_gain += low @ (high * d_high[rows]).T

    hr = (hit["vlm"].sum() + gain_low[:, None] + gain_high[None, :] - both_gain) / n
    share = np.broadcast_to(n_low[:, None] / n, (g1, g2))
    n_escalated = n_high[None, :] - both_n
    n_vlm = n - n_low[:, None] - n_escalated
    expected = (n_low[:, None] * lat["tool"] + n_escalated * lat["vlm+tools"] + n_vlm * lat["vlm"]) / n

    feasible = g1_low[:, None] <= g2_high[None, :]
    if target_share is not None:
        objective, target = "delegation_share", float(target_share)
        feasible &= share >= target - _TIE
    else:
        objective, target = "latency_budget", float(latency_budget)
        feasible &= expected <= target + _TIE
    if not feasible.any():
        raise ValueError(_infeasible(objective, target, share, expected, g1_low[:, None] <= g2_high[None, :]))

    flat = np.flatnonzero(feasible.ravel())
    order = np.lexsort((flat, -share.ravel()[flat], np.round(expected.ravel()[flat], 9),
                        -np.round(hr.ravel()[flat], 12)))
    i1, i2 = np.unravel_index(flat[order[0]], (g1, g2))
    chosen = cfg.model_copy(update={"tau_low": float(g1_low[i1]), "tau_tool": float(g1_tool[i1]),
                                    "tau_conf": float(g2_conf[i2]), "tau_high": float(g2_high[i2])})
    result = evaluate(eh, tool_confidence, vlm_confidence, parse_ok, hit, lat, chosen)
    if abs(result["hr5"] - hr[i1, i2]) > 1e-9 or abs(result["share"] - share[i1, i2]) > 1e-9:
        raise AssertionError("grid search and policy.decide disagree on the chosen setting (a bug)")
    return Policy(
        model_version=model_version, tau_low=chosen.tau_low, tau_high=chosen.tau_high, tau_tool=chosen.tau_tool,
        tau_conf=chosen.tau_conf, confidence_source=cfg.confidence_source, best_tool=dict(cfg.best_tool),
        fusion=cfg.fusion, calibration=Calibration(
            objective=objective, target=target, split=split, n_rows=n, achieved_share=result["share"],
            valid_hr5=result["hr5"], expected_latency=result["latency"],
            route_shares={r: result[f"share_{r}"] for r in ROUTES}, grid_points=int(feasible.size)))


def _low_masks(eh: np.ndarray, tool_confidence: np.ndarray, tau_low: np.ndarray, tau_tool: np.ndarray
               ) -> np.ndarray:
    """float [settings, rows]: policy.first_stage for every (tau_low, tau_tool) setting at once."""
    return ((eh[None, :] < tau_low[:, None]) & (tool_confidence[None, :] >= tau_tool[:, None])).astype(np.float64)


def _high_masks(eh: np.ndarray, vlm_confidence: np.ndarray, parse_ok: np.ndarray, tau_conf: np.ndarray,
                tau_high: np.ndarray) -> np.ndarray:
    """float [settings, rows]: policy.second_stage for every (tau_conf, tau_high) setting at once."""
    always = (np.isnan(eh) | ~parse_ok)[None, :]
    return (always | (eh[None, :] > tau_high[:, None]) | ~(vlm_confidence[None, :] >= tau_conf[:, None])
            ).astype(np.float64)


def _axis(values: Sequence[float]) -> np.ndarray:
    out = np.unique(np.asarray(values, dtype=np.float64))
    if len(out) == 0 or (out < 0).any() or (out > 1).any():
        raise ValueError(f"a threshold grid needs values in [0, 1], got {list(values)}")
    return out


def _infeasible(objective: str, target: float, share: np.ndarray, expected: np.ndarray, ordered: np.ndarray) -> str:
    if objective == "delegation_share":
        return (f"no threshold setting reaches a delegation share of {target:.3f}; the grid's best is "
                f"{share[ordered].max():.3f} (widen the tau_low / tau_tool grids or lower the target)")
    return (f"no threshold setting meets a latency budget of {target:g}; the grid's lowest expected latency is "
            f"{expected[ordered].min():g}")

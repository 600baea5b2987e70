"""Two-stage risk routing on numpy arrays: which rows a tool answers, which the VLM, which get a second pass.

Stage 1, before the VLM runs (rows sent to the tool route never reach it):

    low  <=>  EH < tau_low  and  tool_confidence >= tau_tool         -> route "tool"

Stage 2, for the rows that went to the VLM:

    high <=>  EH > tau_high  or  vlm_confidence < tau_conf  or  not parse_ok   -> route "vlm+tools"
    otherwise medium                                                          -> route "vlm"

The inequalities are the issue's: at EH == tau_low a row is not low, at EH == tau_high it is not high
(the same ends as vlm.curriculum.risk_levels, so training and routing agree on who is high risk), a tool
exactly at tau_tool is sure enough, and a VLM exactly at tau_conf is not escalated. A value that cannot be
read is treated as the unsafe side: NaN EH (unknown evidence) is never low and always high; NaN tool
confidence (no tool for the task) is never low; NaN VLM confidence is escalated like a parse failure,
because an unreadable answer is a reason to consult the tools, never a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from reasonrec.vlm.thought import parse_generation

if TYPE_CHECKING:
    from reasonrec.vlm.scoring import VLMOutput

Route = Literal["tool", "vlm", "vlm+tools"]
Risk = Literal["low", "medium", "high"]
ROUTES: tuple[Route, ...] = ("tool", "vlm", "vlm+tools")
RISKS: tuple[Risk, ...] = ("low", "medium", "high")


class Thresholds(Protocol):
    """RouterConfig and Policy both carry these."""

    tau_low: float
    tau_high: float
    tau_tool: float
    tau_conf: float


def first_stage(eh: np.ndarray, tool_confidence: np.ndarray, cfg: Thresholds) -> np.ndarray:
    """bool [n]: the tool route (low risk). EH < tau_low and tool confidence >= tau_tool; NaN is never low."""
    eh, tool_confidence = _floats(eh), _floats(tool_confidence, len(_floats(eh)))
    return (eh < cfg.tau_low) & (tool_confidence >= cfg.tau_tool)


def second_stage(eh: np.ndarray, vlm_confidence: np.ndarray, parse_ok: np.ndarray, cfg: Thresholds) -> np.ndarray:
    """bool [n] for rows that reached the VLM: escalate (consult tools, second pass) when EH > tau_high, VLM
    confidence < tau_conf, the output did not parse, or EH / confidence is NaN."""
    eh = _floats(eh)
    vlm_confidence = _floats(vlm_confidence, len(eh))
    parse_ok = np.asarray(parse_ok, dtype=bool)
    if parse_ok.shape != eh.shape:
        raise ValueError(f"parse_ok has shape {parse_ok.shape}, expected {eh.shape}")
    return (eh > cfg.tau_high) | np.isnan(eh) | ~(vlm_confidence >= cfg.tau_conf) | ~parse_ok


@dataclass
class RoutingDecision:
    """Per row: the route, the risk level, and the inputs and flags behind them (for rationales and stats)."""

    route: np.ndarray            # <U9 [n]: "tool" | "vlm" | "vlm+tools"
    risk: np.ndarray             # <U6 [n]: "low" | "medium" | "high"
    eh: np.ndarray               # float [n]
    tool_confidence: np.ndarray  # float [n]
    vlm_confidence: np.ndarray   # float [n] (meaningless on tool rows: the VLM did not run there)
    parse_ok: np.ndarray         # bool [n]

    @property
    def low(self) -> np.ndarray:
        return self.route == "tool"

    @property
    def high(self) -> np.ndarray:
        return self.route == "vlm+tools"

    def rows(self, route: Route) -> np.ndarray:
        """Row indices on one route, ascending."""
        return np.flatnonzero(self.route == route)

    def shares(self) -> dict[str, float]:
        """Share of rows per route (0 for an empty batch)."""
        n = max(len(self.route), 1)
        return {r: float((self.route == r).sum() / n) for r in ROUTES}


def decide(eh: np.ndarray, tool_confidence: np.ndarray, vlm_confidence: np.ndarray, parse_ok: np.ndarray,
           cfg: Thresholds) -> RoutingDecision:
    """Both stages at once, for when the VLM readings of every row are at hand (calibration, evaluation).
    In serving, run first_stage, send only ~low rows to the VLM, then second_stage on those."""
    eh = _floats(eh)
    tool_confidence = _floats(tool_confidence, len(eh))
    vlm_confidence = _floats(vlm_confidence, len(eh))
    parse_ok = np.asarray(parse_ok, dtype=bool)
    low = first_stage(eh, tool_confidence, cfg)
    high = ~low & second_stage(eh, vlm_confidence, parse_ok, cfg)
    route = np.where(low, "tool", np.where(high, "vlm+tools", "vlm"))
    risk = np.where(low, "low", np.where(high, "high", "medium"))
    return RoutingDecision(route, risk, eh, tool_confidence, vlm_confidence, parse_ok)


def vlm_confidence(output: VLMOutput, tasks: Sequence[str] | str, source: str = "stated") -> np.ndarray:
    """float [n] the VLM confidence compared with tau_conf: 'stated' = expected confidence bin; 'answer_prob' =
    probability of the top candidate, or for CTR rows max(P(yes), P(no))."""
    if source == "stated":
        return np.asarray(output.confidence, dtype=np.float64)
    if source != "answer_prob":
        raise ValueError(f"confidence source must be 'stated' or 'answer_prob', got {source!r}")
    n = len(output.answer_prob)
    is_ctr = np.full(n, tasks == "ctr") if isinstance(tasks, str) else np.asarray(tasks) == "ctr"
    ctr = np.asarray(output.ctr_prob, dtype=np.float64)
    return np.where(is_ctr, np.maximum(ctr, 1.0 - ctr), np.asarray(output.answer_prob, dtype=np.float64))


def read_generations(texts: Sequence[object], tasks: Sequence[str] | str) -> tuple[np.ndarray, np.ndarray]:
    """(confidence [n] with NaN where unreadable, parse_ok [n]) from free-text generations; never raises, so a
    malformed thought arrives at second_stage as parse_ok=False and is consulted on."""
    tasks = [tasks] * len(texts) if isinstance(tasks, str) else list(tasks)
    parsed = [parse_generation(text, task) for text, task in zip(texts, tasks, strict=True)]
    confidence = np.array([np.nan if p.confidence is None else p.confidence for p in parsed], dtype=np.float64)
    return confidence, np.array([p.ok for p in parsed], dtype=bool)


def _floats(values: np.ndarray, n: int | None = None) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64)
    if out.ndim != 1 or (n is not None and len(out) != n):
        raise ValueError(f"expected a 1-D array{'' if n is None else f' of {n} rows'}, got shape {out.shape}")
    return out

"""Every validation row down every route: the arrays jobs/calibrate.py searches thresholds on, Ray-free.

The router's thresholds only decide which of three answers a row gets (the best tool's, the VLM's, the VLM's
after consulting tools), so each row is answered all three ways once — the same `score_tools` / `answer` code
the nightly job and the Serve app run, with the route forced — and its hit@5 and latency are kept per route.
A threshold setting is then scored from these arrays without touching a model again
(reasonrec.router.calibrate). The evaluation job reuses them on the test part.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from reasonrec.config import StrictModel
from reasonrec.metrics.ranking import rank_of_target
from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.evaluate import target_columns
from reasonrec.recommend.requests import Requests, split_requests
from reasonrec.recommend.stages import answer, score_tools
from reasonrec.router.calibrate import DEFAULT_GRID
from reasonrec.router.policy import ROUTES
from reasonrec.tools.data import ToolData
from reasonrec.vlm.instructions import _evidence_array, read_split_evidence

K = 5
MODE_OF_ROUTE = {"tool": "tools", "vlm": "vlm", "vlm+tools": "vlm+tools"}   # route name -> forced answer mode


class CalibrateConfig(StrictModel):
    """jobs/calibrate.py: pick the router's thresholds on a split's validation lists and save them as policy."""

    config_section = "calibrate"   # its section in a sectioned file (configs/<dataset>.yaml)

    recommend: RecommendConfig = Field(default_factory=RecommendConfig, description=(
        "Artifacts and router (its `policy` is ignored: the search starts from the router section's thresholds)."))
    split: str = Field("loo", description="Ranking split whose fixed validation lists are scored.")
    negatives: int = Field(99, ge=1, description="Which fixed lists: 99 -> the 1+99 lists.")
    part: Literal["valid"] = Field("valid", description=(
        "Part the thresholds are picked on; only valid: the test part stays unseen until evaluation."))
    max_users: int | None = Field(None, ge=1, description="Score a seeded random subset of this many users; null = all.")
    seed: int = Field(0, ge=0, description="Seeds the user subset.")
    objective: Literal["delegation_share", "latency_budget"] = Field("delegation_share", description=(
        "delegation_share: best HR@5 with at least `target` of the rows on the tool route; latency_budget: best "
        "HR@5 with expected latency per row at most `target` seconds."))
    target: float = Field(0.3, ge=0, description="The delegation share (0-1) or the latency budget (seconds per row).")
    tau_low: list[float] = Field(default_factory=lambda: list(DEFAULT_GRID), description="Grid searched for tau_low.")
    tau_tool: list[float] = Field(default_factory=lambda: list(DEFAULT_GRID), description="Grid searched for tau_tool.")
    tau_conf: list[float] = Field(default_factory=lambda: list(DEFAULT_GRID), description="Grid searched for tau_conf.")
    tau_high: list[float] | None = Field(None, description="Grid searched for tau_high; null = keep recommend.router.tau_high.")
    batch_size: int = Field(64, ge=1, description="Rows per scoring batch (each runs the tools once, the VLM three times).")
    out: str | None = Field(None, description="Where calibration.{json,md} go; null = <vlm_dir>/calibration.")

    @field_validator("tau_low", "tau_tool", "tau_conf", "tau_high")
    @classmethod
    def _grid(cls, values: list[float] | None) -> list[float] | None:
        if values is not None and (not values or any(not 0.0 <= v <= 1.0 for v in values)):
            raise ValueError(f"a threshold grid needs at least one value, all in [0, 1]; got {values}")
        return values

    @model_validator(mode="after")
    def _consistent(self):
        if self.recommend.vlm_dir is None:
            raise ValueError("recommend.vlm_dir is null: without a VLM every row takes the tool route, nothing to calibrate")
        if self.objective == "delegation_share" and self.target > 1:
            raise ValueError(f"target {self.target} is a delegation share: it must be in [0, 1]")
        if self.objective == "latency_budget" and self.target <= 0:
            raise ValueError("target is a latency budget in seconds per row: it must be > 0")
        return self


def split_eh(data: ToolData) -> np.ndarray:
    """EH per user_idx from the split's evidence.parquet, with the VLM's training rule for unlisted users (1.0)."""
    return _evidence_array(read_split_evidence(data), data.n_users)


def part_requests(data: ToolData, part: str, max_users: int | None = None, seed: int = 0) -> Requests:
    """The fixed-list requests of `part`, or a seeded subset of max_users of them (in user order)."""
    requests = split_requests(data, part, split_eh(data))
    if max_users is None or max_users >= len(requests):
        return requests
    rows = np.sort(np.random.default_rng(seed).choice(len(requests), size=max_users, replace=False))
    return requests.take(rows)


def hits_at_k(scores: np.ndarray, candidates: np.ndarray, targets: np.ndarray, k: int = K,
              user_idx: np.ndarray | None = None) -> np.ndarray:
    """float [n] 1.0 where the target ranks in the top k of its row (rank_of_target: pessimistic ties, so a -inf
    column never beats a finite target); a target missing from its candidates is an error naming the user."""
    return (rank_of_target(scores, target_columns(candidates, targets, user_idx)) < k).astype(np.float64)


@dataclass
class RouteOutcomes:
    """Per row: the policy's inputs, and each route's hit@5 and latency (seconds, end to end)."""

    user_idx: np.ndarray                 # int64 [n]
    eh: np.ndarray                       # float [n]
    tool_confidence: np.ndarray          # float [n]: the best tool's confidence (tools-mode Answer.confidence)
    vlm_confidence: np.ndarray           # float [n]: the VLM's first-pass confidence (vlm-mode Answer.confidence)
    parse_ok: np.ndarray                 # bool [n]: the first pass parsed (vlm-mode Answer.parse_ok)
    hits: dict[str, np.ndarray]          # route -> float [n]
    latency: dict[str, np.ndarray]       # route -> float [n]
    tool_names: list[str] = field(default_factory=list)
    vlm_failures: dict[str, int] = field(default_factory=dict)   # route -> rows whose VLM pass raised

    def __len__(self) -> int:
        return len(self.user_idx)

    def hr5(self) -> dict[str, float]:
        return {r: float(self.hits[r].mean()) if len(self) else 0.0 for r in ROUTES}

    def mean_latency(self) -> dict[str, float]:
        return {r: float(self.latency[r].mean()) if len(self) else 0.0 for r in ROUTES}


def route_outcomes(bundle: Bundle, requests: Requests, batch_size: int = 64,
                   progress: Callable[[int, int], None] | None = None) -> RouteOutcomes:
    """Answer every row on every route (forced modes), batch by batch; progress(done, total) after each batch.
    Latency is each row's share of its batch's wall time per stage (Answer.latency), so it depends on batch_size."""
    if (requests.targets < 0).any():
        raise ValueError("route_outcomes needs targets (a split's fixed lists, not tonight's requests)")
    if len(requests):  # untimed: tool loading and first-call costs must not land on the first batch's latency
        first = requests.take(np.arange(1))
        first_tools = score_tools(bundle, first)
        for route in ROUTES:
            answer(bundle, first, first_tools, MODE_OF_ROUTE[route])
    parts: list[dict[str, np.ndarray]] = []
    failures = dict.fromkeys(ROUTES, 0)
    for start in range(0, len(requests), batch_size):
        req = requests.take(np.arange(start, min(start + batch_size, len(requests))))
        tools = score_tools(bundle, req)
        got = {route: answer(bundle, req, tools, MODE_OF_ROUTE[route]) for route in ROUTES}
        part = {"tool_confidence": got["tool"].confidence, "vlm_confidence": got["vlm"].confidence,
                "parse_ok": got["vlm"].parse_ok}
        for route, ans in got.items():
            part[f"hit/{route}"] = hits_at_k(ans.scores, req.candidates, req.targets, K, req.user_idx)
            part[f"latency/{route}"] = ans.latency
            failures[route] += ans.vlm_failures
        parts.append(part)
        if progress is not None:
            progress(min(start + batch_size, len(requests)), len(requests))
    cat = _concat(parts, len(requests))
    return RouteOutcomes(
        user_idx=requests.user_idx.copy(), eh=requests.eh.astype(np.float64), tool_names=list(bundle.tools),
        tool_confidence=cat("tool_confidence", np.float64), vlm_confidence=cat("vlm_confidence", np.float64),
        parse_ok=cat("parse_ok", bool), hits={r: cat(f"hit/{r}", np.float64) for r in ROUTES},
        latency={r: cat(f"latency/{r}", np.float64) for r in ROUTES}, vlm_failures=failures)


def _concat(parts: Sequence[dict[str, np.ndarray]], n: int) -> Callable[[str, type], np.ndarray]:
    def cat(key: str, dtype: type) -> np.ndarray:
        if not parts:
            return np.zeros(n, dtype=dtype)
        return np.concatenate([np.asarray(p[key], dtype=dtype) for p in parts])
    return cat


"""One pass of the models over the evaluated test rows, kept per row so every table reads the same answers.

Each row is answered on every forced route (the best tool alone, the VLM alone, the VLM after consulting
tools) by the `score_tools` / `answer` stages the nightly job runs — as jobs/calibrate.py does on the
validation part — but the target's rank and the top-1 item are kept, not only hit@5, so NDCG, hit@1 and
the conflict analysis come from the same pass. The routed answer (ReasonRec) is then each row's outcome on
the route the policy picks (`routed`): no second VLM pass. Table A7's consult modes are extra VLM+tools
passes with the router's tool_selection swapped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from reasonrec.metrics.ranking import rank_of_target
from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.evaluate import target_columns
from reasonrec.recommend.requests import Requests
from reasonrec.recommend.stages import answer, score_tools
from reasonrec.router.config import ToolSelection
from reasonrec.router.policy import ROUTES, Thresholds, decide

MODE_OF_ROUTE = {"tool": "tools", "vlm": "vlm", "vlm+tools": "vlm+tools"}


@dataclass
class Outcome:
    """One way of answering every row: the target's 0-based rank, the top-1 item, seconds per row."""

    rank: np.ndarray      # int64 [n]
    top1: np.ndarray      # int64 [n]
    latency: np.ndarray   # float [n]

    def take(self, rows: np.ndarray) -> "Outcome":
        return Outcome(self.rank[rows], self.top1[rows], self.latency[rows])


@dataclass
class PartOutcomes:
    """Per evaluated row: the policy's inputs and every answer's outcome (routes, then 'select/<mode>')."""

    user_idx: np.ndarray          # int64 [n]
    eh: np.ndarray                # float [n]
    targets: np.ndarray           # int64 [n]
    tool_confidence: np.ndarray   # float [n]: the best tool's confidence
    vlm_confidence: np.ndarray    # float [n]: the VLM's first-pass confidence (router.confidence_source)
    parse_ok: np.ndarray          # bool [n]
    answers: dict[str, Outcome]   # "tool" | "vlm" | "vlm+tools" | "select/<mode>" -> outcome
    best_tool: str = ""
    vlm_failures: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.user_idx)

    def routed(self, thresholds: Thresholds) -> tuple[Outcome, np.ndarray]:
        """(the routed answer, route per row): each row's outcome on the route policy.decide picks for it.
        Latency is that route's per-row latency, so its mean is the expected latency of the policy."""
        route = decide(self.eh, self.tool_confidence, self.vlm_confidence, self.parse_ok, thresholds).route
        rank, top1, latency = (np.empty(len(self), dtype=np.int64), np.empty(len(self), dtype=np.int64),
                               np.empty(len(self)))
        for r in ROUTES:
            on = route == r
            got = self.answers[r]
            rank[on], top1[on], latency[on] = got.rank[on], got.top1[on], got.latency[on]
        return Outcome(rank, top1, latency), route


def outcome_of(scores: np.ndarray, requests: Requests, latency: np.ndarray) -> Outcome:
    """Rank of each row's target (pessimistic ties) and its top-1 item (ties to the lower column)."""
    rank = rank_of_target(scores, target_columns(requests.candidates, requests.targets, requests.user_idx))
    top = np.take_along_axis(requests.candidates, np.argmax(scores, axis=1)[:, None], axis=1)[:, 0]
    return Outcome(rank.astype(np.int64), top.astype(np.int64), np.asarray(latency, dtype=np.float64))


def collect(bundle: Bundle, requests: Requests, batch_size: int = 64, selections: Sequence[ToolSelection] = (),
            progress: Callable[[int, int], None] | None = None) -> PartOutcomes:
    """Answer every row on every route, and on VLM+tools once per extra consult mode in `selections` (the
    router's own mode is the vlm+tools route itself, not re-run); progress(done, total) after each batch."""
    if (requests.targets < 0).any():
        raise ValueError("collect needs targets (a split's fixed lists, not tonight's requests)")
    router = bundle.router
    extra = [m for m in dict.fromkeys(selections) if m != router.tool_selection]
    if len(requests):  # untimed warm-up: model loading must not land on the first batch's latency
        first = requests.take(np.arange(1))
        first_tools = score_tools(bundle, first)
        for route in ROUTES:
            answer(bundle, first, first_tools, MODE_OF_ROUTE[route])
    parts: list[dict[str, object]] = []
    failures: dict[str, int] = {}
    for start in range(0, len(requests), batch_size):
        req = requests.take(np.arange(start, min(start + batch_size, len(requests))))
        tools = score_tools(bundle, req)
        got = {route: answer(bundle, req, tools, MODE_OF_ROUTE[route]) for route in ROUTES}
        for mode in extra:
            bundle.router = router.model_copy(update={"tool_selection": mode})
            try:
                got[f"select/{mode}"] = answer(bundle, req, tools, "vlm+tools")
            finally:
                bundle.router = router
        part: dict[str, object] = {"tool_confidence": got["tool"].confidence, "vlm_confidence": got["vlm"].confidence,
                                   "parse_ok": got["vlm"].parse_ok}
        for name, ans in got.items():
            part[name] = outcome_of(ans.scores, req, ans.latency)
            failures[name] = failures.get(name, 0) + ans.vlm_failures
        parts.append(part)
        if progress is not None:
            progress(min(start + batch_size, len(requests)), len(requests))
    # The router's own consult mode is the vlm+tools route: listed under select/<mode> too, not re-run.
    alias = {f"select/{m}": (f"select/{m}" if m in extra else "vlm+tools") for m in dict.fromkeys(selections)}
    names = {**{r: r for r in ROUTES}, **alias}
    return PartOutcomes(
        user_idx=requests.user_idx.copy(), eh=requests.eh.astype(np.float64), targets=requests.targets.copy(),
        tool_confidence=_cat([p["tool_confidence"] for p in parts], np.float64),
        vlm_confidence=_cat([p["vlm_confidence"] for p in parts], np.float64),
        parse_ok=_cat([p["parse_ok"] for p in parts], bool),
        answers={name: _cat_outcomes([p[src] for p in parts]) for name, src in names.items()},
        best_tool=next(iter(bundle.tools), ""), vlm_failures={n: failures.get(src, 0) for n, src in names.items()})


def _cat(arrays: list, dtype: type) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=dtype) for a in arrays]) if arrays else np.zeros(0, dtype=dtype)


def _cat_outcomes(parts: list) -> Outcome:
    return Outcome(_cat([p.rank for p in parts], np.int64), _cat([p.top1 for p in parts], np.int64),
                   _cat([p.latency for p in parts], np.float64))

"""The one outcomes loop: every row of a split's fixed lists answered by the stages the nightly job runs, kept
per row, for calibration (jobs/calibrate.py, the validation part), the evaluation report (the test part) and the
benchmarks and the nightly offline check (one live mode).

By default each row is answered on every forced route (the best tool alone, the VLM alone, the VLM after
consulting tools) with `score_tools` / `answer`; the target's rank, the top-1 item, the route and the latency
are kept, so hit@5 (calibration), NDCG, hit@1 and the conflict analysis (the report) come from the same pass.
The routed answer (ReasonRec) is then each row's outcome on the route the policy picks (`routed`): no second
VLM pass. Table A7's consult modes are extra VLM+tools passes with another tool_selection (`selections`).
The forced VLM routes and the consult modes all start from the same first VLM pass over every row, so it is
scored once per batch and shared (each route is still charged its seconds): calibration runs two VLM passes per
row instead of three, the report's default three consult modes four instead of seven.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from reasonrec.metrics.ranking import rank_of_target
from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.requests import Requests
from reasonrec.recommend.stages import FirstPass, Mode, answer, score_tools, vlm_first_pass
from reasonrec.router.answer import RefineInputs, answer_sources
from reasonrec.router.config import ToolSelection
from reasonrec.router.policy import ROUTES, Thresholds, decide

ANSWER_OF_MODE = {"tools": "tool", "vlm": "vlm", "vlm+tools": "vlm+tools", "routed": "routed"}   # answers' keys
FORCED: tuple[Mode, ...] = ("tools", "vlm", "vlm+tools")
EVERY_ROW_VLM = ("vlm", "vlm+tools")   # the forced routes whose first VLM pass covers every row


@dataclass
class Outcome:
    """One way of answering every row: the target's 0-based rank, the top-1 item, seconds per row, the route."""

    rank: np.ndarray      # int64 [n]
    top1: np.ndarray      # int64 [n]
    latency: np.ndarray   # float [n]
    route: np.ndarray | None = None    # str [n]: the route each row took (None where not recorded)
    source: np.ndarray | None = None   # str [n]: whose output answered (router.answer.answer_sources)

    def take(self, rows: np.ndarray) -> "Outcome":
        return Outcome(self.rank[rows], self.top1[rows], self.latency[rows],
                       None if self.route is None else self.route[rows],
                       None if self.source is None else self.source[rows])

    def sources(self) -> dict[str, dict[str, float]]:
        """Per route taken, the share of rows answered by each source (a parsed VLM output or a fallback)."""
        return answer_sources(self.route, self.source)


@dataclass
class PartOutcomes:
    """Per evaluated row: the policy's inputs and every answer's outcome (routes, then 'select/<mode>')."""

    user_idx: np.ndarray          # int64 [n]
    eh: np.ndarray                # float [n]
    targets: np.ndarray           # int64 [n]
    tool_confidence: np.ndarray   # float [n]: the best tool's confidence
    vlm_confidence: np.ndarray    # float [n]: the VLM's first-pass confidence (router.confidence_source)
    parse_ok: np.ndarray          # bool [n]
    answers: dict[str, Outcome]   # "tool" | "vlm" | "vlm+tools" | "routed" | "select/<mode>" -> outcome
    best_tool: str = ""
    vlm_failures: dict[str, int] = field(default_factory=dict)
    tool_names: list[str] = field(default_factory=list)   # the ranking tools loaded: the best first, then the pool
    # What the vlm+tools rows were merged from (rows index these outcomes), kept when collect is asked to:
    # calibration fits the fusion weights on them and re-merges without a second VLM pass.
    refine_inputs: RefineInputs | None = None

    def __len__(self) -> int:
        return len(self.user_idx)

    def hits(self, k: int = 5) -> dict[str, np.ndarray]:
        """Per forced route, float [n] 1.0 where the target ranks in the top k (what calibration searches on)."""
        return {r: (self.answers[r].rank < k).astype(np.float64) for r in ROUTES}

    def hr5(self) -> dict[str, float]:
        return {r: float(v.mean()) if len(self) else 0.0 for r, v in self.hits(5).items()}

    def mean_latency(self) -> dict[str, float]:
        return {r: float(self.answers[r].latency.mean()) if len(self) else 0.0 for r in ROUTES}

    def routed(self, thresholds: Thresholds) -> tuple[Outcome, np.ndarray]:
        """(the routed answer, route per row): each row's outcome on the route policy.decide picks for it.
        Latency is that route's per-row latency, so its mean is the expected latency of the policy."""
        route = decide(self.eh, self.tool_confidence, self.vlm_confidence, self.parse_ok, thresholds).route
        rank, top1, latency = (np.empty(len(self), dtype=np.int64), np.empty(len(self), dtype=np.int64),
                               np.empty(len(self)))
        source = np.empty(len(self), dtype="<U16")
        for r in ROUTES:
            on = route == r
            got = self.answers[r]
            rank[on], top1[on], latency[on] = got.rank[on], got.top1[on], got.latency[on]
            source[on] = got.source[on] if got.source is not None else ""
        return Outcome(rank, top1, latency, np.asarray(route).astype(str), source), route


def target_columns(candidates: np.ndarray, targets: np.ndarray, user_idx: np.ndarray | None = None) -> np.ndarray:
    """Each row's target column in its candidate list; a list without its target is an error naming the user."""
    present = candidates == np.asarray(targets)[:, None]
    missing = np.flatnonzero(~present.any(axis=1))
    if len(missing):
        row = int(missing[0])
        who = f"user_idx {int(user_idx[row])}" if user_idx is not None else f"row {row}"
        raise ValueError(f"{who}: target item {int(targets[row])} is not among its candidates "
                         f"({len(missing)} row(s) like this)")
    return present.argmax(axis=1)


def outcome_of(scores: np.ndarray, requests: Requests, latency: np.ndarray, route: np.ndarray | None = None,
               source: np.ndarray | None = None) -> Outcome:
    """Rank of each row's target (pessimistic ties: a -inf column never beats a finite target) and its top-1
    item (ties to the lower column)."""
    rank = rank_of_target(scores, target_columns(requests.candidates, requests.targets, requests.user_idx))
    top = np.take_along_axis(requests.candidates, np.argmax(scores, axis=1)[:, None], axis=1)[:, 0]
    return Outcome(rank.astype(np.int64), top.astype(np.int64), np.asarray(latency, dtype=np.float64),
                   None if route is None else np.asarray(route).astype(str),
                   None if source is None else np.asarray(source).astype(str))


def collect(bundle: Bundle, requests: Requests, batch_size: int = 64, selections: Sequence[ToolSelection] = (),
            progress: Callable[[int, int], None] | None = None, modes: Sequence[Mode] = FORCED,
            warm_up: bool = True, keep_refine_inputs: bool = False, share_first_pass: bool = True) -> PartOutcomes:
    """Answer every row in each of `modes` (default: every forced route; answers keyed by ANSWER_OF_MODE), and
    on VLM+tools once per extra consult mode in `selections` (the router's own mode is the vlm+tools route
    itself, not re-run); progress(done, total) after each batch. warm_up: one untimed row first, so model
    loading does not land on the first batch's latency. Latency is each row's share of its batch's wall time
    per stage (Answer.latency), so it depends on batch_size. keep_refine_inputs: also keep what the vlm+tools
    rows were merged from (PartOutcomes.refine_inputs). share_first_pass: score the first VLM pass once per batch
    for every forced VLM route and consult mode (False: each scores its own, as the nightly job's routes do; the
    outcomes are the same)."""
    if (requests.targets < 0).any():
        raise ValueError("collect needs targets (a split's fixed lists, not tonight's requests)")
    router = bundle.router
    extra = [m for m in dict.fromkeys(selections) if m != router.tool_selection]
    if warm_up and len(requests):
        first = requests.take(np.arange(1))
        first_tools = score_tools(bundle, first)
        for mode in modes:
            answer(bundle, first, first_tools, mode)
    passes_on_every_row = sum(mode in EVERY_ROW_VLM for mode in modes) + len(extra)
    parts: list[dict[str, object]] = []
    failures: dict[str, int] = {}
    refined: list[RefineInputs] = []
    for start in range(0, len(requests), batch_size):
        req = requests.take(np.arange(start, min(start + batch_size, len(requests))))
        tools = score_tools(bundle, req)
        shared = _shared_first_pass(bundle, req) if share_first_pass and passes_on_every_row > 1 else None
        got = {ANSWER_OF_MODE[mode]: answer(bundle, req, tools, mode,
                                            keep_refine_inputs=keep_refine_inputs and mode == "vlm+tools",
                                            shared_first=shared if mode in EVERY_ROW_VLM else None)
               for mode in modes}
        for kept in getattr(got.get("vlm+tools"), "refine_inputs", None) or []:
            refined.append(RefineInputs(start + kept.rows, kept.vlm_scores, kept.tool_scores, kept.names,
                                        np.asarray(kept.parse_ok, dtype=bool)))
        for mode in extra:
            got[f"select/{mode}"] = answer(bundle, req, tools, "vlm+tools",
                                           router=router.model_copy(update={"tool_selection": mode}),
                                           shared_first=shared)
        none = np.full(len(req), np.nan)
        part: dict[str, object] = {
            "tool_confidence": got["tool"].confidence if "tool" in got else none,
            "vlm_confidence": got["vlm"].confidence if "vlm" in got else none,
            "parse_ok": got["vlm"].parse_ok if "vlm" in got else np.zeros(len(req), dtype=bool)}
        for name, ans in got.items():
            part[name] = outcome_of(ans.scores, req, ans.latency, ans.route, ans.source)
            failures[name] = failures.get(name, 0) + ans.vlm_failures
        parts.append(part)
        if progress is not None:
            progress(min(start + batch_size, len(requests)), len(requests))
    # The router's own consult mode is the vlm+tools route: listed under select/<mode> too, not re-run.
    alias = {f"select/{m}": (f"select/{m}" if m in extra else "vlm+tools") for m in dict.fromkeys(selections)}
    names = {**{ANSWER_OF_MODE[m]: ANSWER_OF_MODE[m] for m in modes}, **alias}
    return PartOutcomes(
        user_idx=requests.user_idx.copy(), eh=requests.eh.astype(np.float64), targets=requests.targets.copy(),
        tool_confidence=_cat([p["tool_confidence"] for p in parts], np.float64),
        vlm_confidence=_cat([p["vlm_confidence"] for p in parts], np.float64),
        parse_ok=_cat([p["parse_ok"] for p in parts], bool),
        answers={name: _cat_outcomes([p[src] for p in parts]) for name, src in names.items()},
        best_tool=next(iter(bundle.tools), ""), vlm_failures={n: failures.get(src, 0) for n, src in names.items()},
        tool_names=list(bundle.tools), refine_inputs=_cat_refined(refined) if keep_refine_inputs else None)


def _shared_first_pass(bundle: Bundle, requests: Requests) -> FirstPass | None:
    """The batch's first VLM pass for every forced VLM route, or None when there is no VLM or it raised: each
    route then runs its own pass and falls back to the best tool on its own, counted, as without sharing."""
    try:
        return vlm_first_pass(bundle, requests)
    except Exception:  # noqa: BLE001 - the routes' own passes meet the same error and record their fallback
        return None


def _cat(arrays: list, dtype: type) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=dtype) for a in arrays]) if arrays else np.zeros(0, dtype=dtype)


def _cat_outcomes(parts: list) -> Outcome:
    return Outcome(_cat([p.rank for p in parts], np.int64), _cat([p.top1 for p in parts], np.int64),
                   _cat([p.latency for p in parts], np.float64), _cat([p.route for p in parts], str),
                   _cat([p.source for p in parts], str))


def _cat_refined(parts: list[RefineInputs]) -> RefineInputs | None:
    """One RefineInputs over every batch (None when no row reached the refine pass)."""
    if not parts:
        return None
    first = parts[0]
    if any(p.vlm_scores.shape[1] != first.vlm_scores.shape[1] or p.names != first.names for p in parts):
        raise ValueError("refine inputs of one collect must share the candidate width and the consult pool")
    return RefineInputs(np.concatenate([p.rows for p in parts]), np.concatenate([p.vlm_scores for p in parts]),
                        np.concatenate([p.tool_scores for p in parts]), list(first.names),
                        np.concatenate([p.parse_ok for p in parts]))

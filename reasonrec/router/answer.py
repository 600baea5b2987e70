"""Who answers each row, and the answer: the router's dispatch over arrays, Ray-free and model-agnostic.

A row is low risk — the best tool answers alone — when EH < tau_low and the best tool's confidence >= tau_tool
(reasonrec.router.policy). The others get a first VLM pass; those with EH > tau_high, VLM confidence < tau_conf
or an unparsable output are high risk: `n_consult` tools are chosen (router.tool_selection), their outputs are
shown in a second VLM pass (router.refine), and `merge` keeps the refined VLM ranking (or the consulted tools'
vote if that pass does not parse either). Every row gets a one-line rationale.

`mode` forces a route for comparisons and calibration: "tools" (every row on the best tool), "vlm" (the VLM
alone, never consulting), "vlm+tools" (every row consults and refines), "routed" (the policy decides).

A VLM that raises on a batch does not lose the batch: its rows fall back to the best tool, route "tool",
source "tool_fallback", and a rationale saying so (counted in the run summary).

The loaded models come in through two small protocols (`Rows`, `VLMPasses`): reasonrec.recommend.stages adapts
a Bundle to them, so the nightly job, the Serve app, calibration and the reports run this same code.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from reasonrec.router.config import RouterConfig
from reasonrec.router.policy import RoutingDecision, first_stage, second_stage, vlm_confidence
from reasonrec.router.refine import merge, rationale, refine
from reasonrec.router.tool_selection import consulted_names, select_tools
from reasonrec.vlm.records import Instruction
from reasonrec.vlm.tool_labels import ToolOutputs, scale_free_confidence

Mode = Literal["routed", "tools", "vlm", "vlm+tools"]
MODES: tuple[Mode, ...] = ("routed", "tools", "vlm", "vlm+tools")
CONFIDENCE_TOP_K = 10   # a tool's confidence is read over its best 10 candidates (as the tool labels do)
SHOWN_ITEMS = 3         # items of a consulted tool's list shown in the refine prompt (InstructionConfig.tool_top_m)


class Rows(Protocol):
    """A batch of ranking requests (reasonrec.recommend.requests.Requests): per row its EH, its candidate
    columns (-1 padding) and its target (-1 when unknown)."""

    user_idx: np.ndarray
    eh: np.ndarray
    candidates: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int: ...

    def take(self, rows: np.ndarray) -> "Rows": ...


class VLMPasses(Protocol):
    """The VLM side of a system: its instructions for rows, its scorer, and the consult pool's tools."""

    pool: list[str]         # ranking tools a high-risk row may consult, the best tool first
    tool_names: list[str]   # the tools the VLM has <tool_*> tokens for (its tool_probs columns)

    def instructions(self, rows: Rows) -> list[Instruction]: ...

    def score(self, instructions: Sequence[Instruction]): ...   # -> reasonrec.vlm.scoring.VLMOutput

    def score_tools(self, rows: Rows, names: Sequence[str]) -> "ToolScores": ...


@dataclass
class ToolScores:
    """Each tool's score of each candidate column: [n, T, C], -inf on padding; column 0 is the best tool."""

    names: list[str]
    scores: np.ndarray
    seconds: float = 0.0   # wall time of scoring the whole batch with every tool

    def take(self, rows: np.ndarray) -> "ToolScores":
        return ToolScores(self.names, self.scores[rows], self.seconds)

    def confidence(self) -> np.ndarray:
        """[n, T] scale-free confidence over each tool's top CONFIDENCE_TOP_K candidates."""
        n, t, c = self.scores.shape
        k = max(1, min(CONFIDENCE_TOP_K, c))
        top = -np.sort(-self.scores, axis=2)[:, :, :k]
        return scale_free_confidence(top.reshape(n * t, k)).reshape(n, t)

    def outputs(self, candidates: np.ndarray, targets: np.ndarray) -> ToolOutputs:
        """What each tool would show (top items, confidence) and whether it holds the target in its top
        CONFIDENCE_TOP_K (usable; all False without targets): the refine prompt's and the oracle's input."""
        n, t, c = self.scores.shape
        order = np.argsort(-self.scores, axis=2, kind="stable")
        ranked = np.take_along_axis(np.broadcast_to(candidates[:, None, :], (n, t, c)), order, axis=2)
        ranked = np.where(np.take_along_axis(self.scores, order, axis=2) > -np.inf, ranked, -1)
        top_k = ranked[:, :, :CONFIDENCE_TOP_K]
        usable = (top_k == np.asarray(targets)[:, None, None]).any(axis=2) & (np.asarray(targets) >= 0)[:, None]
        return ToolOutputs(list(self.names), usable, ranked[:, :, :SHOWN_ITEMS].copy(), self.confidence(),
                           np.full((n, t), np.nan))


@dataclass
class Answer:
    """Per row: the final candidate scores and how they came about."""

    scores: np.ndarray                # float [n, C] higher = better; -inf on padding
    route: np.ndarray                 # "tool" | "vlm" | "vlm+tools"
    risk: np.ndarray                  # "low" | "medium" | "high"
    confidence: np.ndarray            # the confidence the route was decided on (tool's on the tool route)
    parse_ok: np.ndarray              # bool: the VLM's first pass parsed (True on the tool route)
    source: np.ndarray                # "tool" | "vlm" | "tool_vote" | "vlm_unparsed" | "tool_fallback" (answer_sources)
    tools_consulted: list[list[str]]
    rationale: list[str]
    latency: np.ndarray               # seconds per row: its share of each stage it went through
    seconds: dict[str, float] = field(default_factory=dict)   # batch wall time per stage
    vlm_failures: int = 0             # rows whose VLM pass raised (answered by the best tool instead)
    refine_inputs: list["RefineInputs"] | None = None   # kept when asked (keep_refine_inputs): fusion's fit


@dataclass
class FirstPass:
    """The VLM's first pass over every row of a batch: the forced VLM routes read the same pass, so a caller
    answering several of them on one batch (the outcomes loop) scores it once and hands it to each; every route
    is still charged its seconds, as if it had run the pass itself."""

    instructions: list[Instruction]
    output: object            # reasonrec.vlm.scoring.VLMOutput, one row per instruction
    seconds: float            # wall time of the scoring pass (not of writing the instructions)


def first_pass(vlm: "VLMPasses", rows: Rows) -> FirstPass:
    """The first VLM pass over `rows`: their instructions, scored."""
    instructions = vlm.instructions(rows)
    started = time.perf_counter()
    output = vlm.score(instructions)
    return FirstPass(instructions, output, time.perf_counter() - started)


@dataclass
class RefineInputs:
    """What the high-risk rows' answer was merged from (calibration fits the fusion weights on these)."""

    rows: np.ndarray          # int [h]: rows of the batch
    vlm_scores: np.ndarray    # [h, C] the refined pass's log-probabilities (-inf padding)
    tool_scores: np.ndarray   # [h, T, C] every pool tool's scores
    names: list[str]          # the T pool tools
    parse_ok: np.ndarray      # [h] bool: the refined pass parsed


def answer_rows(router: RouterConfig, requests: Rows, tools: ToolScores, mode: Mode = "routed",
                vlm: VLMPasses | None = None, keep_refine_inputs: bool = False,
                shared_first: FirstPass | None = None) -> Answer:
    """Route, run the VLM where needed, merge. `tools` holds the best tool's scores of the same rows (column 0);
    vlm=None: no VLM in this system (or none needed: mode "tools"), every row takes the tool route.
    keep_refine_inputs: also return what the high-risk rows were merged from (Answer.refine_inputs).
    shared_first: the first pass over every row, already scored (`first_pass`); only the forced VLM routes take
    one, since they send every row to the VLM (the routed mode's first pass covers only its non-low rows)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if shared_first is not None and (mode not in ("vlm", "vlm+tools")
                                     or len(shared_first.instructions) != len(requests)):
        raise ValueError(f"a shared first pass is for the forced VLM routes over every row (mode {mode!r}, "
                         f"{len(shared_first.instructions)} pass rows for {len(requests)} requests)")
    n, cfg = len(requests), router
    eh = requests.eh.astype(np.float64)
    tool_conf = tools.confidence()[:, 0] if tools.names else np.full(n, np.nan)
    best_name = tools.names[0] if tools.names else None
    scores = tools.scores[:, 0].astype(np.float64) if tools.names else np.full(requests.candidates.shape, -np.inf)
    scores = np.where(requests.candidates >= 0, scores, -np.inf)
    per_row_tools = tools.seconds / max(n, 1)
    scores_tool = scores.copy()
    out = Answer(scores=scores, route=np.full(n, "tool", dtype="<U9"), risk=np.full(n, "low", dtype="<U6"),
                 confidence=tool_conf.copy(), parse_ok=np.ones(n, dtype=bool), source=np.full(n, "tool", dtype="<U16"),
                 tools_consulted=[[] for _ in range(n)], rationale=[""] * n, latency=np.full(n, per_row_tools),
                 seconds={"tools": tools.seconds, "vlm": 0.0, "refine": 0.0},
                 refine_inputs=[] if keep_refine_inputs else None)
    if mode == "tools" or vlm is None:  # never load the VLM when no row will use it
        low = np.ones(n, dtype=bool)
    elif mode == "routed":
        low = first_stage(eh, tool_conf, cfg)
    else:
        low = np.zeros(n, dtype=bool)
    decision = RoutingDecision(out.route, out.risk, eh, tool_conf, np.full(n, np.nan), out.parse_ok)
    vlm_rows = np.flatnonzero(~low)
    if len(vlm_rows):
        try:
            _vlm_rows(cfg, vlm, requests, tools, mode, vlm_rows, out, decision, shared_first)
        except Exception as err:  # noqa: BLE001 - a failing VLM batch falls back to the tool, counted
            # Undo whatever the VLM pass had filled in: these rows are answered by the best tool, as on its route.
            out.scores[vlm_rows] = scores_tool[vlm_rows]
            out.route[vlm_rows], out.risk[vlm_rows], out.source[vlm_rows] = "tool", "high", "tool_fallback"
            out.confidence[vlm_rows], out.parse_ok[vlm_rows] = tool_conf[vlm_rows], False
            out.latency[vlm_rows] = per_row_tools
            for i in vlm_rows:
                out.tools_consulted[i] = []
            out.vlm_failures = len(vlm_rows)
            note = f"VLM failed ({type(err).__name__}: {str(err)[:80]}); {best_name or 'tool'} answered"
            for i in vlm_rows:
                out.rationale[i] = note
    tool_rows = np.flatnonzero(out.route == "tool")
    for i, line in zip(tool_rows, rationale(_subset(decision, tool_rows), cfg, best_name)):
        if not out.rationale[i]:
            out.rationale[i] = line
    if mode != "routed":  # a forced route: the policy's reasons would be false, say what happened instead
        out.rationale = [_forced_rationale(mode, out, i, best_name) for i in range(n)]
    return out


def answer_sources(route: np.ndarray, source: np.ndarray) -> dict[str, dict[str, float]]:
    """Per route taken, the share of its rows answered by each source: on the VLM routes "vlm" is a parsed VLM
    output (the first pass on vlm, the refine pass on vlm+tools), anything else a fallback ("tool_vote": the
    consulted tools' vote; "vlm_unparsed": an unparsed VLM output kept; "tool_fallback": the VLM raised)."""
    route, source = np.asarray(route).astype(str), np.asarray(source).astype(str)
    shares = {}
    for r in dict.fromkeys(route.tolist()):
        on = source[route == r]
        names, counts = np.unique(on, return_counts=True)
        shares[r] = {str(n): round(float(c) / len(on), 4) for n, c in zip(names, counts)}
    return shares


def _forced_rationale(mode: Mode, out: Answer, i: int, best_name: str | None) -> str:
    parts = [f"forced route ({mode} mode)"]
    if out.route[i] == "tool":
        parts.append(f"{best_name or 'tool'} answered" + (" (VLM failed)" if out.source[i] == "tool_fallback" else ""))
    else:
        parts.append(f"VLM conf {out.confidence[i]:.2f}" if out.parse_ok[i] else "VLM output malformed")
        if out.route[i] == "vlm+tools":
            parts.append(f"consulted {', '.join(out.tools_consulted[i]) or 'no tool'}; answer from {out.source[i]}")
    return "; ".join(parts)


def _vlm_rows(cfg: RouterConfig, vlm: VLMPasses, requests: Rows, tools: ToolScores, mode: Mode, rows: np.ndarray,
              out: Answer, decision: RoutingDecision, shared_first: FirstPass | None = None) -> None:
    """First VLM pass on `rows` (or the shared one, which covers every row), second stage, refine pass on the
    high ones; fills `out` in place."""
    sub = requests.take(rows)
    passed = shared_first if shared_first is not None else first_pass(vlm, sub)
    instructions, first = passed.instructions, passed.output
    out.seconds["vlm"] = passed.seconds
    conf = vlm_confidence(first, "sequential", cfg.confidence_source)
    if mode == "routed":
        high = second_stage(sub.eh, conf, first.parse_ok, cfg)
    else:
        high = np.full(len(rows), mode == "vlm+tools")
    out.scores[rows] = _widen(first.scores, sub.candidates.shape[1])
    out.route[rows] = np.where(high, "vlm+tools", "vlm")
    out.risk[rows] = np.where(high, "high", "medium")
    out.confidence[rows] = conf
    out.parse_ok[rows] = first.parse_ok
    out.source[rows] = "vlm"
    out.latency[rows] += out.seconds["vlm"] / len(rows)
    decision.vlm_confidence[rows] = conf
    consulted_lists: list[list[str]] = [[] for _ in rows]
    sources = np.full(len(rows), "vlm", dtype="<U16")
    sources[~high & ~np.asarray(first.parse_ok, dtype=bool)] = "vlm_unparsed"   # a forced vlm row kept unparsed
    high_rows = np.flatnonzero(high)
    pool = vlm.pool   # best tool first, then the consult pool
    if len(high_rows) and pool:
        hi = sub.take(high_rows)
        started = time.perf_counter()
        # The pool is scored here, for high-risk rows only (unless the caller scored it for every row).
        hi_tools = tools.take(rows[high_rows]) if tools.names == pool else vlm.score_tools(hi, pool)
        outputs = hi_tools.outputs(hi.candidates, hi.targets)
        mask = select_tools(cfg, "sequential", pool, hi.user_idx, tool_probs=first.tool_probs[high_rows],
                            prob_names=vlm.tool_names, usable=outputs.usable, targets=hi.targets,
                            confidence=outputs.confidence)
        second = vlm.score(refine([instructions[i] for i in high_rows], outputs, mask))
        out.seconds["refine"] = time.perf_counter() - started
        width = hi.candidates.shape[1]
        merged = merge(_widen(second.scores, width), hi.candidates, second.parse_ok, hi_tools.scores, mask,
                       cfg.fusion, hi_tools.names)
        out.scores[rows[high_rows]] = merged.scores
        if out.refine_inputs is not None:
            out.refine_inputs.append(RefineInputs(rows[high_rows], _widen(second.scores, width), hi_tools.scores,
                                                  list(hi_tools.names), second.parse_ok))
        out.latency[rows[high_rows]] += out.seconds["refine"] / len(high_rows)
        sources[high_rows] = merged.source
        for j, names in zip(high_rows, consulted_names(mask, pool)):
            consulted_lists[j] = names
    out.source[rows] = sources
    for j, i in enumerate(rows):
        out.tools_consulted[i] = consulted_lists[j]
    lines = rationale(_subset(decision, rows), cfg, tools.names[0] if tools.names else None,
                      consulted=consulted_lists, source=sources)
    if len(high_rows) and pool and cfg.fusion is not None:
        weights = cfg.fusion.moved_by(hi_tools.names)
        for j, moved, source in zip(high_rows, merged.moved, merged.source):
            if source == "vlm":
                lines[j] += (f"; fused with the tools ({weights}): "
                             + ("the tools moved the top item" if moved else "the VLM's top item stands"))
    for i, line in zip(rows, lines):
        out.rationale[i] = line


def _widen(scores: np.ndarray, width: int) -> np.ndarray:
    """VLM scores [n, w<=width] -> [n, width] with -inf beyond each row's candidates."""
    full = np.full((len(scores), width), -np.inf)
    full[:, :scores.shape[1]] = scores
    return full


def _subset(decision: RoutingDecision, rows: np.ndarray) -> RoutingDecision:
    return RoutingDecision(decision.route[rows], decision.risk[rows], decision.eh[rows],
                           decision.tool_confidence[rows], decision.vlm_confidence[rows], decision.parse_ok[rows])


def ranked(answer_: Answer, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(items [n, k], scores [n, k]) best first, ties to the lower column; -1 / -inf where a row has fewer."""
    order = np.argsort(-answer_.scores, axis=1, kind="stable")[:, :k]
    items = np.take_along_axis(candidates, order, axis=1)
    scores = np.take_along_axis(answer_.scores, order, axis=1)
    items = np.where(np.isfinite(scores), items, -1)
    return items, scores

"""The second pass for high-risk rows: show the consulted tools' outputs, then decide whose answer stands.

`refine` rewrites an instruction so its prompt carries the consulted tools' outputs in exactly the text
training showed ("Tool hints: <tool_a> <item_3> <item_9> <item_1> <conf_4>; ...", from
vlm.tool_labels.show_outputs): it copies the record's slots with tool_outputs replaced and renders them
again (templates.render, the one renderer of every prompt), and its consulted_tools names them, which is what
the VLM scorer forces into the thought's "Tools:" field.

`merge` decides the answer: the refined VLM ranking is the answer and the tools are advice; with fusion weights
(fit on validation, reasonrec.router.fusion) the answer is the weighted sum of the refined VLM ranking and every
pool tool's scores, so the tools refine it without being authoritative. Only when the refined pass did not parse
does it fall back to the consulted tools' majority vote (the mean of each tool's
per-row z-normalised candidate scores, as the paper's majority-vote baseline); with no tool consulted it
keeps the (unparsed) VLM scores and says so. Ties in a fallback ranking go to the lower candidate column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from reasonrec.router.fusion import FusionWeights, standardise
from reasonrec.router.policy import RoutingDecision, Thresholds
from reasonrec.vlm.records import Instruction
from reasonrec.vlm.thought import format_thought, parse_generation
from reasonrec.vlm.tool_labels import ToolOutputs, show_outputs

SOURCES = ("vlm", "tool_vote", "vlm_unparsed")


# ------------------------------------------------------------------------------------- second-pass records

def refine_instruction(ins: Instruction, outputs: ToolOutputs, row: int, columns: Sequence[int]) -> Instruction:
    """A copy of `ins` whose prompt shows the tool columns' outputs for `row` (clean, never noisy) and whose
    consulted_tools / thought Tools name them; EH and the stated confidence of the thought are kept.
    columns=[] gives a clean first-pass record (built valid/test records may already show seeded hints).
    The record must carry its slots (every builder keeps them); a prompt is never parsed back into slots."""
    if ins.slots is None:
        raise ValueError(f"{ins.task} record of user {ins.user_idx} has no slots to re-render: build it with "
                         "Instruction.from_slots (InstructionWriter, build_instructions and explain all do)")
    columns = sorted(int(c) for c in columns)
    # Noise is off, so show_outputs never draws from the generator nor reads the target.
    tool_text = show_outputs(outputs, row, columns, [False] * len(columns), np.random.default_rng(0), 0, -1)
    names = [outputs.names[c] for c in columns]
    stated = parse_generation(ins.thought).confidence
    return ins.rerendered(replace(ins.slots, tool_outputs=tool_text),
                          thought=format_thought(ins.evidence_horizon, 0.0 if stated is None else stated, names),
                          consulted_tools=names, noisy_tools=[])


def refine(instructions: Sequence[Instruction], outputs: ToolOutputs, consulted: np.ndarray) -> list[Instruction]:
    """Second-pass records: row i of `instructions`, `outputs` and `consulted` (bool [n, T]) belong together."""
    consulted = np.asarray(consulted, dtype=bool)
    if consulted.shape != (len(instructions), len(outputs.names)):
        raise ValueError(f"consulted must be [{len(instructions)}, {len(outputs.names)}], got {consulted.shape}")
    return [refine_instruction(ins, outputs, i, np.flatnonzero(consulted[i])) for i, ins in enumerate(instructions)]


# ------------------------------------------------------------------------------------------------ merging

@dataclass
class Merged:
    """The answer of the high-risk rows and where it came from."""

    scores: np.ndarray    # [n, C] higher = better over the candidate columns; -inf on padding
    top_item: np.ndarray  # [n] item_idx of the best column (-1 when a row has no candidate)
    source: np.ndarray    # [n] "vlm" | "tool_vote" | "vlm_unparsed"
    moved: np.ndarray | None = None   # [n] bool: fusion put another item first than the refined VLM pass did


def merge(vlm_scores: np.ndarray, candidates: np.ndarray, parse_ok: np.ndarray, tool_scores: np.ndarray,
          consulted: np.ndarray, fusion: FusionWeights | None = None, names: Sequence[str] = ()) -> Merged:
    """Ranking tasks. vlm_scores / candidates: the refined VLMOutput ([n, C], -1 padding); tool_scores
    [n, T, C]: each tool's score of each candidate column (tools `names`); consulted: bool [n, T].
    fusion: weights fit on validation (reasonrec.router.fusion); a parsed row's answer is then the fused
    ranking of the VLM and every tool in tool_scores (source "vlm": the parsed VLM output is in it)."""
    vlm_scores = np.asarray(vlm_scores, dtype=np.float64)
    candidates = np.asarray(candidates, dtype=np.int64)
    parse_ok = np.asarray(parse_ok, dtype=bool)
    consulted = np.asarray(consulted, dtype=bool)
    tool_scores = np.asarray(tool_scores, dtype=np.float64)
    n, c = candidates.shape
    if vlm_scores.shape != (n, c) or tool_scores.shape != (n, consulted.shape[1], c) or parse_ok.shape != (n,):
        raise ValueError(f"shapes disagree: vlm_scores {vlm_scores.shape}, candidates {(n, c)}, tool_scores "
                         f"{tool_scores.shape}, consulted {consulted.shape}, parse_ok {parse_ok.shape}")
    if fusion is not None and len(names) != tool_scores.shape[1]:
        raise ValueError(f"fusion needs one name per tool column: {len(names)} names, {tool_scores.shape[1]} tools")
    valid = candidates >= 0
    z = standardise(tool_scores, valid[:, None, :])                       # [n, T, C]
    n_tools = consulted.sum(axis=1)
    vote = (z * consulted[:, :, None]).sum(axis=1) / np.maximum(n_tools, 1)[:, None]
    fallback = ~parse_ok & (n_tools > 0)
    answer = vlm_scores if fusion is None else np.where(
        parse_ok[:, None], fusion.combine(vlm_scores, tool_scores, names, valid), vlm_scores)
    scores = np.where(valid, np.where(fallback[:, None], vote, answer), -np.inf)
    best = np.argmax(scores, axis=1) if c else np.zeros(n, dtype=np.int64)
    top = candidates[np.arange(n), best] if c else np.full(n, -1, dtype=np.int64)
    vlm_top = candidates[np.arange(n), np.argmax(np.where(valid, vlm_scores, -np.inf), axis=1)] if c else top
    source = np.where(parse_ok, "vlm", np.where(n_tools > 0, "tool_vote", "vlm_unparsed"))
    moved = (fusion is not None) & parse_ok & (top != vlm_top)
    return Merged(scores, np.where(valid.any(axis=1), top, -1), source, moved)


def merge_ctr(vlm_ctr_prob: np.ndarray, parse_ok: np.ndarray, tool_click: np.ndarray, consulted: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """CTR rows: (P(click) [n], source [n]). The refined VLM's P(yes) stands when it parsed; otherwise the
    share of consulted tools that predict a click (p >= 0.5), a tied vote resolved by their mean p."""
    vlm_ctr_prob = np.asarray(vlm_ctr_prob, dtype=np.float64)
    parse_ok = np.asarray(parse_ok, dtype=bool)
    consulted = np.asarray(consulted, dtype=bool)
    tool_click = np.nan_to_num(np.asarray(tool_click, dtype=np.float64), nan=0.5)
    n_tools = consulted.sum(axis=1)
    denom = np.maximum(n_tools, 1)
    share = ((tool_click >= 0.5) & consulted).sum(axis=1) / denom
    mean = (tool_click * consulted).sum(axis=1) / denom
    vote = np.where(share == 0.5, mean, share)
    fallback = ~parse_ok & (n_tools > 0)
    source = np.where(parse_ok, "vlm", np.where(n_tools > 0, "tool_vote", "vlm_unparsed"))
    return np.where(fallback, vote, vlm_ctr_prob), source


# ---------------------------------------------------------------------------------------------- rationale

def rationale(decision: RoutingDecision, cfg: Thresholds, tool_name: str | None = None,
              consulted: Sequence[Sequence[str]] | None = None, source: Sequence[str] | None = None) -> list[str]:
    """One short line per row saying why it took its route, e.g.
    "EH 0.82 > 0.70 high; VLM conf 0.21 < 0.30; consulted sasrec, lightgcn; kept VLM answer".
    consulted / source are per row of the decision (read on high rows only; None = not known yet)."""
    tool = tool_name or "tool"
    lines = []
    for i, route in enumerate(decision.route):
        eh, tc = float(decision.eh[i]), float(decision.tool_confidence[i])
        parts = [_eh_text(eh, cfg)]
        if route == "tool":
            lines.append("; ".join(parts + [f"{tool} conf {tc:.2f} >= {cfg.tau_tool:.2f}", f"{tool} answered alone"]))
            continue
        if eh < cfg.tau_low:  # low evidence horizon, but the tool was not sure (or there is none)
            parts.append(f"no {tool} for this task" if np.isnan(tc) else f"{tool} conf {tc:.2f} < {cfg.tau_tool:.2f}")
        parts.append(_vlm_text(float(decision.vlm_confidence[i]), bool(decision.parse_ok[i]), cfg))
        if route == "vlm":
            parts.append("VLM answered alone")
        else:
            names = list(consulted[i]) if consulted is not None else None
            if names is not None:
                parts.append(f"consulted {', '.join(names)}" if names else "no tool to consult")
            parts.append(_source_text(None if source is None else str(source[i]), names))
        lines.append("; ".join(parts))
    return lines


def _eh_text(eh: float, cfg: Thresholds) -> str:
    if np.isnan(eh):
        return "EH unknown, high"
    if eh < cfg.tau_low:
        return f"EH {eh:.2f} < {cfg.tau_low:.2f} low"
    if eh > cfg.tau_high:
        return f"EH {eh:.2f} > {cfg.tau_high:.2f} high"
    return f"EH {eh:.2f} medium"


def _vlm_text(conf: float, parse_ok: bool, cfg: Thresholds) -> str:
    if not parse_ok:
        return "VLM output malformed"
    if np.isnan(conf):
        return "VLM conf unreadable"
    return f"VLM conf {conf:.2f} {'<' if conf < cfg.tau_conf else '>='} {cfg.tau_conf:.2f}"


def _source_text(source: str | None, names: list[str] | None) -> str:
    if source is None:
        return "second pass pending"
    if source == "vlm":
        return "kept VLM answer"
    if source == "tool_vote":
        who = ", ".join(names) if names else "the consulted tools"
        return f"refined pass malformed: majority vote of {who}"
    return "refined pass malformed and no tool to fall back on: kept VLM answer"

"""The structured thought the VLM writes before its answer, and a parser that never raises.

    EH: 0.42 | Confidence: <conf_5> | Tools: <tool_sasrec> <tool_lightgcn> | Answer: <item_12>

The router reads a generation through `parse_generation`. A model output is untrusted text: any shape it
can take must come back as a value, and a thought that cannot be read is `ok=False` with a reason, which
the router treats as "unsure: consult the tools" rather than as a crash.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from reasonrec.vlm.tokens import NO, NO_TOOL, SEP, YES, conf_token, conf_value, tool_token

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_EH = re.compile(r"EH:\s*(" + _NUMBER + ")")
_CONFIDENCE = re.compile(r"Confidence:\s*(?:<conf_(\d)>|(" + _NUMBER + "))")
_TOOLS = re.compile(r"Tools:(.*?)(?:\||Answer:|$)", re.S)
_TOOL_TOKEN = re.compile(r"<tool_([a-z0-9_+]+)>")
_ANSWER = re.compile(r"Answer:(.*)", re.S)
_ITEM_FIRST = re.compile(r"<item_(\d+)>")
_ANSWER_KINDS = {"sequential": "item", "direct": "item", "ctr": "label", "explanation": "text"}


@dataclass
class ParsedThought:
    """What could be read from a generation; fields that could not be read stay None."""

    ok: bool
    error: str | None = None
    eh: float | None = None
    confidence: float | None = None
    tools: list[str] = field(default_factory=list)   # tool names ('sasrec'); [] for <tool_none>
    answer_item: int | None = None
    answer_label: int | None = None                  # 1 for <yes>, 0 for <no>
    answer_text: str | None = None                   # the whole answer, stripped


def format_thought(eh: float, confidence: float, tools: list[str]) -> str:
    """The teacher trace up to and including 'Answer:' (tool names as in the registry, e.g. 'sasrec')."""
    tool_text = " ".join(tool_token(name) for name in tools) if tools else NO_TOOL
    return SEP.join([f"EH: {float(eh):.2f}", f"Confidence: {conf_token(confidence)}", f"Tools: {tool_text}",
                     "Answer:"])


def parse_generation(text: object, task: str | None = None) -> ParsedThought:
    """Read a thought (and its answer) from generated text. Never raises.

    Confidence may be a bin token (<conf_5> -> its centre 0.55) or a plain number in [0, 1]. With `task`
    the answer must also have that task's kind (an item token, <yes>/<no>, or non-empty text).
    """
    try:
        return _parse(_as_text(text), task)
    except Exception as err:  # a backstop: a parser bug must not take the router down
        return ParsedThought(ok=False, error=f"internal parser error: {type(err).__name__}")


def _as_text(text: object) -> str:
    if isinstance(text, (bytes, bytearray)):
        return bytes(text).decode("utf-8", errors="replace")
    if text is None:
        return ""
    return text if isinstance(text, str) else str(text)


def _parse(text: str, task: str | None) -> ParsedThought:
    out = ParsedThought(ok=False)
    errors: list[str] = []

    eh = _EH.search(text)
    if eh is None:
        errors.append("no 'EH:' value")
    else:
        out.eh = _unit_number(eh.group(1), "EH", errors)

    conf = _CONFIDENCE.search(text)
    if conf is None:
        errors.append("no 'Confidence:' bin or number")
    elif conf.group(1) is not None:
        out.confidence = conf_value(int(conf.group(1)))
    else:
        out.confidence = _unit_number(conf.group(2), "Confidence", errors)

    tools = _TOOLS.search(text)
    if tools is None:
        errors.append("no 'Tools:' field")
    else:
        names = _TOOL_TOKEN.findall(tools.group(1))
        out.tools = [n for n in names if tool_token(n) != NO_TOOL]
        if not names:
            errors.append("'Tools:' names no tool token (expected <tool_...> or <tool_none>)")

    answer = _ANSWER.search(text)
    if answer is None:
        errors.append("no 'Answer:'")
    else:
        body = answer.group(1).strip()
        out.answer_text = body
        item = _ITEM_FIRST.match(body)
        if item is not None and len(item.group(1)) <= 12:
            out.answer_item = int(item.group(1))
        if body.startswith(YES):
            out.answer_label = 1
        elif body.startswith(NO):
            out.answer_label = 0
        kind = _ANSWER_KINDS.get(task or "")
        if kind == "item" and out.answer_item is None:
            errors.append("answer is not an item token")
        elif kind == "label" and out.answer_label is None:
            errors.append("answer is not <yes> or <no>")
        elif kind == "text" and not body:
            errors.append("empty answer")

    out.ok = not errors
    out.error = "; ".join(errors) if errors else None
    return out


def _unit_number(raw: str, name: str, errors: list[str]) -> float | None:
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        errors.append(f"{name} {raw!r} is not a number")
        return None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        errors.append(f"{name} {raw!r} is outside [0, 1]")
        return None
    return value

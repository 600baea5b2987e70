"""The special tokens instruction traces and the VLM share, and how values map to them.

Items, confidence bins, tools and CTR answers are single added tokens, so one forward pass reads a whole
distribution at one position (a ranking over item tokens, a confidence over bins, a tool choice over tool
tokens, a click probability from <yes>/<no>) without decoding text.
"""

from __future__ import annotations

import re

IMAGE_TOKEN = "<image>"          # expanded by LlavaProcessor to image_seq_length tokens per image
CONF_BINS = 10                   # confidence is stated as one of 10 bins: <conf_0> = [0, 0.1) ... <conf_9>
NO_TOOL = "<tool_none>"          # "no tool is needed / usable"
YES, NO = "<yes>", "<no>"        # CTR answers
SEP = " | "                      # between thought fields

_ITEM = re.compile(r"<item_(\d+)>")
_CONF = re.compile(r"<conf_(\d)>")
_TOOL = re.compile(r"<tool_([a-z0-9_+]+)>")


def item_token(item_idx: int) -> str:
    return f"<item_{int(item_idx)}>"


def item_tokens(n_items: int) -> list[str]:
    return [item_token(i) for i in range(n_items)]


def conf_token(confidence: float) -> str:
    """0.53 -> <conf_5>; values are clipped into [0, 1]."""
    return f"<conf_{min(CONF_BINS - 1, max(0, int(float(confidence) * CONF_BINS)))}>"


def conf_value(bin_index: int) -> float:
    """The value a bin stands for: its centre (<conf_5> -> 0.55)."""
    return (bin_index + 0.5) / CONF_BINS


def conf_tokens() -> list[str]:
    return [f"<conf_{b}>" for b in range(CONF_BINS)]


def tool_token(tool_name: str) -> str:
    """Registry name (e.g. 'sasrec', 'bpr_mf+v') -> <tool_sasrec>."""
    return f"<tool_{tool_name.lower()}>"


def tool_tokens(tool_names: list[str]) -> list[str]:
    return [tool_token(n) for n in tool_names] + [NO_TOOL]


def special_tokens(n_items: int, tool_names: list[str]) -> list[str]:
    """Every added token, in a fixed order (so token ids are reproducible for a given catalogue and zoo)."""
    return [IMAGE_TOKEN, YES, NO, *conf_tokens(), *tool_tokens(tool_names), *item_tokens(n_items)]


def parse_item(token: str) -> int | None:
    m = _ITEM.fullmatch(token.strip())
    return int(m.group(1)) if m else None

"""Tool labels: which trained tools get an instance right, what they would show, and noisy copies.

For a ranking instance a tool is *usable* when the target is in its top-k over the whole catalogue (minus
the items already in the instance's history, as the evaluation ranks), scored on exactly the history the
instance shows. For a CTR instance a CTR tool is usable when its click prediction (p >= 0.5) matches the
label. These labels are the teacher's "Tools:" field, and their share sets the teacher confidence.

Shown outputs are short (a tool token, its top-m item tokens, a confidence bin), and with a seeded
probability a consulted tool's output is replaced by random items, so the model cannot learn to copy tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reasonrec.tools.base import Tool
from reasonrec.tools.data import PAD, Queries
from reasonrec.vlm.tokens import NO, YES, conf_token, item_token, tool_token

RANKING_TASKS = ("sequential", "direct")
TOOL_HINTS = "Tool hints:"


@dataclass
class ToolOutputs:
    """Per instance (rows) and tool (columns, in `names` order) what each tool said."""

    names: list[str]
    usable: np.ndarray      # bool [n, T]
    top_items: np.ndarray   # int64 [n, T, m]: best first; -1 for CTR tools
    confidence: np.ndarray  # float64 [n, T]: ranking = `scale_free_confidence`; CTR = max(p, 1 - p)
    click: np.ndarray       # float64 [n, T]: p(click) of CTR tools, NaN for ranking tools

    def usable_share(self) -> np.ndarray:
        """[n] share of tools that get each instance right (NaN-free; 0 tools -> 0)."""
        if not self.names:
            return np.zeros(len(self.usable))
        return self.usable.mean(axis=1)

    def usable_names(self, row: int) -> list[str]:
        return [name for name, ok in zip(self.names, self.usable[row]) if ok]


def ranking_tools(tools: dict[str, Tool] | None) -> dict[str, Tool]:
    """Sequential and collaborative tools, by name (sorted, so the column order is reproducible)."""
    return {name: tools[name] for name in sorted(tools or {}) if tools[name].task in RANKING_TASKS}


def ctr_tools(tools: dict[str, Tool] | None) -> dict[str, Tool]:
    return {name: tools[name] for name in sorted(tools or {}) if tools[name].task == "ctr"}


def pad_histories(histories: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """[n, max_len] most recent items, right-aligned and PAD-filled: the `Queries.history` layout."""
    out = np.full((len(histories), max_len), PAD, dtype=np.int64)
    for row, seq in enumerate(histories):
        seq = np.asarray(seq, dtype=np.int64)[-max_len:]
        if len(seq):
            out[row, max_len - len(seq):] = seq
    return out


def label_ranking(tools: dict[str, Tool], user_idx: np.ndarray, histories: Sequence[np.ndarray],
                  targets: np.ndarray, n_items: int, k: int = 10, m: int = 3, exclude_history: bool = True,
                  batch_size: int = 256) -> ToolOutputs:
    """Score every instance with every ranking tool over the full catalogue, in batches."""
    user_idx = np.asarray(user_idx, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    n, names = len(user_idx), list(tools)
    width = min(max(k, m), n_items)
    usable = np.zeros((n, len(names)), dtype=bool)
    top_items = np.full((n, len(names), m), -1, dtype=np.int64)
    confidence = np.zeros((n, len(names)))
    for col, name in enumerate(names):
        tool = tools[name]
        for start in range(0, n, batch_size):
            rows = slice(start, min(n, start + batch_size))
            batch_histories = histories[rows]
            queries = Queries(user_idx[rows], pad_histories(batch_histories, tool.cfg.max_len))
            scores = tool.score_all(queries).astype(np.float64)
            if exclude_history:
                for r, seq in enumerate(batch_histories):
                    scores[r, np.asarray(seq, dtype=np.int64)] = -np.inf
            best = _top(scores, width)
            usable[rows, col] = (best[:, :k] == targets[rows, None]).any(axis=1)
            top_items[rows, col, :min(m, width)] = best[:, :m]
            confidence[rows, col] = scale_free_confidence(np.take_along_axis(scores, best[:, :k], axis=1))
    return ToolOutputs(names, usable, top_items, confidence, np.full((n, len(names)), np.nan))


def label_ctr(tools: dict[str, Tool], user_idx: np.ndarray, histories: Sequence[np.ndarray], items: np.ndarray,
              labels: np.ndarray, batch_size: int = 256) -> ToolOutputs:
    """Click probabilities of every CTR tool for (user, history, item) rows; usable = right side of 0.5."""
    user_idx = np.asarray(user_idx, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    labels = np.asarray(labels)
    n, names = len(user_idx), list(tools)
    click = np.zeros((n, len(names)))
    for col, name in enumerate(names):
        tool = tools[name]
        for start in range(0, n, batch_size):
            rows = slice(start, min(n, start + batch_size))
            queries = Queries(user_idx[rows], pad_histories(histories[rows], tool.cfg.max_len))
            logits = tool.score(queries, items[rows, None]).ravel().astype(np.float64)
            click[rows, col] = 1.0 / (1.0 + np.exp(-logits))
    usable = (click >= 0.5) == (labels[:, None] == 1)
    return ToolOutputs(names, usable, np.full((n, len(names), 1), -1, dtype=np.int64),
                       np.maximum(click, 1.0 - click), click)


def choose_consulted(rng: np.random.Generator, n_tools: int, force: bool, share: float, max_consulted: int,
                     noise_prob: float) -> tuple[list[int], list[bool]]:
    """(tool columns shown, whether each is noisy). Draws a fixed number of values whatever the outcome, so
    one instance's choices never shift another's stream."""
    coin = rng.random()
    order = rng.permutation(n_tools)
    noise = rng.random(n_tools) < noise_prob
    if n_tools == 0 or not (force or coin < share):
        return [], []
    chosen = sorted(order[:max_consulted].tolist())
    return chosen, [bool(noise[c]) for c in chosen]


def show_outputs(outputs: ToolOutputs, row: int, columns: list[int], noisy: list[bool], rng: np.random.Generator,
                 n_items: int, target: int) -> str:
    """'Tool hints: <tool_a> <item_3> <item_9> <item_1> <conf_4>; <tool_b> <no> <conf_7>.' ('' if none).
    A noisy ranking tool shows random items other than the target; a noisy CTR tool a random click."""
    parts = []
    for col, corrupt in zip(columns, noisy):
        token = tool_token(outputs.names[col])
        is_ctr = not np.isnan(outputs.click[row, col])
        if is_ctr:
            p = float(rng.random()) if corrupt else float(outputs.click[row, col])
            parts.append(f"{token} {YES if p >= 0.5 else NO} {conf_token(max(p, 1.0 - p))}")
            continue
        if corrupt:
            m = outputs.top_items.shape[2]
            items = _random_items(rng, n_items, m, target)
            conf = float(rng.random())
        else:
            items = [int(i) for i in outputs.top_items[row, col] if i >= 0]
            conf = float(outputs.confidence[row, col])
        parts.append(" ".join([token, *(item_token(i) for i in items), conf_token(conf)]))
    return f"{TOOL_HINTS} {'; '.join(parts)}." if parts else ""


def scale_free_confidence(top_scores: np.ndarray) -> np.ndarray:
    """Tool.confidence over the tool's own top-k, with the scores divided by their spread there.

    Raw margins depend on each tool's score scale: over the full catalogue (or even the top-10 of raw dot
    products) 97-100% of instances landed in <conf_0> on the synthetic zoo, a token that said nothing.
    Dividing by the top-k standard deviation makes tools comparable and uses the bins (measured on the
    synthetic valid part: bins 0-6 all occupied for every tool). It is still a weak per-instance signal:
    hits and misses had nearly the same mean (about 0.24 vs 0.24).
    """
    if top_scores.shape[1] < 2:
        return np.ones(top_scores.shape[0])
    finite = np.isfinite(top_scores)  # -inf where fewer than k items were left after masking the history
    low = np.where(finite, top_scores, np.inf).min(axis=1, keepdims=True)
    top_scores = np.where(finite, top_scores, np.where(np.isfinite(low), low, 0.0))
    spread = top_scores.std(axis=1, keepdims=True)
    return Tool.confidence(top_scores, np.where(spread > 0, spread, 1.0))


def _top(scores: np.ndarray, width: int) -> np.ndarray:
    """[n, width] item indices, best first; ties broken by the lower item index, so the order is fixed."""
    if width >= scores.shape[1]:
        cand = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    else:
        cand = np.argpartition(-scores, width - 1, axis=1)[:, :width]
    values = np.take_along_axis(scores, cand, axis=1)
    order = np.lexsort((cand, -values), axis=-1)
    return np.take_along_axis(cand, order, axis=1).astype(np.int64)


def _random_items(rng: np.random.Generator, n_items: int, m: int, target: int) -> list[int]:
    pool = n_items - (1 if 0 <= target < n_items else 0)
    draws = rng.choice(pool, size=min(m, pool), replace=False)
    if 0 <= target < n_items:
        draws = draws + (draws >= target)
    return [int(i) for i in draws]

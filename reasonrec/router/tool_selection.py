"""Which tools a high-risk row consults, and which single tool answers a low-risk row.

Every selector returns a bool mask [n, T] over the columns `names` (a ToolOutputs' tool order), so the
refine step shows exactly the chosen columns. Modes (RouterConfig.tool_selection):

- learned: the VLM's tool distribution (VLMOutput.tool_probs, trained on the instruction traces' "Tools:"
  field): its n_consult most probable tools, <tool_none> excluded; ties go to the lower column.
- random: a seeded hash of (seed, task, user, tool name) ranks the tools, so a user's draw is the same in
  any batch, order or process.
- oracle: the tools whose top-k holds the target (at most n_consult, the most confident first). It reads
  the answer, so it is an upper bound for evaluation only and refuses to run without targets.
- fixed: the config's list for the task (the first n_consult of it that are among `names`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from reasonrec.data.splits import stable_int
from reasonrec.router.config import RouterConfig
from reasonrec.vlm.records import Instruction
from reasonrec.vlm.tokens import NO_TOOL, tool_token

_MASK64 = (1 << 64) - 1


def best_tool(cfg: RouterConfig, task: str) -> str | None:
    """The tool that answers low-risk rows of `task` alone; None = the task has no tool route."""
    return cfg.best_tool.get(task)


def best_tools_from_traces(instructions: Sequence[Instruction]) -> dict[str, str]:
    """Per task, the tool most often usable (target in its top-k) in the traces; ties go to the lower name.
    A data-driven default for RouterConfig.best_tool (use valid traces: train-part labels are optimistic)."""
    counts: dict[str, Counter] = {}
    for ins in instructions:
        counts.setdefault(ins.task, Counter()).update(ins.usable_tools)
    return {task: min(c, key=lambda name: (-c[name], name)) for task, c in counts.items() if c}


def select_tools(cfg: RouterConfig, task: str, names: Sequence[str], users: np.ndarray, *,
                 tool_probs: np.ndarray | None = None, prob_names: Sequence[str] | None = None,
                 usable: np.ndarray | None = None, targets: np.ndarray | None = None,
                 confidence: np.ndarray | None = None) -> np.ndarray:
    """bool [n, len(names)]: the tools each row consults under cfg.tool_selection (see the module doc)."""
    users = np.asarray(users, dtype=np.int64)
    mode = cfg.tool_selection
    if mode == "learned":
        if tool_probs is None or prob_names is None:
            raise ValueError("learned tool selection needs tool_probs and prob_names (the scorer's tool_names)")
        return learned(tool_probs, prob_names, names, cfg.n_consult)
    if mode == "random":
        return random_choice(users, names, cfg.n_consult, cfg.seed, task)
    if mode == "oracle":
        return oracle(usable, targets, cfg.n_consult, confidence)
    if mode == "fixed":
        return fixed(cfg.consult_tools.get(task, []), names, len(users), cfg.n_consult)
    raise ValueError(f"unknown tool_selection {mode!r}")


def learned(tool_probs: np.ndarray, prob_names: Sequence[str], names: Sequence[str], n_consult: int) -> np.ndarray:
    """Top n_consult of the VLM's tool distribution, mapped from the scorer's columns (prob_names, then
    <tool_none>) onto `names`; a tool the VLM has no token for is never chosen."""
    tool_probs = np.asarray(tool_probs, dtype=np.float64)
    if tool_probs.ndim != 2 or tool_probs.shape[1] != len(prob_names) + 1:
        raise ValueError(f"tool_probs must be [n, {len(prob_names) + 1}] (prob_names + <tool_none>), "
                         f"got {tool_probs.shape}")
    index = {tool_token(name): col for col, name in enumerate(prob_names)}
    if NO_TOOL in index:
        raise ValueError(f"prob_names must not contain {NO_TOOL}: it is the last column already")
    probs = np.full((len(tool_probs), len(names)), -np.inf)
    for col, name in enumerate(names):
        if tool_token(name) in index:
            probs[:, col] = tool_probs[:, index[tool_token(name)]]
    return _top_mask(probs, n_consult) & np.isfinite(probs)


def random_choice(users: np.ndarray, names: Sequence[str], n_consult: int, seed: int, task: str) -> np.ndarray:
    """n_consult tools per row, ranked by a hash of (seed, task, user, name): deterministic per user."""
    users = np.asarray(users, dtype=np.int64).astype(np.uint64)
    salts = np.array([stable_int(f"{seed}/{task}/{name}") & _MASK64 for name in names], dtype=np.uint64)
    keys = _splitmix64(_splitmix64(users[:, None] ^ salts[None, :]))
    # Rank by the hash as a float in [0, 1): _top_mask wants "higher is better".
    return _top_mask((keys >> np.uint64(11)).astype(np.float64) / float(1 << 53), n_consult)


def oracle(usable: np.ndarray | None, targets: np.ndarray | None, n_consult: int,
           confidence: np.ndarray | None = None) -> np.ndarray:
    """Up to n_consult tools whose top-k holds the target (ToolOutputs.usable), most confident first.
    Evaluation only: without targets (None or any < 0, i.e. serving) it refuses."""
    if usable is None or targets is None:
        raise ValueError("oracle tool selection reads the targets and is for evaluation only: pass usable "
                         "(ToolOutputs.usable from labels with targets) and targets")
    usable = np.asarray(usable, dtype=bool)
    targets = np.asarray(targets)
    if targets.shape != (len(usable),) or (targets < 0).any():
        raise ValueError("oracle tool selection needs a real target (>= 0) for every row")
    conf = np.zeros(usable.shape) if confidence is None else np.nan_to_num(np.asarray(confidence, dtype=np.float64))
    # usable tools first (score 1 + conf in [1, 2]), unusable never chosen.
    return _top_mask(np.where(usable, 1.0 + np.clip(conf, 0.0, 1.0), -np.inf), n_consult) & usable


def fixed(tool_list: Sequence[str], names: Sequence[str], n_rows: int, n_consult: int) -> np.ndarray:
    """The same first n_consult tools of `tool_list` that are columns of `names`, for every row."""
    columns = [list(names).index(name) for name in tool_list if name in names][:n_consult]
    mask = np.zeros((n_rows, len(names)), dtype=bool)
    mask[:, columns] = True
    return mask


def consulted_names(mask: np.ndarray, names: Sequence[str]) -> list[list[str]]:
    """Per row, the chosen tool names in column order (the order refine shows them in)."""
    return [[names[c] for c in np.flatnonzero(row)] for row in np.asarray(mask, dtype=bool)]


def _top_mask(values: np.ndarray, n: int) -> np.ndarray:
    """bool mask of the n largest values per row; ties go to the lower column (stable sort)."""
    mask = np.zeros(values.shape, dtype=bool)
    if values.shape[1] == 0 or n <= 0:
        return mask
    order = np.argsort(-values, axis=1, kind="stable")[:, :n]
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays (wrapping arithmetic): a cheap, well-mixed hash."""
    x = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))

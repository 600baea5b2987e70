"""/v1/ctr: click probabilities from one trained CTR tool (DCNv2, xDeepFM or DLRM in the tools_dir).

Which tool: ServeConfig.ctr_tool names a folder of tools_dir, or `auto` picks the ctr-task row with the best
test AUC in tools_dir/metrics.json (jobs/train_tools.py writes it). A known user is scored with tonight's
history (every interaction; the tool leaves the candidate itself out). An unknown user has no user embedding,
so they get the mean probability over a seeded sample of known users: the item's population click rate as
the tool sees it.

Without a CTR tool the app serves everything else and /v1/ctr answers 501 with the message raised here: it names
the config keys (recommend.tools_dir, ctr_tool) and the job that trains one, never this machine's paths.
"""

from __future__ import annotations

import json

import numpy as np

from reasonrec.io import fetch_dir, join, open_fs
from reasonrec.recommend.bundle import Bundle
from reasonrec.tools.base import Tool, load_tool
from reasonrec.tools.data import Queries
from reasonrec.vlm.tool_labels import pad_histories

TRAIN_ONE = ("train a ctr tool (dcnv2, xdeepfm or dlrm) into recommend.tools_dir with jobs/train_tools.py and "
             "restart, or set ctr_tool to one trained there")


def choose_ctr_tool(tools_dir: str, name: str) -> str:
    """The CTR tool's folder name under tools_dir (see the module docstring)."""
    if name != "auto":
        return name
    fs, path = open_fs(join(tools_dir, "metrics.json"))
    if not fs.exists(path):
        raise FileNotFoundError(f"recommend.tools_dir has no metrics.json to pick the best CTR tool from (ctr_tool: "
                                f"auto): {TRAIN_ONE}")
    with fs.open(path, "r") as f:
        rows = json.load(f)["rows"]
    ranked = sorted((r for r in rows if r.get("task") == "ctr" and r.get("AUC") is not None),
                    key=lambda r: -float(r["AUC"]))
    for row in ranked:
        for folder in (row["tool"], row["tool"].lower()):   # metrics rows say "dcnv2+V", folders "dcnv2+v"
            tool_fs, tool_path = open_fs(join(tools_dir, folder, "tool.json"))
            if tool_fs.exists(tool_path):
                return folder
    raise FileNotFoundError(f"recommend.tools_dir has no trained CTR tool (metrics.json lists no ctr-task tool with "
                            f"an AUC; ctr_tool: auto picks from those): {TRAIN_ONE}")


def load_ctr_tool(tools_dir: str, name: str, into: str) -> Tool:
    """The CTR tool `name` of tools_dir (local or s3://, fetched into the local folder `into`)."""
    folder = join(tools_dir, name)
    fs, path = open_fs(join(folder, "tool.json"))
    if not fs.exists(path):
        raise FileNotFoundError(f"ctr_tool {name!r}: no trained tool {name!r} in recommend.tools_dir; {TRAIN_ONE}")
    tool = load_tool(fetch_dir(folder, into))
    if tool.task != "ctr":
        raise ValueError(f"ctr_tool {name!r} is a {tool.task} tool, not a ctr tool")
    return tool


def ctr_probabilities(bundle: Bundle, tool: Tool, user_idx: int, items: np.ndarray, sample: int,
                      seed: int = 0) -> np.ndarray:
    """P(click) [len(items)] for user_idx (-1: the mean over `sample` seeded known users)."""
    if tool.task != "ctr":
        raise ValueError(f"{tool.name} is a {tool.task} tool, not a ctr tool")
    if user_idx >= 0:
        users = np.array([user_idx], dtype=np.int64)
    else:
        n = bundle.dataset.n_users
        users = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False)).astype(np.int64)
    everything = bundle.everything
    histories = [everything.items[everything.offsets[u]:everything.offsets[u + 1]] for u in users]
    queries = Queries(users, pad_histories(histories, tool.cfg.max_len))
    logits = tool.score(queries, np.broadcast_to(items, (len(users), len(items))).copy()).astype(np.float64)
    return (1.0 / (1.0 + np.exp(-logits))).mean(axis=0)

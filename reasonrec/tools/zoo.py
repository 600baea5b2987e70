"""The Ray-free steps of training the tool zoo (`jobs/train_tools.py`): each tool's settings, one tool from data to
checkpoint and test row, the baseline rows and the metrics table. `actors/train_tools.py` runs `train_tool` once
per tool as a Ray task; everything here also runs in a plain process (and is tested that way).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from reasonrec.io import join, open_fs
from reasonrec.tools.train_config import TrainToolsConfig

TABLE_COLUMNS = ["tool", "task", "sampled_HR@5", "sampled_NDCG@5", "full_HR@5", "full_NDCG@5", "AUC", "LogLoss",
                 "train_seconds", "epochs", "device"]


def tool_settings(cfg: TrainToolsConfig, spec: str) -> tuple[str, dict[str, Any]]:
    """'sasrec+v' -> ('sasrec', {use_content: True, ...overrides}); unknown names fail before any training."""
    from reasonrec.tools import TOOLS

    name, _, variant = spec.lower().partition("+")
    if name not in TOOLS or variant not in ("", "v"):
        raise SystemExit(f"unknown tool {spec!r}; known: {sorted(TOOLS)} (append '+v' for the content variant)")
    settings = {"seed": cfg.seed, **cfg.tool_configs.get(spec, cfg.tool_configs.get(name, {}))}
    if variant == "v":
        settings["use_content"] = True
    if cfg.epochs is not None:
        settings["epochs"] = cfg.epochs
    TOOLS[name].config_class.model_validate(settings)  # a bad key fails here, not hours into a cluster run
    return name, settings


def content_features(cfg: TrainToolsConfig, specs: dict[str, tuple[str, dict[str, Any]]]) -> np.ndarray | None:
    """The item content matrix the '+v' tools train with; None when no tool asks for it."""
    from reasonrec.data.schema import Dataset
    from reasonrec.tools.content import item_content_features

    if not any(settings.get("use_content") for _, settings in specs.values()):
        return None
    return item_content_features(Dataset.load(cfg.dataset))


def train_tool(cfg: TrainToolsConfig, spec: str, name: str, settings: dict[str, Any],
               features: np.ndarray | None, device: str) -> dict[str, Any]:
    """One tool, start to finish: load the data, fit with early stopping, evaluate at cfg.evaluate, save
    <out>/<spec>/; returns its test row (with train time, epochs, device and the checkpoint's URI)."""
    from reasonrec.tools import TOOLS
    from reasonrec.tools.data import ToolData

    tool_class = TOOLS[name]
    tool_cfg = tool_class.config_class.model_validate(settings)
    features = features if tool_cfg.use_content else None
    data = ToolData.load(cfg.dataset, cfg.split, cfg.negatives, cfg.ctr_split, cfg.ctr_ratio, item_features=features)
    tool = tool_class(tool_cfg, data.n_users, data.n_items, features).to(device)
    started = time.perf_counter()
    history = tool.fit(data)
    train_seconds = time.perf_counter() - started
    row = evaluate_at_level(tool, data, cfg.evaluate)
    row.update({"train_seconds": round(train_seconds, 1), "epochs": len(history) - 1, "device": device,
                "best": history[-1]["best"], "checkpoint": join(cfg.out, spec.lower())})
    save_checkpoint(tool, row["checkpoint"], {"dataset": cfg.dataset, "split": cfg.split, "test_metrics": row})
    return row


def evaluate_at_level(tool, data, level: str) -> dict[str, Any]:
    """The tool's test row at the config's `evaluate` level (full = evaluate_tool: sampled + full ranking)."""
    from reasonrec.metrics.ctr import ctr_metrics
    from reasonrec.tools.evaluate import evaluate_tool, sampled_metrics
    from reasonrec.tools.training import ctr_probabilities

    if level == "full":
        return evaluate_tool(tool, data)
    row: dict[str, Any] = {"tool": tool.name + ("+V" if tool.cfg.use_content else ""), "task": tool.task}
    if level == "sampled":
        row.update(ctr_metrics(*ctr_probabilities(tool, data, "test")) if tool.task == "ctr"
                   else sampled_metrics(tool, data))
    return row


def save_checkpoint(tool, destination: str, extra: dict[str, Any]) -> None:
    """Save locally, then copy to the destination (a local folder or s3://)."""
    fs, path = open_fs(destination)
    with tempfile.TemporaryDirectory() as tmp:
        local = tool.save(Path(tmp) / "ckpt", extra)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.makedirs(path, exist_ok=True)
        for file in local.iterdir():
            fs.put_file(str(file), join(path, file.name))


def baseline_rows(cfg: TrainToolsConfig, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most popular (evaluate=full: it ranks the catalogue too), and the majority vote of the trained ranking
    tools on the 1+N lists (loaded back from their checkpoints); none with evaluate=none."""
    from reasonrec.tools.base import load_tool
    from reasonrec.tools.content import item_content_features
    from reasonrec.tools.data import ToolData
    from reasonrec.tools.evaluate import evaluate_majority_vote, evaluate_popularity

    if cfg.evaluate == "none":
        return []
    data = ToolData.load(cfg.dataset, cfg.split, cfg.negatives, cfg.ctr_split, cfg.ctr_ratio)
    baselines = [evaluate_popularity(data)] if cfg.evaluate == "full" else []
    ranking = [r for r in rows if r["task"] in ("sequential", "direct")]
    if len(ranking) >= 2:
        features = item_content_features(data.dataset) if any("+V" in r["tool"] for r in ranking) else None
        with tempfile.TemporaryDirectory() as tmp:
            tools = []
            for r in ranking:
                fs, path = open_fs(r["checkpoint"])
                local = Path(tmp) / Path(path).name
                fs.get(path, str(local), recursive=True)
                tools.append(load_tool(local, features if "+V" in r["tool"] else None))
            baselines.append(evaluate_majority_vote(tools, data))
    return baselines


def headline(row: dict[str, Any]) -> str:
    """The one number the progress bar shows for a finished tool."""
    return (f"AUC {row['AUC']:.3f}" if "AUC" in row else
            f"HR@5 {row['sampled_HR@5']:.3f}" if "sampled_HR@5" in row else "not evaluated")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else str(value))

    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in TABLE_COLUMNS) + " |" for row in rows]
    return "\n".join(lines)

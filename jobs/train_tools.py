"""Train the tool zoo in parallel as Ray tasks, evaluate each on the fixed lists, write checkpoints + a table.

    python jobs/train_tools.py --dataset artifacts/datasets/ml-latest-small --tools sasrec,bpr_mf,lightgcn
    python jobs/train_tools.py --config configs/synthetic.yaml epochs=3
    ray job submit --working-dir . -- python jobs/train_tools.py --config configs/beauty.yaml

Each tool is one Ray task (`cpus_per_tool` CPUs, as many torch threads; `gpus_per_tool` GPUs, and then it
trains and evaluates on cuda — by default the cluster's GPUs are shared by all the tools): it loads the prepared data, fits
with early stopping on validation, evaluates on test (`evaluate`: sampled 1+N and full ranking, the 1+N lists
only, or nothing; AUC/LogLoss for CTR tools), saves safetensors + JSON to <out>/<tool>/ and returns its metrics. The driver shows progress as
tasks finish, adds the most-popular and majority-vote rows, and writes <out>/metrics.json and metrics.md.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from actors.cluster import init_ray
from reasonrec.cli import job_parser, resolve_config
from reasonrec.data.schema import Dataset
from reasonrec.io import join, open_fs
from reasonrec.tools.train_config import TrainToolsConfig


# ---------------------------------------------------------------------------------------------------- config

def parse(argv: list[str] | None) -> TrainToolsConfig:
    parser = job_parser(__doc__)
    parser.add_argument("--dataset", help="sets dataset")
    parser.add_argument("--tools", help="comma-separated tool names, sets tools")
    parser.add_argument("--out", help="sets out")
    args = parser.parse_args(argv)
    flags = []
    if args.dataset:
        flags.append(f"dataset={json.dumps(args.dataset)}")
        if not args.out:
            flags.append(f"out={json.dumps(join('artifacts/tools', Path(args.dataset).name))}")
    if args.tools:
        flags.append(f"tools={json.dumps(args.tools.split(','))}")
    if args.out:
        flags.append(f"out={json.dumps(args.out)}")
    return resolve_config(TrainToolsConfig, args, flags)


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


# ------------------------------------------------------------------------------------------------------- run

@ray.remote
def train_one(spec: str, name: str, settings: dict[str, Any], cfg_json: str, features_ref) -> dict[str, Any]:
    """One tool, start to finish, inside a Ray task."""
    import torch

    from reasonrec.tools import TOOLS
    from reasonrec.tools.data import ToolData

    cfg = TrainToolsConfig.model_validate_json(cfg_json)
    torch.set_num_threads(max(1, int(cfg.cpus_per_tool)))
    tool_class = TOOLS[name]
    tool_cfg = tool_class.config_class.model_validate(settings)
    features = features_ref if tool_cfg.use_content else None
    data = ToolData.load(cfg.dataset, cfg.split, cfg.negatives, cfg.ctr_split, cfg.ctr_ratio, item_features=features)
    device = "cuda" if ray.get_gpu_ids() else "cpu"       # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU
    tool = tool_class(tool_cfg, data.n_users, data.n_items, features).to(device)
    started = time.perf_counter()
    history = tool.fit(data)
    train_seconds = time.perf_counter() - started
    row = test_metrics(tool, data, cfg.evaluate)
    row.update({"train_seconds": round(train_seconds, 1), "epochs": len(history) - 1, "device": device,
                "best": history[-1]["best"], "checkpoint": join(cfg.out, spec.lower())})
    save_checkpoint(tool, row["checkpoint"], {"dataset": cfg.dataset, "split": cfg.split, "test_metrics": row})
    return row


def test_metrics(tool, data, level: str) -> dict[str, Any]:
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


def gpus_per_tool(cfg: TrainToolsConfig, n_tools: int) -> float:
    """The GPUs one tool task asks for: cfg.gpus_per_tool, or with 'auto' the cluster's GPUs shared evenly
    (small tools leave most of a GPU idle, so sharing one trains the zoo at once rather than in turn)."""
    if cfg.gpus_per_tool != "auto":
        return float(cfg.gpus_per_tool)
    cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
    return 0.0 if cluster_gpus == 0 else min(1.0, cluster_gpus / max(1, n_tools))


def run(cfg: TrainToolsConfig, specs: dict[str, tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    from tqdm import tqdm

    from reasonrec.tools.content import item_content_features

    features = None
    if any(settings.get("use_content") for _, settings in specs.values()):
        features = item_content_features(Dataset.load(cfg.dataset))
    features_ref = ray.put(features)
    gpus = gpus_per_tool(cfg, len(specs))
    if gpus:
        print(f"training on GPU: {gpus:g} GPU per tool, {ray.cluster_resources().get('GPU', 0):g} in the cluster")
    pending = {
        train_one.options(num_cpus=cfg.cpus_per_tool, num_gpus=gpus, name=f"train:{spec}").remote(
            spec, name, settings, cfg.model_dump_json(), features_ref): spec
        for spec, (name, settings) in specs.items()
    }
    rows = []
    with tqdm(total=len(pending), desc="tools trained", file=sys.stdout) as progress:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            row = {"spec": spec, **ray.get(done[0])}
            rows.append(row)
            headline = (f"AUC {row['AUC']:.3f}" if "AUC" in row else
                        f"HR@5 {row['sampled_HR@5']:.3f}" if "sampled_HR@5" in row else "not evaluated")
            progress.set_postfix_str(f"{spec}: {headline}")
            progress.update()
    return sorted(rows, key=lambda row: cfg.tools.index(row["spec"]))


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


# ------------------------------------------------------------------------------------------------------ save

TABLE_COLUMNS = ["tool", "task", "sampled_HR@5", "sampled_NDCG@5", "full_HR@5", "full_NDCG@5", "AUC", "LogLoss",
                 "train_seconds", "epochs", "device"]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else str(value))

    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in TABLE_COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    cfg = parse(argv)
    specs = {spec: tool_settings(cfg, spec) for spec in cfg.tools}
    init_ray(cfg.ray_address)
    started = time.perf_counter()
    rows = run(cfg, specs)
    rows = baseline_rows(cfg, rows) + rows
    fs, out = open_fs(cfg.out)
    fs.makedirs(out, exist_ok=True)
    manifest = Dataset.load(cfg.dataset).manifest
    evaluated = {"full": f"test set, sampled = 1+{cfg.negatives} fixed lists, full = whole catalogue minus "
                          "train+valid items",
                 "sampled": f"test set, sampled = 1+{cfg.negatives} fixed lists (full ranking skipped: evaluate=sampled)",
                 "none": "not evaluated (evaluate=none)"}[cfg.evaluate]
    header = (f"Dataset {manifest.name} ({manifest.n_users} users, {manifest.n_items} items), split {cfg.split}, "
              f"{evaluated}. Wall {time.perf_counter() - started:.0f} s.")
    with fs.open(join(out, "metrics.json"), "w") as f:
        json.dump({"config": cfg.model_dump(mode="json"), "rows": rows}, f, indent=2, default=str)
    with fs.open(join(out, "metrics.md"), "w") as f:
        f.write(header + "\n\n" + markdown_table(rows) + "\n")
    print(header)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()

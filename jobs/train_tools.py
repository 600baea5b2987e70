"""Train the tool zoo in parallel as Ray tasks, evaluate each on the fixed lists, write checkpoints + a table.

    python jobs/train_tools.py --dataset artifacts/datasets/ml-latest-small --tools sasrec,bpr_mf,lightgcn
    python jobs/train_tools.py --config configs/synthetic.yaml epochs=3
    ray job submit --working-dir . -- python jobs/train_tools.py --config configs/beauty.yaml

Top to bottom:
- config: the YAML + overrides (--dataset, --tools, --out set their keys).
- setup: every tool's settings checked against its config class before Ray starts (seconds, not a cluster run).
- run: each tool is one Ray task (actors/train_tools.py; `cpus_per_tool` CPUs, as many torch threads;
  `gpus_per_tool` GPUs, and then it trains and evaluates on cuda — by default the cluster's GPUs are shared by
  all the tools): it loads the prepared data, fits with early stopping on validation, evaluates on test
  (`evaluate`: sampled 1+N and full ranking, the 1+N lists only, or nothing; AUC/LogLoss for CTR tools), saves
  safetensors + JSON to <out>/<tool>/ and returns its metrics (reasonrec/tools/zoo.py). The driver shows
  progress as tasks finish and adds the most-popular and majority-vote rows.
- save: <out>/metrics.json and metrics.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from actors.cluster import init_ray
from actors.train_tools import train_tools
from reasonrec.cli import job_parser, resolve_config
from reasonrec.data.schema import Dataset
from reasonrec.io import join, open_fs
from reasonrec.tools.train_config import TrainToolsConfig
from reasonrec.tools.zoo import baseline_rows, markdown_table, tool_settings


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


# ----------------------------------------------------------------------------------------------------- setup

def setup(cfg: TrainToolsConfig) -> dict[str, tuple[str, dict[str, Any]]]:
    """{spec: (tool name, settings)}, checked before Ray starts (an unknown tool or key costs seconds); then Ray."""
    specs = {spec: tool_settings(cfg, spec) for spec in cfg.tools}
    init_ray(cfg.ray_address)
    return specs


# ------------------------------------------------------------------------------------------------------- run

def run(cfg: TrainToolsConfig, specs: dict[str, tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One Ray task per tool (actors/train_tools.py), then the most-popular and majority-vote rows."""
    rows = train_tools(cfg, specs)
    return baseline_rows(cfg, rows) + rows


# ------------------------------------------------------------------------------------------------------ save

def save(cfg: TrainToolsConfig, rows: list[dict[str, Any]], started: float) -> None:
    """<out>/metrics.json (config + rows) and metrics.md (a header saying what was evaluated and the wall time
    since `started`, then the table)."""
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


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    cfg = parse(argv)
    specs = setup(cfg)
    started = time.perf_counter()
    rows = run(cfg, specs)
    save(cfg, rows, started)
    return rows


if __name__ == "__main__":
    main()

"""Fine-tune the R-VIT VLM with Ray Train + DeepSpeed: instructions -> curriculum -> ZeRO training -> one model.

    python jobs/train_vlm.py --config configs/synthetic.yaml
    python jobs/train_vlm.py --config configs/synthetic.yaml max_steps=20 zero_stage=3 out=/tmp/vlm
    ray job submit --working-dir . -- python jobs/train_vlm.py --config configs/ml-latest-small.yaml \
        out=s3://bucket/vlm/ml-latest-small use_gpu=true cpus_per_worker=4

Top to bottom:
- config: the YAML + overrides; every local path made absolute (Ray workers do not share the driver's cwd);
  the inputs checked and <out>/run.json compared before Ray starts (a mistake costs seconds).
- setup, on the driver, each step skipped when its output is already in <out> (reasonrec/vlm/prepare.py):
  instructions for train/valid/test (labelled by the trained tools in tools_dir) -> <out>/instructions/; the
  tiny base model (tokenizer trained on the train instructions) -> <out>/base/; the curriculum order over the
  train instructions cut into one ordered Parquet shard per rank -> <out>/sequence/; the run's settings and plan
  -> <out>/run.json (a rerun with different settings is refused instead of silently mixing two runs).
- run (actors/train_vlm.py): a TorchTrainer with one DeepSpeed engine per worker (gloo on CPU, nccl on GPU).
  Each worker streams its own shard with Ray Data in order, encodes on the fly and checkpoints every
  `checkpoint_every` steps with ray.train.report. A rerun with the same out (or Ray's own retry, max_failures)
  resumes: DeepSpeed restores weights, optimizer and LR schedule, and each worker skips the rows it had
  already consumed.
- save: the last checkpoint's fp32 weights (gathered from the ZeRO partitions) into the base architecture,
  LoRA merged, save_pretrained with the processor -> <out>/model (loads with reasonrec.vlm.build.load_vlm).
- evaluate: VLMScorer on the test instructions (fixed 1+N lists), the most-popular baseline on the same
  lists, HR@5 of the more / less confident halves -> <out>/metrics.json and metrics.md.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from actors.cluster import init_ray
from actors.train_vlm import fit, trains_on_gpu
from reasonrec.cli import job_parser, resolve_config
from reasonrec.data.schema import Dataset
from reasonrec.io import join, open_fs
from reasonrec.vlm.deepspeed_config import resolve_precision
from reasonrec.vlm.evaluate import evaluate_run, metrics_markdown
from reasonrec.vlm.export import save_model
from reasonrec.vlm.prepare import (check_inputs, prepare_base, prepare_instructions, prepare_sequence,
                                   prepare_validation, training_examples)
from reasonrec.vlm.run_record import earlier_run, record_run
from reasonrec.vlm.schedule import TrainPlan
from reasonrec.vlm.train_config import TrainVLMConfig


# ---------------------------------------------------------------------------------------------------- config

def parse(argv: list[str] | None) -> TrainVLMConfig:
    parser = job_parser(__doc__)
    parser.add_argument("--dataset", help="sets dataset")
    parser.add_argument("--out", help="sets out")
    args = parser.parse_args(argv)
    flags = [f"{key}={json.dumps(value)}" for key, value in (("dataset", args.dataset), ("out", args.out)) if value]
    cfg = resolve_config(TrainVLMConfig, args, flags)
    # Ray workers do not share the driver's working directory: every local path they read becomes absolute.
    updates = {key: absolute(getattr(cfg, key)) for key in ("dataset", "out", "tools_dir") if getattr(cfg, key)}
    model_paths = {key: os.path.abspath(getattr(cfg.model, key)) for key in ("checkpoint", "item_embedding_tool")
                   if getattr(cfg.model, key) and os.path.exists(getattr(cfg.model, key))}  # local, not an HF id
    if model_paths:
        updates["model"] = cfg.model.model_copy(update=model_paths)
    if cfg.distill.tool:
        updates["distill"] = cfg.distill.model_copy(update={"tool": absolute(cfg.distill.tool)})
    return cfg.model_copy(update=updates)


def absolute(uri: str) -> str:
    return uri if "://" in uri else os.path.abspath(uri)


# ----------------------------------------------------------------------------------------------------- setup

@dataclass
class Prepared:
    """What the driver prepared under <out> for the workers."""
    paths: dict[str, str]        # instructions per part
    tool_names: list[str]        # the tools the instructions were labelled with (the <tool_x> tokens)
    plan: TrainPlan
    base: str                    # where workers load the starting weights from
    sequence: list[str]          # one ordered curriculum shard per rank
    n_items: int
    validation: str | None       # VLM-only first-pass instructions of validation users (None: no validation)


def setup(cfg: TrainVLMConfig, earlier: dict[str, Any] | None) -> Prepared:
    """Instructions -> the plan (recorded in run.json) -> the base model -> the per-rank curriculum shards."""
    n_items = Dataset.load(cfg.dataset).n_items
    paths, tool_names = prepare_instructions(cfg)
    train_table, eh = training_examples(cfg, paths["train"])
    plan = TrainPlan.build(train_table.num_rows, cfg.num_workers, cfg.batch_size, cfg.grad_accum, cfg.max_steps,
                           cfg.epochs, cfg.warmup_ratio, cfg.checkpoint_every, cfg.seed,
                           cfg.instructions.curriculum.model_dump_json())
    record_run(cfg, plan, earlier)
    base = prepare_base(cfg, train_table, n_items, tool_names)
    sequence = prepare_sequence(cfg, plan, train_table, eh)
    validation = prepare_validation(cfg)
    print(f"[setup] {'resuming' if earlier else 'new run'}: {train_table.num_rows} train instructions, "
          f"{plan.total_steps} steps x {plan.global_batch} = {plan.total_samples} samples", flush=True)
    return Prepared(paths, tool_names, plan, base, sequence, n_items, validation)


# ------------------------------------------------------------------------------------------------------- run

def train(cfg: TrainVLMConfig, prepared: Prepared):
    """Ray Train on the prepared shards; the last checkpoint, which must be at the plan's last step (or where
    validation's patience stopped the run)."""
    init_ray(cfg.ray_address)
    on_gpu = trains_on_gpu(cfg)
    try:
        resolve_precision(cfg.precision, on_gpu)
    except ValueError as err:
        raise SystemExit(f"config error: {err}") from None
    started = time.perf_counter()
    result = fit(cfg, prepared.plan, prepared.sequence, prepared.base, prepared.n_items, prepared.tool_names,
                 on_gpu, prepared.validation)
    seconds = time.perf_counter() - started
    if result.checkpoint is None or not result.metrics:
        raise SystemExit(f"training finished without a checkpoint in {cfg.out}/checkpoints")
    metrics = dict(result.metrics)
    if metrics["step"] != prepared.plan.total_steps and not metrics.get("stopped_early"):
        raise SystemExit(f"last checkpoint is at step {metrics['step']}, the plan has {prepared.plan.total_steps}")
    return result.checkpoint, metrics, seconds


# ------------------------------------------------------------------------------------------------------ save

def save(cfg: TrainVLMConfig, prepared: Prepared, checkpoint, train_metrics: dict[str, Any]) -> str:
    """<out>/model from the last checkpoint; returns its URI."""
    with checkpoint.as_directory() as folder:
        return save_model(cfg, folder, prepared.base, prepared.n_items, prepared.tool_names, train_metrics)


# -------------------------------------------------------------------------------------------------- evaluate

def report(cfg: TrainVLMConfig, prepared: Prepared, model_uri: str, train: dict[str, Any],
           started: float) -> dict[str, Any]:
    """The test rows -> <out>/metrics.json (config, plan, training, rows) and metrics.md."""
    rows = evaluate_run(cfg, model_uri, prepared.paths["test"], prepared.tool_names)
    summary = {"config": cfg.model_dump(mode="json"),
               "plan": {**prepared.plan.model_dump(), "total_samples": prepared.plan.total_samples},
               "train": train, "model": model_uri, "rows": rows,
               "wall_seconds": round(time.perf_counter() - started, 1)}
    fs, out = open_fs(cfg.out)
    with fs.open(join(out, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    table = metrics_markdown(cfg, train, rows)
    with fs.open(join(out, "metrics.md"), "w") as f:
        f.write(table)
    print(table)
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = parse(argv)
    check_inputs(cfg)
    earlier = earlier_run(cfg)
    started = time.perf_counter()
    prepared = setup(cfg, earlier)
    checkpoint, train_metrics, fit_seconds = train(cfg, prepared)
    model_uri = save(cfg, prepared, checkpoint, train_metrics)
    return report(cfg, prepared, model_uri, {**train_metrics, "fit_seconds": round(fit_seconds, 1)}, started)


if __name__ == "__main__":
    main()

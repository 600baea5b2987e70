"""Fine-tune the R-VIT VLM with Ray Train + DeepSpeed: instructions -> curriculum -> ZeRO training -> one model.

    python jobs/train_vlm.py --config configs/synthetic.yaml
    python jobs/train_vlm.py --config configs/synthetic.yaml max_steps=20 zero_stage=3 out=/tmp/vlm
    ray job submit --working-dir . -- python jobs/train_vlm.py --config configs/ml-latest-small.yaml \
        out=s3://bucket/vlm/ml-latest-small use_gpu=true cpus_per_worker=4

Top to bottom:
- setup, on the driver, each step skipped when its output is already in <out>: instructions for
  train/valid/test (labelled by the trained tools in tools_dir) -> <out>/instructions/; the tiny base model
  (tokenizer trained on the train instructions) -> <out>/base/; the curriculum order over the train
  instructions cut into one ordered Parquet shard per rank -> <out>/sequence/; the run's settings and plan
  -> <out>/run.json (a rerun with different settings is refused instead of silently mixing two runs).
- run: a TorchTrainer with one DeepSpeed engine per worker (gloo on CPU, nccl on GPU). Each worker streams
  its own shard with Ray Data in order, encodes on the fly and checkpoints every `checkpoint_every` steps with
  ray.train.report. A rerun with the same out (or Ray's own retry, max_failures) resumes: DeepSpeed restores
  weights, optimizer and LR schedule, and each worker skips the rows it had already consumed.
- save: the last checkpoint's fp32 weights (gathered from the ZeRO partitions) into the base architecture,
  LoRA merged, save_pretrained with the processor -> <out>/model (loads with reasonrec.vlm.build.load_vlm).
- evaluate: VLMScorer on the test instructions (fixed 1+N lists), the most-popular baseline on the same
  lists, HR@5 of the more / less confident halves -> <out>/metrics.json and metrics.md.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from reasonrec.cli import job_parser, resolve_config
from reasonrec.io import fetch_dir, join, open_fs
from reasonrec.vlm.deepspeed_config import resolve_precision
from reasonrec.vlm.schedule import TrainPlan
from reasonrec.vlm.train_config import TrainVLMConfig

PARTS = ("train", "valid", "test")
# Test-only hook: "STEP:DIR" makes every worker, right after the checkpoint of step STEP is registered, write
# DIR/rank<r>.pid and wait, so a test can kill a training process at a known point.
HOLD_ENV = "REASONREC_TRAIN_HOLD"
# Settings that may change between a run and its resumption (they do not change what is trained).
RESUMABLE_CHANGES = {"out", "max_failures", "log_every", "keep_checkpoints", "cpus_per_worker", "eval",
                     "ray_address"}


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
    return cfg.model_copy(update=updates)


def absolute(uri: str) -> str:
    return uri if "://" in uri else os.path.abspath(uri)


def check_inputs(cfg: TrainVLMConfig) -> None:
    """Everything that can be checked before Ray starts: a mistake costs seconds, not a cluster start."""
    fs, path = open_fs(cfg.dataset)
    if not fs.exists(join(path, "manifest.json")):
        raise SystemExit(f"dataset {cfg.dataset} is not prepared (no manifest.json); run jobs/prepare_data.py")
    if not fs.exists(join(path, "splits", cfg.split)):
        raise SystemExit(f"dataset {cfg.dataset} has no split {cfg.split!r}")
    if cfg.tools_dir is not None:
        tool_folders(cfg)  # raises on a missing folder or tool
    tool = cfg.model.item_embedding_tool
    if tool and not open_fs(tool)[0].exists(join(open_fs(tool)[1], "tool.json")):
        raise SystemExit(f"model.item_embedding_tool {tool} is not a trained tool folder (no tool.json)")


def tool_folders(cfg: TrainVLMConfig) -> dict[str, str]:
    """{tool name: checkpoint folder}, from cfg.tools or every tool checkpoint under tools_dir."""
    if cfg.tools_dir is None:
        return {}
    fs, root = open_fs(cfg.tools_dir)
    if not fs.isdir(root):
        raise SystemExit(f"tools_dir {cfg.tools_dir} does not exist (train tools first, or set tools_dir=null)")
    found = sorted(Path(p).name for p in fs.ls(root, detail=False) if fs.exists(join(p, "tool.json")))
    names = found if cfg.tools is None else [n.lower() for n in cfg.tools]
    missing = sorted(set(names) - set(found))
    if missing or not names:
        raise SystemExit(f"tools {missing or names} not found under {cfg.tools_dir}; found {found}")
    return {name: join(cfg.tools_dir, name) for name in names}


# ----------------------------------------------------------------------------------------------------- setup

def load_tools(cfg: TrainVLMConfig, data) -> dict[str, Any]:
    """Trained tools by folder name (the names the <tool_x> tokens use); content variants get real features."""
    from reasonrec.tools.base import load_tool
    from reasonrec.tools.content import item_content_features

    folders = tool_folders(cfg)
    features = item_content_features(data.dataset) if any(n.endswith("+v") for n in folders) else None
    tools = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, uri in folders.items():
            fs, path = open_fs(uri)
            local = Path(tmp) / name
            fs.get(path, str(local), recursive=True)
            tools[name] = load_tool(local, features if name.endswith("+v") else None)
    return tools


def prepare_instructions(cfg: TrainVLMConfig) -> tuple[dict[str, str], list[str]]:
    """Build train/valid/test instructions once; returns their paths and the tool names they were labelled with."""
    from reasonrec.tools.data import ToolData
    from reasonrec.vlm.instructions import build_instructions, instruction_stats, read_split_evidence
    from reasonrec.vlm.instructions import write_instructions

    paths = {part: join(cfg.out, "instructions", f"{part}.parquet") for part in PARTS}
    fs, out = open_fs(cfg.out)
    stats_path = join(out, "instructions", "stats.json")
    if fs.exists(stats_path):  # written last: the instructions are complete (tools may have changed since)
        with fs.open(stats_path) as f:
            return paths, json.load(f)["tools"]
    tool_names = sorted(tool_folders(cfg))
    started = time.perf_counter()
    data = ToolData.load(cfg.dataset, cfg.split, cfg.negatives)
    tools = load_tools(cfg, data)
    evidence = read_split_evidence(data)
    stats = {}
    for part in PARTS:
        instructions = build_instructions(data, evidence, part, cfg.instructions, tools)
        write_instructions(instructions, paths[part])
        stats[part] = instruction_stats(instructions)
        print(f"[setup] {part}: {len(instructions)} instructions", flush=True)
    with fs.open(stats_path, "w") as f:
        json.dump({"tools": tool_names, "parts": stats}, f, indent=2)
    print(f"[setup] instructions built in {time.perf_counter() - started:.1f} s", flush=True)
    return paths, tool_names


def training_examples(cfg: TrainVLMConfig, path: str):
    """The train instructions training reads (an Arrow table) and their evidence horizons."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from reasonrec.vlm.records import INSTRUCTION_SCHEMA

    fs, fs_path = open_fs(path)
    table = pq.read_table(fs_path, filesystem=fs, schema=INSTRUCTION_SCHEMA)
    if cfg.tasks_trained is not None:
        table = table.filter(pc.is_in(table["task"], value_set=pa.array(cfg.tasks_trained)))
    if table.num_rows == 0:
        raise SystemExit(f"no training instructions for tasks {cfg.tasks_trained or cfg.instructions.tasks}")
    return table, table["evidence_horizon"].to_numpy()


def prepare_base(cfg: TrainVLMConfig, train_table, n_items: int, tool_names: list[str]) -> str:
    """Where workers load the starting weights from: a tiny model built once under <out>/base, or a checkpoint."""
    from reasonrec.vlm.build import build_tiny_vlm

    if cfg.model.preset == "pretrained" or cfg.model.checkpoint is not None:
        return cfg.model.checkpoint
    base = join(cfg.out, "base")
    fs, path = open_fs(base)
    if fs.exists(join(path, "reasonrec.json")):
        return base
    corpus = [f"{p} {t} {a}" for p, t, a in zip(train_table["prompt"].to_pylist(), train_table["thought"].to_pylist(),
                                                   train_table["answer"].to_pylist())]
    with tempfile.TemporaryDirectory() as tmp:
        local = build_tiny_vlm(Path(tmp) / "base", n_items, tool_names, corpus, cfg.model)
        upload(local, base)
    print(f"[setup] tiny base model built at {base}", flush=True)
    return base


def prepare_sequence(cfg: TrainVLMConfig, plan: TrainPlan, train_table, eh: np.ndarray) -> list[str]:
    """The curriculum order, cut into one ordered shard per rank: <out>/sequence/rank_<r>.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reasonrec.vlm.curriculum import curriculum_order

    paths = [join(cfg.out, "sequence", f"rank_{r}.parquet") for r in range(plan.num_workers)]
    fs, out = open_fs(cfg.out)
    order_path = join(out, "sequence", "order.parquet")  # written last: the shards are complete
    if fs.exists(order_path):
        return paths
    order = curriculum_order(eh, plan.total_samples, cfg.instructions.curriculum, plan.seed)
    fs.makedirs(join(out, "sequence"), exist_ok=True)
    for rank, path in enumerate(paths):
        positions = plan.rank_positions(rank)
        examples = order[positions]
        shard = train_table.take(pa.array(examples))
        shard = shard.add_column(0, "example", pa.array(examples, pa.int64()))
        shard = shard.add_column(0, "position", pa.array(positions, pa.int64()))
        pq.write_table(shard, open_fs(path)[1], filesystem=fs, row_group_size=max(1, plan.rows_per_rank_step * 8))
    pq.write_table(pa.table({"position": np.arange(len(order)), "example": order,
                             "evidence_horizon": eh[order]}), order_path, filesystem=fs)
    return paths


def run_settings(cfg: TrainVLMConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json", exclude=RESUMABLE_CHANGES)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, so a refusal names the exact key that changed."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def earlier_run(cfg: TrainVLMConfig) -> dict[str, Any] | None:
    """<out>/run.json of an earlier run, after checking it was started with the same settings (None if new)."""
    fs, out = open_fs(cfg.out)
    if not fs.exists(join(out, "run.json")):
        return None
    with fs.open(join(out, "run.json")) as f:
        earlier = json.load(f)
    now, then = flatten(run_settings(cfg)), flatten(earlier["settings"])
    changed = [f"{k}: {then.get(k)!r} there, {now.get(k)!r} now" for k in sorted(set(now) | set(then))
               if now.get(k) != then.get(k)]
    if changed:
        raise SystemExit(f"{cfg.out} holds a run with other settings ({'; '.join(changed)}): it cannot be resumed "
                         "with these; use a new out (or delete that folder)")
    return earlier


def record_run(cfg: TrainVLMConfig, plan: TrainPlan, earlier: dict[str, Any] | None) -> None:
    """Write <out>/run.json for a new run; for a continued one, the plan must be the one it was started with."""
    if earlier is not None:
        changed = plan.mismatch(TrainPlan.model_validate(earlier["plan"]))
        if changed:
            raise SystemExit(f"{cfg.out} was planned differently ({'; '.join(changed)}); use a new out")
        return
    fs, out = open_fs(cfg.out)
    fs.makedirs(out, exist_ok=True)
    with fs.open(join(out, "run.json"), "w") as f:
        json.dump({"settings": run_settings(cfg), "plan": plan.model_dump()}, f, indent=2)


def upload(local: Path, destination: str, last: str = "reasonrec.json") -> None:
    """Copy a local folder to `destination`, the file named `last` last: its presence means the copy is whole."""
    fs, path = open_fs(destination)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.makedirs(path, exist_ok=True)
    for file in sorted((f for f in local.rglob("*") if f.is_file()), key=lambda f: f.name == last):
        fs.put_file(str(file), join(path, str(file.relative_to(local))))


# ------------------------------------------------------------------------------------------------------- run

def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One DeepSpeed rank: load the base, resume if a checkpoint exists, read its shard in order, train."""
    import ray.train
    import torch
    import torch.distributed as dist

    from reasonrec.data.schema import Dataset
    from reasonrec.vlm.encode import EncodeStats, Pieces, encode_for_training
    from reasonrec.vlm.images import ItemImages
    from reasonrec.vlm.loss import supervised_loss
    from reasonrec.vlm.records import from_row

    worker_started = time.perf_counter()
    cfg = TrainVLMConfig.model_validate_json(config["cfg"])
    plan = TrainPlan.model_validate_json(config["plan"])
    rank = ray.train.get_context().get_world_rank()
    on_gpu = config["on_gpu"]
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed)
    device = ray.train.torch.get_device() if on_gpu else torch.device("cpu")
    # Start the ingest stream first: its start-up (read tasks, workers) overlaps loading and DeepSpeed init.
    shard = ray.train.get_dataset_shard(f"rank_{rank}")
    batches = background(shard.iter_batches(batch_size=cfg.batch_size, batch_format="pyarrow", prefetch_batches=2))

    engine, processor = build_engine(cfg, plan, config, on_gpu)
    dtype = next(engine.module.parameters()).dtype
    state = restore(engine)
    resumed_from = state["step"]
    if rank == 0:
        print(f"[train] {'resumed from' if resumed_from else 'starting at'} step {resumed_from} of "
              f"{plan.total_steps} ({plan.total_samples} samples, global batch {plan.global_batch}); "
              f"engine ready in {time.perf_counter() - worker_started:.1f} s", flush=True)

    images = ItemImages(Dataset.load(cfg.dataset), cfg.model.image_size)
    pieces, stats = Pieces(processor), EncodeStats()
    for _ in range(resumed_from * cfg.grad_accum):  # rows consumed before the checkpoint: read, never encoded
        next(batches)

    def all_sum(values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    local = {"loss": 0.0, "micro": 0, "samples": 0, "position_sum": 0.0}
    started = time.perf_counter()
    first_step_done = None  # steady-state throughput leaves out the first step (ingest start-up, warm caches)
    for step in range(resumed_from, plan.total_steps):
        engine.train()
        for _ in range(cfg.grad_accum):
            rows = next(batches).to_pylist()
            local["position_sum"] += float(sum(row.pop("position") for row in rows))
            for row in rows:
                row.pop("example")
            batch = encode_for_training([from_row(row) for row in rows], processor, images, cfg.model.max_length,
                                        stats, pieces)
            batch = {k: v.to(device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in batch.items()}
            loss = supervised_loss(engine, batch)  # logits only where labels are (same loss, far cheaper)
            engine.backward(loss)
            engine.step()
            local["loss"] += loss.item()
            local["micro"] += 1
            local["samples"] += len(rows)
        done = step + 1
        first_step_done = first_step_done or (time.perf_counter(), done)
        checkpoint_due = plan.is_checkpoint_step(done)
        if done % cfg.log_every == 0 or checkpoint_due:
            loss_sum, micro, samples, position_sum = all_sum(
                [local["loss"], local["micro"], local["samples"], local["position_sum"]])
            state["samples"] += int(samples)
            state["position_sum"] += position_sum
            lr = engine.get_lr()[0]
            state["history"].append({"step": done, "loss": loss_sum / micro, "lr": lr})
            local = {"loss": 0.0, "micro": 0, "samples": 0, "position_sum": 0.0}
            if rank == 0:
                print(f"[train] step {done}/{plan.total_steps} loss {loss_sum / micro:.4f} lr {lr:.2e}", flush=True)
        state["step"] = done
        if checkpoint_due:
            now = time.perf_counter()
            seconds = now - started
            steady_steps, steady_seconds = done - first_step_done[1], now - first_step_done[0]
            peak_rss = all_max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, device)
            metrics = {"step": done, "samples": state["samples"], "position_sum": state["position_sum"],
                       "loss": state["history"][-1]["loss"], "history": state["history"],
                       "resumed_from": resumed_from, "segment_seconds": round(seconds, 2),
                       "segment_samples_per_second": round((done - resumed_from) * plan.global_batch / seconds, 2),
                       "steady_samples_per_second": round(steady_steps * plan.global_batch / steady_seconds, 2)
                       if steady_steps else None,
                       "peak_rss_mb_per_worker": round(peak_rss, 1), "encode": stats.as_dict()}
            save_checkpoint(engine, state, metrics, done)
            hold_if_asked(config.get("hold"), done, rank)


def build_engine(cfg: TrainVLMConfig, plan: TrainPlan, config: dict[str, Any], on_gpu: bool):
    """(DeepSpeed engine, processor) over the base model, with AdamW and the warm-up + cosine schedule."""
    import deepspeed

    from reasonrec.vlm.build import load_vlm
    from reasonrec.vlm.deepspeed_config import build_optimizer, build_scheduler, deepspeed_config

    # DeepSpeed keeps fp32 master weights and casts the module itself when bf16 is on: always load fp32.
    model_cfg = cfg.model.model_copy(update={"dtype": "float32"})
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = load_vlm(fetch_dir(config["base"], tmp), model_cfg, n_items=config["n_items"],
                                    tool_names=config["tool_names"])
    optimizer = build_optimizer(model, cfg)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                           lr_scheduler=build_scheduler(optimizer, cfg, plan),
                                           config=deepspeed_config(cfg, on_gpu), dist_init_required=False)
    return engine, processor


def restore(engine) -> dict[str, Any]:
    """The run's progress: from Ray's latest checkpoint (weights, optimizer, LR schedule restored into the
    engine) when there is one, else a fresh start."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return {"step": 0, "samples": 0, "position_sum": 0.0, "history": []}
    with checkpoint.as_directory() as folder:
        _, client_state = engine.load_checkpoint(folder)
    return client_state["state"]


def background(iterable, depth: int = 4):
    """Iterate `iterable` in a daemon thread from now on, `depth` items ahead; errors surface in the consumer."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=depth)
    end = object()

    def pump() -> None:
        try:
            for item in iterable:
                items.put(item)
            items.put(end)
        except BaseException as err:  # handed to the training loop, which raises it
            items.put(err)

    threading.Thread(target=pump, daemon=True, name="ingest").start()

    def drain():
        while (item := items.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item

    return drain()


def all_max(value: float, device) -> float:
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def save_checkpoint(engine, state: dict[str, Any], metrics: dict[str, Any], step: int) -> None:
    """Every rank writes its part (ZeRO shards) locally; Ray merges the parts into <out>/checkpoints/step_N."""
    import ray.train

    name = f"step_{step:08d}"
    with tempfile.TemporaryDirectory() as tmp:
        engine.save_checkpoint(tmp, tag=name, client_state={"state": state})
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name)


def hold_if_asked(hold: str | None, step: int, rank: int) -> None:
    """The test-only hook behind REASONREC_TRAIN_HOLD (see HOLD_ENV)."""
    if not hold or int(hold.split(":", 1)[0]) != step:
        return
    import ray.train

    ray.train.get_all_reported_checkpoints()  # returns once the controller has registered the checkpoint
    folder = Path(hold.split(":", 1)[1])
    (folder / f"rank{rank}.pid.tmp").write_text(str(os.getpid()))
    (folder / f"rank{rank}.pid.tmp").rename(folder / f"rank{rank}.pid")
    time.sleep(600)


def storage(uri: str):
    """(storage_path, storage_filesystem) for RunConfig and Ray Data: s3:// goes through our own s3fs options."""
    if "://" not in uri:
        return uri, None
    import pyarrow.fs

    fs, path = open_fs(uri)
    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def run(cfg: TrainVLMConfig, plan: TrainPlan, sequence: list[str], base: str, n_items: int,
        tool_names: list[str], on_gpu: bool):
    import ray
    from ray.data import DataContext, ExecutionOptions
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    DataContext.get_current().enable_progress_bars = False
    datasets = {}
    for rank, uri in enumerate(sequence):
        path, filesystem = storage(uri)
        datasets[f"rank_{rank}"] = ray.data.read_parquet(path, filesystem=filesystem)
    storage_path, storage_fs = storage(cfg.out)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump_json(), "plan": plan.model_dump_json(), "base": base,
                           "n_items": n_items, "tool_names": tool_names, "on_gpu": on_gpu,
                           "hold": os.environ.get(HOLD_ENV)},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=on_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker}),
        torch_config=TorchConfig(backend="nccl" if on_gpu else "gloo"),
        run_config=RunConfig(name="checkpoints", storage_path=storage_path, storage_filesystem=storage_fs,
                             failure_config=FailureConfig(max_failures=cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints)),
        datasets=datasets,
        # Unsplit per-rank datasets read in file order: rank r reads exactly its slice of the curriculum.
        dataset_config=DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)),
    )
    return trainer.fit()


# ------------------------------------------------------------------------------------------------------ save

def save_model(cfg: TrainVLMConfig, checkpoint, base: str, n_items: int, tool_names: list[str],
               train_metrics: dict[str, Any]) -> str:
    """Last checkpoint -> fp32 weights in the base architecture -> <out>/model (LoRA merged in)."""
    from reasonrec.vlm.build import META_FILE, load_vlm
    from reasonrec.vlm.deepspeed_config import consolidated_state_dict

    destination = join(cfg.out, "model")
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = load_vlm(fetch_dir(base, tmp), cfg.model.model_copy(update={"dtype": "float32"}),
                                    n_items=n_items, tool_names=tool_names)
        with checkpoint.as_directory() as folder:
            weights = consolidated_state_dict(folder)
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or missing:
            raise RuntimeError(f"checkpoint does not match the model: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")
        if cfg.model.lora.enabled:
            model = model.merge_and_unload()
        local = Path(tmp) / "model"
        model.save_pretrained(local)
        processor.save_pretrained(local)
        meta = {"n_items": n_items, "tool_names": tool_names, "preset": cfg.model.preset, "base": base,
                "trained_by": "jobs/train_vlm.py", "steps": train_metrics["step"],
                "samples": train_metrics["samples"]}
        (local / META_FILE).write_text(json.dumps(meta, indent=2))
        upload(local, destination)
    return destination


# -------------------------------------------------------------------------------------------------- evaluate

def evaluate(cfg: TrainVLMConfig, model_uri: str, test_path: str, tool_names: list[str]) -> list[dict[str, Any]]:
    """Per eval task: the VLM and most-popular on the same test lists, with the confidence halves."""
    import torch

    from reasonrec.baselines import MostPopular
    from reasonrec.data.schema import Dataset
    from reasonrec.data.splits import load_split
    from reasonrec.metrics.ranking import ranking_metrics, rank_of_target
    from reasonrec.vlm.build import load_vlm
    from reasonrec.vlm.evaluate import evaluate_ranking
    from reasonrec.vlm.images import ItemImages
    from reasonrec.vlm.instructions import read_instructions
    from reasonrec.vlm.scoring import VLMScorer

    if not cfg.eval.tasks:
        return []
    ds = Dataset.load(cfg.dataset)
    popular = MostPopular().fit(load_split(join(cfg.dataset, "splits"), cfg.split).train, ds.n_items)
    test = read_instructions(test_path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # <out>/model is complete: no fresh adapters, no re-initialised item rows on top of the trained ones.
    eval_model_cfg = cfg.model.model_copy(update={"lora": cfg.model.lora.model_copy(update={"enabled": False}),
                                                  "item_embedding_tool": None})
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = load_vlm(fetch_dir(model_uri, tmp), eval_model_cfg, device=device)
    model.eval()
    scorer = VLMScorer(model, processor, ItemImages(ds, cfg.model.image_size), tool_names,
                       batch_size=cfg.eval.batch_size, device=device, max_length=cfg.model.max_length)
    rows = []
    for task in cfg.eval.tasks:
        instructions = subset_users([ins for ins in test if ins.task == task], cfg.eval.max_users, cfg.seed)
        if not instructions or any(ins.target_item not in ins.candidates for ins in instructions):
            raise SystemExit(f"task {task!r}: no test instructions, or some without a fixed candidate list "
                             "holding their target")
        started = time.perf_counter()
        metrics = evaluate_ranking(scorer.score(instructions), instructions)
        seconds = time.perf_counter() - started
        candidates = np.array([ins.candidates for ins in instructions])
        targets = np.array([ins.candidates.index(ins.target_item) for ins in instructions])
        users = np.array([ins.user_idx for ins in instructions])
        baseline = ranking_metrics(rank_of_target(popular.score(users, candidates), targets), (1, 5, 10))
        rows.append({"model": "vlm", "task": task, "protocol": f"1+{candidates.shape[1] - 1}",
                     "instances": len(instructions), "score_seconds": round(seconds, 2), **metrics})
        rows.append({"model": "most_popular", "task": task, "protocol": f"1+{candidates.shape[1] - 1}",
                     "instances": len(instructions), **baseline})
    return rows


def subset_users(instructions: list, max_users: int | None, seed: int) -> list:
    """All instructions of a seeded subset of users (all users when max_users is None)."""
    users = sorted({ins.user_idx for ins in instructions})
    if max_users is None or len(users) <= max_users:
        return instructions
    keep = set(np.random.default_rng(seed).choice(users, size=max_users, replace=False).tolist())
    return [ins for ins in instructions if ins.user_idx in keep]


def markdown(cfg: TrainVLMConfig, train: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    columns = ["model", "task", "protocol", "instances", "HR@5", "NDCG@5", "HR@10", "NDCG@10",
               "confidence_top_half_HR@5", "confidence_bottom_half_HR@5", "answer_prob_top_half_HR@5",
               "answer_prob_bottom_half_HR@5", "parse_ok_rate"]
    lines = [f"Dataset {cfg.dataset}, split {cfg.split}, test part. Trained {train['step']} steps "
             f"({train['samples']} samples, final loss {train['loss']:.4f}, ZeRO-{cfg.zero_stage}, "
             f"{cfg.num_workers} workers, curriculum {cfg.instructions.curriculum.mode}, "
             f"templates {cfg.instructions.templates}, tools {'on' if cfg.instructions.use_tools else 'off'}).",
             "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = parse(argv)
    check_inputs(cfg)
    earlier = earlier_run(cfg)
    started = time.perf_counter()

    import ray

    from reasonrec.data.schema import Dataset

    n_items = Dataset.load(cfg.dataset).n_items
    paths, tool_names = prepare_instructions(cfg)
    train_table, eh = training_examples(cfg, paths["train"])
    plan = TrainPlan.build(train_table.num_rows, cfg.num_workers, cfg.batch_size, cfg.grad_accum, cfg.max_steps,
                           cfg.epochs, cfg.warmup_ratio, cfg.checkpoint_every, cfg.seed,
                           cfg.instructions.curriculum.model_dump_json())
    record_run(cfg, plan, earlier)
    base = prepare_base(cfg, train_table, n_items, tool_names)
    sequence = prepare_sequence(cfg, plan, train_table, eh)
    print(f"[setup] {'resuming' if earlier else 'new run'}: {train_table.num_rows} train instructions, "
          f"{plan.total_steps} steps x {plan.global_batch} = {plan.total_samples} samples", flush=True)

    from actors.cluster import init_ray

    init_ray(cfg.ray_address)
    on_gpu = cfg.use_gpu if cfg.use_gpu != "auto" else ray.cluster_resources().get("GPU", 0) >= cfg.num_workers
    try:
        resolve_precision(cfg.precision, on_gpu)
    except ValueError as err:
        raise SystemExit(f"config error: {err}") from None
    train_started = time.perf_counter()
    result = run(cfg, plan, sequence, base, n_items, tool_names, on_gpu)
    train_seconds = time.perf_counter() - train_started
    if result.checkpoint is None or not result.metrics:
        raise SystemExit(f"training finished without a checkpoint in {cfg.out}/checkpoints")
    train = dict(result.metrics)
    if train["step"] != plan.total_steps:
        raise SystemExit(f"last checkpoint is at step {train['step']}, the plan has {plan.total_steps}")

    model_uri = save_model(cfg, result.checkpoint, base, n_items, tool_names, train)
    rows = evaluate(cfg, model_uri, paths["test"], tool_names)
    summary = {"config": cfg.model_dump(mode="json"),
               "plan": {**plan.model_dump(), "total_samples": plan.total_samples},
               "train": {**train, "fit_seconds": round(train_seconds, 1)}, "model": model_uri, "rows": rows,
               "wall_seconds": round(time.perf_counter() - started, 1)}
    fs, out = open_fs(cfg.out)
    with fs.open(join(out, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    table = markdown(cfg, train, rows)
    with fs.open(join(out, "metrics.md"), "w") as f:
        f.write(table)
    print(table)
    return summary


if __name__ == "__main__":
    main()

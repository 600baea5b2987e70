"""The Ray side of `jobs/train_vlm.py`: a Ray Train TorchTrainer whose workers each run one DeepSpeed rank over
the library (`reasonrec.vlm`: engine, encoding, loss), stream their curriculum shard with Ray Data, and report
checkpoints to Ray Train.

    driver: fit() ─▶ TorchTrainer(num_workers) ─▶ train_loop_per_worker × ranks (gloo on CPU, nccl on GPU)
      rank r: read rank_<r>.parquet in order ─▶ encode ─▶ engine.backward/step
              every checkpoint_every steps: engine.save_checkpoint + ray.train.report ─▶ <out>/checkpoints/step_N

A rerun with the same out (or Ray's own retry, max_failures) resumes: DeepSpeed restores weights, optimizer and
LR schedule from Ray's latest checkpoint, and each worker skips the rows it had already consumed.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from actors.cluster import gpus_for
from reasonrec.io import open_fs
from reasonrec.vlm.schedule import TrainPlan
from reasonrec.vlm.train_config import TrainVLMConfig

# Test-only hook: "STEP:DIR" makes every worker, right after the checkpoint of step STEP is registered, write
# DIR/rank<r>.pid and wait, so a test can kill a training process at a known point.
HOLD_ENV = "REASONREC_TRAIN_HOLD"


def trains_on_gpu(cfg: TrainVLMConfig) -> bool:
    """use_gpu, or with 'auto' whether the cluster has a GPU for every worker."""
    return cfg.use_gpu if cfg.use_gpu != "auto" else gpus_for("auto", cfg.num_workers) >= 1.0


def fit(cfg: TrainVLMConfig, plan: TrainPlan, sequence: list[str], base: str, n_items: int,
        tool_names: list[str], on_gpu: bool, validation: str | None = None):
    """A TorchTrainer of cfg.num_workers DeepSpeed ranks, each reading its own curriculum shard of `sequence`
    in order; checkpoints under <out>/checkpoints (a rerun resumes there). `validation`: the validation
    instructions' Parquet, scored every cfg.validation.every steps. Returns Ray Train's Result."""
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
                           "validation": validation, "hold": os.environ.get(HOLD_ENV)},
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


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One DeepSpeed rank: load the base, resume if a checkpoint exists, read its shard in order, train."""
    import ray.train
    import torch
    import torch.distributed as dist

    from reasonrec.data.schema import Dataset
    from reasonrec.vlm.deepspeed_config import build_engine
    from reasonrec.vlm.encode import EncodeStats, Pieces, encode_for_training
    from reasonrec.vlm.images import ItemImages
    from reasonrec.vlm.distill import DistillBatch, Teacher
    from reasonrec.vlm.loss import supervised_loss
    from reasonrec.vlm.records import from_row
    from reasonrec.vlm.scoring import item_token_ids
    from reasonrec.vlm.validation import ValidationTrack

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

    engine, processor = build_engine(cfg, plan, config["base"], config["n_items"], config["tool_names"], on_gpu)
    dtype = next(engine.module.parameters()).dtype
    state = restore(engine)
    resumed_from = state["step"]
    if rank == 0:
        print(f"[train] {'resumed from' if resumed_from else 'starting at'} step {resumed_from} of "
              f"{plan.total_steps} ({plan.total_samples} samples, global batch {plan.global_batch}); "
              f"engine ready in {time.perf_counter() - worker_started:.1f} s", flush=True)

    images = ItemImages(Dataset.load(cfg.dataset), cfg.model.image_size)
    pieces, stats = Pieces(processor), EncodeStats()
    item_ids = item_token_ids(processor.tokenizer)
    history_labels = cfg.history_loss_weight > 0
    teacher = Teacher(cfg.distill.tool, config["n_items"], device) if cfg.distill.tool else None
    if teacher is not None and rank == 0:
        print(f"[train] distilling {teacher.tool.name} ({cfg.distill.tool}) into the item tokens: weight "
              f"{cfg.distill.weight}, T {cfg.distill.temperature}, answer {cfg.distill.answer}", flush=True)
    validator = Validator(cfg, config.get("validation"), engine, processor, images, config["tool_names"], device)
    track = ValidationTrack.from_dict(state.get("validation"), cfg.validation.metric)
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
                                        stats, pieces, history_labels=history_labels,
                                        history_items=teacher is not None)
            distill = None if teacher is None else DistillBatch.build(
                teacher, batch, cfg.distill.weight, cfg.distill.temperature, cfg.distill.answer)
            batch = {k: v.to(device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in batch.items()}
            # Logits only where labels are (same loss, far cheaper), plus the history's next-item loss and the
            # teacher's distribution where one is set.
            loss = supervised_loss(engine, batch, item_ids, cfg.history_loss_weight, cfg.answer_loss_weight,
                                   distill)
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
        stop = False
        if validator.due(done, plan.total_steps):
            values = validator.run()
            if track.add(done, values) and cfg.validation.keep_best and rank == 0:
                validator.save_best(done)
            state["validation"] = track.as_dict()
            stop = track.patience_spent(cfg.validation.patience)
            if rank == 0:
                print(f"[valid] step {done}: " + " ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "n")
                      + f" (n {values['n']}; best {track.metric} {track.best_value:.4f} at step {track.best_step})"
                      + (" - patience spent, stopping" if stop else ""), flush=True)
            checkpoint_due = checkpoint_due or stop
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
                       "peak_rss_mb_per_worker": round(peak_rss, 1), "encode": stats.as_dict(),
                       "validation": state.get("validation"), "stopped_early": stop}
            save_checkpoint(engine, state, metrics, done)
            hold_if_asked(config.get("hold"), done, rank)
        if stop:
            break


class Validator:
    """VLM-only passes on the validation lists inside the training loop: each rank scores its share of the
    users with its own full copy of the weights (ZeRO <= 2), the sums are all-reduced; rank 0 keeps the best
    step's weights under <out>/best (reasonrec.vlm.validation says why)."""

    def __init__(self, cfg: TrainVLMConfig, path: str | None, engine, processor, images, tool_names, device):
        import ray.train

        from reasonrec.vlm.instructions import read_instructions
        from reasonrec.vlm.scoring import VLMScorer

        self.cfg, self.engine = cfg, engine
        self.every = cfg.validation.every if path else None
        context = ray.train.get_context()
        rank, world = context.get_world_rank(), context.get_world_size()
        self.rows = read_instructions(path)[rank::world] if self.every else []
        self.scorer = VLMScorer(engine.module, processor, images, tool_names, batch_size=cfg.eval.batch_size,
                                device=device, max_length=cfg.model.max_length)
        self.device = device

    def due(self, step: int, total_steps: int) -> bool:
        return self.every is not None and (step % self.every == 0 or step == total_steps)

    def run(self) -> dict[str, float]:
        import torch
        import torch.distributed as dist

        from reasonrec.vlm.validation import COUNT_KEYS, means, validation_counts

        counts = validation_counts(self.scorer, self.rows)
        tensor = torch.tensor([counts[k] for k in COUNT_KEYS], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return means(dict(zip(COUNT_KEYS, tensor.tolist())))

    def save_best(self, step: int) -> None:
        from reasonrec.vlm.export import save_best_weights

        save_best_weights(self.engine.module, self.cfg.out, step)


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

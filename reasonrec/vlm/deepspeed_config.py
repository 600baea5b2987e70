"""The DeepSpeed engine, its config, optimizer and LR schedule, all derived from `TrainVLMConfig`.

Choices that are easy to get silently wrong are made explicit here:
- `gradient_clipping` is always written: DeepSpeed 0.19 defaults it to 1.0, so leaving it out clips anyway.
- The optimizer is torch's AdamW handed to DeepSpeed as a client optimizer, so no fused/CPU Adam op is
  compiled (30-50 s per op on first use); ZeRO >= 1 then needs `zero_allow_untested_optimizer`.
- bf16 only on GPU (fp32 on CPU, where bf16 is ~6x slower); DeepSpeed keeps fp32 master weights either way.
- The schedule is transformers' cosine-with-min-lr after linear warm-up, stepped once per optimizer step by
  the engine, and saved/restored with the DeepSpeed checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from reasonrec.vlm.schedule import TrainPlan
from reasonrec.vlm.train_config import TrainVLMConfig

NEVER_PRINT = 10**9  # DeepSpeed's own periodic stdout lines; the job logs its own


def resolve_precision(precision: str, on_gpu: bool) -> Literal["fp32", "bf16"]:
    """'auto' -> bf16 on GPU, fp32 on CPU; bf16 without a GPU is an error, not a silent slowdown."""
    if precision == "auto":
        return "bf16" if on_gpu else "fp32"
    if precision == "bf16" and not on_gpu:
        raise ValueError("precision bf16 needs GPU workers; on CPU use fp32 (bf16 is ~6x slower on AVX2)")
    return precision  # type: ignore[return-value]


def deepspeed_config(cfg: TrainVLMConfig, on_gpu: bool) -> dict[str, Any]:
    """The JSON-able dict handed to deepspeed.initialize(config=...)."""
    precision = resolve_precision(cfg.precision, on_gpu)
    zero: dict[str, Any] = {"stage": cfg.zero_stage}
    if cfg.zero_stage >= 2:
        zero.update({"contiguous_gradients": True, "overlap_comm": on_gpu})
    if cfg.zero_stage == 3:
        # The final artifact is consolidated from the checkpoint's fp32 partitions, not gathered at save time.
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.batch_size * cfg.grad_accum * cfg.num_workers,
        "gradient_clipping": cfg.gradient_clipping,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": False},
        "steps_per_print": NEVER_PRINT,
        "wall_clock_breakdown": False,
    }


def build_optimizer(model: torch.nn.Module, cfg: TrainVLMConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases and norm weights (1-D tensors)."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainVLMConfig, plan: TrainPlan):
    """Linear warm-up to cfg.lr, then cosine decay to cfg.min_lr at plan.total_steps."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=plan.warmup_steps, num_training_steps=plan.total_steps, min_lr=cfg.min_lr)


def build_engine(cfg: TrainVLMConfig, plan: TrainPlan, base: str, n_items: int, tool_names: list[str],
                 on_gpu: bool):
    """(DeepSpeed engine, processor) over the base model, with AdamW and the warm-up + cosine schedule. Runs in a
    process whose torch.distributed group is already up (a Ray Train worker), so DeepSpeed does not start one."""
    import tempfile

    import deepspeed

    from reasonrec.io import fetch_dir
    from reasonrec.vlm.build import load_vlm

    # DeepSpeed keeps fp32 master weights and casts the module itself when bf16 is on: always load fp32.
    model_cfg = cfg.model.model_copy(update={"dtype": "float32"})
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = load_vlm(fetch_dir(base, tmp), model_cfg, n_items=n_items, tool_names=tool_names)
    optimizer = build_optimizer(model, cfg)
    if not on_gpu and not cfg.cpu_shm_allreduce:
        skip_cpu_shm_op()
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                           lr_scheduler=build_scheduler(optimizer, cfg, plan),
                                           config=deepspeed_config(cfg, on_gpu), dist_init_required=False)
    return engine, processor


def skip_cpu_shm_op() -> None:
    """DeepSpeed's CPU backend builds a shared-memory all-reduce op (C++, compiled on first use: ~70 s on 2 cores,
    cached in ~/.cache/torch_extensions) when its communication backend starts. Marking the op incompatible makes
    DeepSpeed use torch.distributed's (gloo) all-reduce instead: same results, no compiler run. Call before the
    process's first deepspeed.initialize."""
    import deepspeed.ops
    from deepspeed.ops.op_builder.cpu.comm import ShareMemCommBuilder

    deepspeed.ops.__compatible_ops__[ShareMemCommBuilder.NAME] = False


def consolidated_state_dict(checkpoint_dir: str | Path, tag: str | None = None) -> dict[str, torch.Tensor]:
    """The whole model's fp32 weights from a DeepSpeed checkpoint folder, whatever the ZeRO stage.

    ZeRO >= 1 (and bf16) keep the fp32 master weights as per-rank optimizer partitions: DeepSpeed's own
    `get_fp32_state_dict_from_zero_checkpoint` stitches them back. Stage 0 in fp32 stores the full module.
    """
    folder = Path(checkpoint_dir)
    tag = tag or (folder / "latest").read_text().strip()
    if any((folder / tag).glob("*zero_pp_rank_*_optim_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return dict(get_fp32_state_dict_from_zero_checkpoint(str(folder), tag=tag))
    # A DeepSpeed checkpoint is a pickle of our own run (module weights + optimizer + client state).
    states = torch.load(folder / tag / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
    return {name: tensor.float() for name, tensor in states["module"].items()}

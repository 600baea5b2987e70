"""The typed config of `jobs/train_vlm.py`; the train_vlm section of configs/<dataset>.yaml is an instance.

The ablations of the paper are switches of the nested sections, not copies of them here (one source of
truth): uniform order = `instructions.curriculum.mode: uniform`, one template = `instructions.templates:
single`, no tool outputs in prompts = `instructions.use_tools: false`, no tool labels at all = `tools_dir: null`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reasonrec.config import StrictModel
from reasonrec.vlm.instruction_config import InstructionConfig
from reasonrec.vlm.model_config import VLMModelConfig
from reasonrec.vlm.records import Task


class EvalConfig(StrictModel):
    """What the job scores after training: test instructions on their fixed candidate lists."""

    tasks: list[Literal["sequential", "direct"]] = Field(default_factory=lambda: ["sequential"], description=(
        "Ranking tasks evaluated on the test part (sequential: the fixed 1+`negatives` lists)."))
    max_users: int | None = Field(None, ge=1, description=(
        "Evaluate a seeded subset of this many test users (null = every test user); keeps CPU runs short."))
    batch_size: int = Field(16, ge=1, description="Instructions per scoring forward pass.")


class ValidationConfig(StrictModel):
    """VLM-only passes on the validation lists during training, and which weights the run keeps."""

    every: int | None = Field(None, ge=1, description=(
        "Optimizer steps between validation passes (one more at the end); null = no validation, keep the "
        "last weights."))
    max_users: int | None = Field(300, ge=1, description=(
        "Seeded subset of validation users scored per pass (null = every validation user)."))
    metric: Literal["HR@5", "NDCG@5"] = Field("NDCG@5", description=(
        "What picks the best step (the tools early-stop on validation NDCG@5 too)."))
    keep_best: bool = Field(True, description=(
        "Export the weights of the best validation step as <out>/model instead of the last step's."))
    patience: int | None = Field(None, ge=1, description=(
        "Stop training after this many passes without a new best (null = run every planned step)."))
    seed: int = Field(0, description="Seeds the validation user subset.")


class DistillConfig(StrictModel):
    """A trained sequential tool as a teacher (reasonrec/vlm/distill.py): its next-item distribution over the
    whole catalogue at every history position of the prompt and at the answer of a sequential example."""

    tool: str | None = Field(None, description=(
        "Teacher: a trained sequential tool folder (jobs/train_tools.py output, e.g. <tools_dir>/sasrec+v); "
        "null = no distillation."))
    weight: float = Field(1.0, ge=0, description=(
        "Weight of the distillation term (KL from the teacher to the VLM's item distribution, times T^2)."))
    temperature: float = Field(1.0, gt=0, description=(
        "Softmax temperature T of both distributions: above 1 passes more of the teacher's ranking below its top."))
    answer: bool = Field(True, description=(
        "Also distil at the answer of sequential examples (the position the router reads), not only the history."))


class TrainVLMConfig(StrictModel):
    config_section = "train_vlm"   # its section in a sectioned file (configs/<dataset>.yaml)
    dataset: str = Field("artifacts/datasets/synthetic", description="Prepared dataset folder (local or s3://).")
    split: str = Field("loo", description="Ranking split the instructions are built from (train/valid/test parts).")
    negatives: int = Field(99, ge=1, description="Fixed 1+N lists the sequential test instructions are scored on.")
    tools_dir: str | None = Field("artifacts/tools/synthetic", description=(
        "Trained tool checkpoints (jobs/train_tools.py output) that label instructions (usable tools, teacher "
        "confidence, tool outputs in prompts); null = no tools at all (the 'no tools' ablation)."))
    tools: list[str] | None = Field(None, description=(
        "Tool folders under tools_dir to use, e.g. [sasrec, bpr_mf]; null = every ranking and CTR tool there."))
    out: str = Field("artifacts/vlm/synthetic", description=(
        "Run folder (local or s3://): instructions/, base/, sequence/, checkpoints/, model/, metrics.{json,md}. "
        "Rerunning with the same out resumes from its last checkpoint."))
    instructions: InstructionConfig = Field(default_factory=InstructionConfig, description=(
        "How instructions are built and ordered (curriculum / uniform, templates, tool use)."))
    model: VLMModelConfig = Field(default_factory=VLMModelConfig, description=(
        "Which VLM: the tiny preset (built under <out>/base) or a pretrained checkpoint, LoRA, max_length."))
    tasks_trained: list[Task] | None = Field(None, description=(
        "Train only on instructions of these tasks (null = every task in instructions.tasks)."))

    num_workers: int = Field(2, ge=1, description=(
        "Ray Train workers (data-parallel ranks, one DeepSpeed process each)."))
    cpus_per_worker: float = Field(1.0, gt=0, description=(
        "CPUs each worker reserves (and torch threads it uses, at least 1). Leave a CPU free for Ray Data "
        "ingest: on a 2-CPU machine use 0.5 with 2 workers, or ingest never gets scheduled."))
    use_gpu: bool | Literal["auto"] = Field("auto", description=(
        "One GPU per worker (nccl); 'auto' = when the Ray cluster has GPUs. CPU workers use gloo."))
    zero_stage: int = Field(2, ge=0, le=3, description="DeepSpeed ZeRO stage (0 = plain data parallel).")
    cpu_shm_allreduce: bool = Field(True, description=(
        "On CPU, DeepSpeed's shared-memory all-reduce op (compiled on first use, ~70 s, then cached in "
        "~/.cache/torch_extensions); false = torch.distributed's gloo all-reduce, no compile (the quick overlay, "
        "the tests)."))
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description=(
        "'auto' = bf16 on GPU, fp32 on CPU; bf16 on CPU is refused (about 6x slower on AVX2)."))
    lr: float = Field(1e-3, gt=0, description=(
        "Peak learning rate (after warm-up). The paper uses 2e-5 for a pretrained LLaVA; a tiny model trained "
        "from scratch needs about 1e-3."))
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of the optimizer steps spent in linear warm-up.")
    min_lr: float = Field(1e-7, ge=0, description="Learning rate the cosine decay ends at (the paper's final LR).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (not applied to biases and norms).")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    gradient_clipping: float = Field(1.0, ge=0, description=(
        "Global gradient-norm clip, always written to the DeepSpeed config (DeepSpeed silently defaults to "
        "1.0); 0 = no clipping."))
    batch_size: int = Field(8, ge=1, description="Examples per micro-batch per worker.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps to train; overrides epochs when set.")
    epochs: float | None = Field(1.0, gt=0, description=(
        "Passes over the training instructions (the curriculum may repeat some and skip others), used when "
        "max_steps is null."))
    checkpoint_every: int = Field(100, ge=1, description="Optimizer steps between checkpoints (one more at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="Most recent checkpoints kept in <out>/checkpoints.")
    max_failures: int = Field(0, ge=-1, description=(
        "Worker failures Ray Train recovers from within one run (from the last checkpoint); -1 = unlimited. "
        "Whatever this is, rerunning the job with the same out resumes."))
    log_every: int = Field(10, ge=1, description="Optimizer steps between loss log lines.")
    history_loss_weight: float = Field(0.0, ge=0, description=(
        "Weight of the next-item loss at every history item of the prompt (over the item tokens), added to "
        "the assistant-turn loss; 0 = only the assistant turn is supervised."))
    answer_loss_weight: float = Field(0.0, ge=0, description=(
        "Weight of an extra cross-entropy, over the item tokens, of the answer's item (the reading that ranks; "
        "in the assistant-turn mean it is one of ~20 tokens); 0 = none."))
    distill: DistillConfig = Field(default_factory=DistillConfig, description=(
        "A sequential tool's next-item distribution as a soft target for the VLM's item tokens (off by default)."))
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description=(
        "Validation passes during training and best-step selection."))
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation after training.")
    seed: int = Field(0, description="Seeds the curriculum order and torch (model init dropout, sampling).")
    ray_address: str | None = Field(None, description=(
        "Ray cluster to join; null = the cluster of `ray job submit`, or a new local one."))

    @model_validator(mode="after")
    def _consistent(self) -> "TrainVLMConfig":
        if self.max_steps is None and self.epochs is None:
            raise ValueError("set max_steps or epochs")
        if self.precision == "bf16" and self.use_gpu is False:
            raise ValueError("precision bf16 needs GPUs (use_gpu false): bf16 on CPU is ~6x slower than fp32")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} is above lr {self.lr}")
        if self.tasks_trained is not None and not set(self.tasks_trained) <= set(self.instructions.tasks):
            raise ValueError(f"tasks_trained {self.tasks_trained} are not all in instructions.tasks "
                             f"{self.instructions.tasks}")
        if not set(self.eval.tasks) <= set(self.instructions.tasks):
            raise ValueError(f"eval.tasks {self.eval.tasks} are not all in instructions.tasks "
                             f"{self.instructions.tasks}")
        if self.validation.every is not None and self.zero_stage == 3:
            raise ValueError("validation.every needs zero_stage <= 2: each rank scores with its full copy of "
                             "the weights, which ZeRO-3 partitions")
        if self.model.preset == "pretrained" and self.model.checkpoint is None:
            raise ValueError("model.preset 'pretrained' needs model.checkpoint (an HF id or a folder)")
        return self

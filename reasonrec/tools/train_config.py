"""The typed config of `jobs/train_tools.py`; the train_tools section of configs/<dataset>.yaml is an instance."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from reasonrec.config import StrictModel


class TrainToolsConfig(StrictModel):
    config_section = "train_tools"   # its section in a sectioned file (configs/<dataset>.yaml)
    dataset: str = Field("artifacts/datasets/synthetic", description="Prepared dataset folder (local or s3://).")
    tools: list[str] = Field(default_factory=lambda: ["bpr_mf"], description=(
        "Tools to train, by registry name; a '+v' suffix trains the content variant (use_content=True)."))
    out: str = Field("artifacts/tools/synthetic", description=(
        "Where checkpoints (<out>/<tool>/model.safetensors + tool.json) and metrics.{json,md} go (local or s3://)."))
    split: str = Field("loo", description="Ranking split the tools train and are evaluated on.")
    negatives: int = Field(99, ge=1, description="Sampled protocol of the fixed lists: 99 -> 1+99.")
    ctr_split: str = Field("random", description="Split whose CTR rows train and evaluate the CTR tools.")
    ctr_ratio: int = Field(4, ge=1, description="CTR negatives per positive: 4 -> the 1:4 rows.")
    tool_configs: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        "Per-tool hyper-parameter overrides, {tool name: {key: value}}; keys are checked against the tool's config."))
    epochs: int | None = Field(None, ge=1, description="If set, overrides every tool's epoch budget (quick runs).")
    evaluate: Literal["full", "sampled", "none"] = Field("full", description=(
        "Test evaluation after training: full = the 1+N lists and full-catalogue ranking (the latter dominates the "
        "job's time at 100k+ users); sampled = the 1+N lists only (no "
        "most-popular row, whose evaluation ranks the catalogue); none = checkpoints and training stats only "
        "(benchmarks that measure cost, not quality). CTR tools report AUC/LogLoss unless none."))
    seed: int = Field(0, description="Seed every tool trains with.")
    cpus_per_tool: float = Field(1.0, gt=0, description="CPUs each training task reserves (and torch threads it uses).")
    gpus_per_tool: float | Literal["auto"] = Field("auto", description=(
        "GPUs each training task reserves; a task that gets one trains and evaluates on cuda. 'auto' = none on a "
        "cluster without GPUs, else the cluster's GPUs shared by the tools (GPUs / tools, at most 1), so every "
        "tool trains at once; 0 keeps every tool on the CPU."))
    ray_address: str | None = Field(None, description=(
        "Ray cluster to join; null = the cluster of `ray job submit`, or a new local one."))

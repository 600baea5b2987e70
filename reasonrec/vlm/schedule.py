"""Which training example every worker reads at every step: the arithmetic behind ordered, resumable sharding.

The curriculum fixes one global sequence of example indices (`curriculum_order`). One optimizer step eats
`global_batch = batch_size * grad_accum * num_workers` consecutive positions of it: micro-batch `a` of step
`s` on rank `r` is positions

    s * global_batch + a * batch_size * num_workers + r * batch_size + [0, batch_size)

so rank r's shard is every position whose `(position // batch_size) % num_workers == r`, in order, and each
rank reads exactly `batch_size * grad_accum` rows per step. Resuming at step s therefore means skipping the
first `s * batch_size * grad_accum` rows of one's own shard: no state beyond the step number is needed, and
the whole run reads every position of the sequence exactly once, crash or no crash.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class TrainPlan(BaseModel):
    """The fixed shape of one training run; written to <out>/plan.json so a rerun can check it still holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_examples: int = Field(ge=1, description="Training instructions the order indexes into.")
    num_workers: int = Field(ge=1, description="Data-parallel ranks.")
    batch_size: int = Field(ge=1, description="Examples per micro-batch per rank.")
    grad_accum: int = Field(ge=1, description="Micro-batches per optimizer step.")
    total_steps: int = Field(ge=1, description="Optimizer steps of the whole run.")
    warmup_steps: int = Field(ge=0, description="Linear warm-up steps of the LR schedule.")
    checkpoint_every: int = Field(ge=1, description="Optimizer steps between checkpoints (and one at the end).")
    seed: int = Field(description="Seed of the curriculum order.")
    curriculum: str = Field(description="The InstructionConfig.curriculum the order was drawn with, as JSON.")

    @classmethod
    def build(cls, n_examples: int, num_workers: int, batch_size: int, grad_accum: int, max_steps: int | None,
              epochs: float | None, warmup_ratio: float, checkpoint_every: int, seed: int,
              curriculum: str) -> "TrainPlan":
        """max_steps wins; otherwise enough steps for `epochs` passes over the examples (rounded up)."""
        global_batch = batch_size * grad_accum * num_workers
        if max_steps is None:
            if epochs is None:
                raise ValueError("set max_steps or epochs")
            max_steps = max(1, math.ceil(epochs * n_examples / global_batch))
        return cls(n_examples=n_examples, num_workers=num_workers, batch_size=batch_size, grad_accum=grad_accum,
                   total_steps=max_steps, warmup_steps=int(round(warmup_ratio * max_steps)),
                   checkpoint_every=checkpoint_every, seed=seed, curriculum=curriculum)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.num_workers

    @property
    def total_samples(self) -> int:
        return self.total_steps * self.global_batch

    @property
    def rows_per_rank_step(self) -> int:
        """Rows one rank reads per optimizer step (and skips per step already done when resuming)."""
        return self.batch_size * self.grad_accum

    def rank_positions(self, rank: int) -> np.ndarray:
        """Positions of the global sequence that `rank` reads, in the order it reads them."""
        if not 0 <= rank < self.num_workers:
            raise ValueError(f"rank {rank} outside [0, {self.num_workers})")
        positions = np.arange(self.total_samples, dtype=np.int64)
        return positions[(positions // self.batch_size) % self.num_workers == rank]

    def is_checkpoint_step(self, step: int) -> bool:
        """After optimizer step `step` (1-based count of steps done), is a checkpoint due?"""
        return step % self.checkpoint_every == 0 or step == self.total_steps

    def mismatch(self, other: "TrainPlan") -> list[str]:
        """Fields that differ: a resumed run must read the same sequence the checkpoint was trained on."""
        return [f"{name}: {getattr(other, name)!r} on disk, {getattr(self, name)!r} now"
                for name in type(self).model_fields if getattr(self, name) != getattr(other, name)]

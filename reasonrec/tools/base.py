"""The one interface every tool in the zoo implements, so the trainer, the evaluator, the router and the
nightly job never special-case a model (RecBole-style).

A tool is a small torch module plus four model-specific pieces: how to build it, which training batches it
wants, its loss, and how it scores candidate items for a batch of queries. Everything else (fitting with
early stopping, batched scoring, full-catalogue top-k, confidence, safetensors checkpoints) is shared here.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse
import torch
from pydantic import Field
from safetensors.torch import load_file, save_file

from reasonrec.config import StrictModel
from reasonrec.tools.data import PAD, Queries, ToolData

TaskKind = Literal["sequential", "direct", "ctr"]
CHECKPOINT_WEIGHTS = "model.safetensors"
CHECKPOINT_META = "tool.json"


class ToolConfig(StrictModel):
    """Hyper-parameters every tool shares; a tool may subclass this to add its own."""

    embedding_dim: int = Field(64, ge=1, description="Width of item/user embeddings.")
    max_len: int = Field(50, ge=1, description="Most recent items of a history a tool looks at.")
    epochs: int = Field(30, ge=1, description="Upper bound on training epochs (early stopping usually ends sooner).")
    batch_size: int = Field(256, ge=1, description="Training examples per optimiser step.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout inside the model, where it has any.")
    patience: int = Field(3, ge=1, description="Epochs without a better validation metric before stopping.")
    max_train_seconds: float = Field(600.0, gt=0, description=(
        "Wall-clock budget for one fit's training steps, checked after every step (an epoch may end early); the "
        "best epoch so far, the partial one included, is kept."))
    seed: int = Field(0, description="Seeds torch and numpy for initialisation and batch order.")
    use_content: bool = Field(False, description=(
        "'+V' variant: complement item id embeddings with the dataset's item content features."))
    score_batch_size: int = Field(1024, ge=1, description="Queries per scoring batch.")


class Tool(ABC):
    """Base class of every tool. Subclasses set `name`, `task`, `config_class` and the four abstract methods."""

    name: ClassVar[str]
    task: ClassVar[TaskKind]
    config_class: ClassVar[type[ToolConfig]] = ToolConfig

    def __init__(self, cfg: ToolConfig, n_users: int, n_items: int, item_features: np.ndarray | None = None):
        if cfg.use_content and item_features is None:
            raise ValueError(f"{self.name}: use_content=True needs item_features")
        self.cfg = cfg
        self.n_users, self.n_items = n_users, n_items
        torch.manual_seed(cfg.seed)
        features = None
        if cfg.use_content:
            features = torch.from_numpy(np.array(item_features, dtype=np.float32, copy=True))
        self.module = self.build(features)
        self.device = torch.device("cpu")
        self.fit_history: list[dict[str, Any]] = []

    def to(self, device: str | torch.device) -> "Tool":
        """Move the module to `device` ('cpu', 'cuda', 'cuda:1'); training batches, queries and candidates
        follow it there, scores come back as CPU numpy either way."""
        self.device = torch.device(device)
        self.module.to(self.device)
        return self

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        """An index array (user_idx, item_idx) as an int64 tensor on the tool's device."""
        return torch.as_tensor(np.asarray(array, dtype=np.int64), device=self.device)

    # -------------------------------------------------------------- what each model provides

    @abstractmethod
    def build(self, item_features: torch.Tensor | None) -> torch.nn.Module:
        """The model; keep item_features as a (non-trainable) buffer if the model uses them."""

    @abstractmethod
    def training_batches(self, data: ToolData, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch of training batches, drawn with `rng` (so an epoch is reproducible)."""

    @abstractmethod
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss of one batch (the module is in train mode)."""

    @abstractmethod
    def score_candidates(self, queries: Queries, candidates: torch.Tensor) -> torch.Tensor:
        """Scores [n, c] (higher = better) of candidate item indices [n, c] for n queries (eval mode)."""

    def score_all_items(self, queries: Queries) -> torch.Tensor:
        """Scores [n, n_items] for the whole catalogue; models with item embeddings override this with a matmul."""
        every_item = torch.arange(self.n_items, device=self.device).expand(len(queries), -1)
        return self.score_candidates(queries, every_item)

    # -------------------------------------------------------------- shared behaviour

    @torch.no_grad()
    def score(self, queries: Queries, candidates: np.ndarray) -> np.ndarray:
        """Scores [n, c] as float32 numpy, in batches, in eval mode."""
        self.module.eval()
        candidates = np.asarray(candidates, dtype=np.int64)
        if candidates.ndim != 2 or candidates.shape[0] != len(queries):
            raise ValueError(f"candidates must be [n, c] with n={len(queries)}, got {candidates.shape}")
        out = np.empty(candidates.shape, dtype=np.float32)
        step = self.cfg.score_batch_size
        for start in range(0, len(queries), step):
            rows = slice(start, start + step)
            out[rows] = self.score_candidates(queries.take(rows), self.tensor(candidates[rows])).float().cpu().numpy()
        return out

    @torch.no_grad()
    def score_all(self, queries: Queries) -> np.ndarray:
        """Scores [n, n_items] as float32 numpy (callers batch the queries to bound memory)."""
        self.module.eval()
        return self.score_all_items(queries).float().cpu().numpy()

    @torch.no_grad()
    def topk(self, queries: Queries, k: int, exclude: scipy.sparse.csr_array | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """(items [n, k], scores [n, k]) best first over the whole catalogue, skipping items in `exclude`
        (bool [n_users, n_items], rows by user_idx: usually the user's history)."""
        self.module.eval()
        items = np.empty((len(queries), k), dtype=np.int64)
        scores = np.empty((len(queries), k), dtype=np.float32)
        step = self.cfg.score_batch_size
        for start in range(0, len(queries), step):
            batch = queries.take(slice(start, start + step))
            all_scores = self.score_all_items(batch).float()
            if exclude is not None:
                mask = torch.from_numpy(exclude[batch.user_idx].toarray().astype(bool)).to(self.device)
                all_scores = all_scores.masked_fill(mask, float("-inf"))
            top = torch.topk(all_scores, k, dim=1)
            items[start:start + len(batch)] = top.indices.cpu().numpy()
            scores[start:start + len(batch)] = top.values.cpu().numpy()
        return items, scores

    @staticmethod
    def confidence(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Per-query confidence in [0, 1]: the softmax probability margin between the best and second-best
        candidate. The router reads it: a tool whose top two candidates are nearly tied is unsure."""
        scores = np.asarray(scores, dtype=np.float64) / temperature
        if scores.shape[1] < 2:
            return np.ones(scores.shape[0])
        shifted = scores - scores.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        top2 = -np.partition(-probs, 1, axis=1)[:, :2]
        return top2[:, 0] - top2[:, 1]

    def fit(self, data: ToolData) -> list[dict[str, Any]]:
        """Train with early stopping on the validation metric; see reasonrec.tools.training."""
        from reasonrec.tools.training import fit_tool

        self.fit_history = fit_tool(self, data)
        return self.fit_history

    # -------------------------------------------------------------- checkpoints (no pickle)

    def save(self, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """safetensors weights + JSON config; loading needs no unpickling of arbitrary objects."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        save_file(state, str(folder / CHECKPOINT_WEIGHTS))
        meta = {"tool": self.name, "task": self.task, "config": self.cfg.model_dump(mode="json"),
                "n_users": self.n_users, "n_items": self.n_items, "fit_history": self.fit_history,
                **(extra or {})}
        (folder / CHECKPOINT_META).write_text(json.dumps(meta, indent=2))
        return folder


def history_tensor(queries: Queries, n_items: int, device: torch.device | None = None) -> torch.Tensor:
    """queries.history as a LongTensor (on `device`) with PAD mapped to `n_items` (the padding row of an
    embedding of size n_items + 1)."""
    history = torch.as_tensor(np.asarray(queries.history, dtype=np.int64), device=device)
    return history.masked_fill(history == PAD, n_items)


def load_tool(folder: str | Path, item_features: np.ndarray | None = None) -> Tool:
    """Rebuild a tool from `save` output: registry class + JSON config, then the safetensors weights."""
    from reasonrec.tools import TOOLS

    folder = Path(folder)
    meta = json.loads((folder / CHECKPOINT_META).read_text())
    if meta["tool"] not in TOOLS:
        raise ValueError(f"{folder}: unknown tool {meta['tool']!r}; known: {sorted(TOOLS)}")
    tool_class = TOOLS[meta["tool"]]
    cfg = tool_class.config_class.model_validate(meta["config"])
    # Content features are a buffer in the weights; a zero placeholder of the right shape lets build() run.
    if cfg.use_content and item_features is None:
        shapes = _safetensor_shapes(folder / CHECKPOINT_WEIGHTS)
        feature_shape = next((shape for key, shape in shapes.items() if key.endswith("item_features")), None)
        if feature_shape is None:
            raise ValueError(f"{folder}: use_content=True but no item_features buffer in the weights")
        item_features = np.zeros(feature_shape, dtype=np.float32)
    tool = tool_class(cfg, meta["n_users"], meta["n_items"], item_features)
    tool.module.load_state_dict(load_file(str(folder / CHECKPOINT_WEIGHTS)))
    tool.fit_history = meta.get("fit_history", [])
    return tool


def _safetensor_shapes(path: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {key: list(f.get_slice(key).get_shape()) for key in f.keys()}

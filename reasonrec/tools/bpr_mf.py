"""BPR-MF (Rendle et al., UAI 2009): user and item embeddings, a dot product, the pairwise BPR loss.

The reference implementation of the Tool interface: collaborative ('direct') recommendation from who
interacted with what, ignoring order. Its (user, positive, uniform negative) batches are shared with the
other BPR-trained tools (BPR-MLP, LightGCN).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from reasonrec.tools.base import Tool, ToolConfig
from reasonrec.tools.content import ItemEncoder
from reasonrec.tools.data import Queries, ToolData


class BPRMFConfig(ToolConfig):
    """Defaults measured on the Beauty and MovieLens slices and the synthetic set (see tests/tools/test_bpr_mf.py).

    Strong decoupled weight decay is what makes MF work on sparse catalogues: it shrinks the vectors of items
    that (almost) never get a gradient, so a rare item cannot outscore a popular one by a random initial
    direction.
    """

    lr: float = Field(3e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.5, ge=0, description="AdamW (decoupled) weight decay on every embedding row.")
    epochs: int = Field(60, ge=1, description="Upper bound on training epochs (early stopping usually ends sooner).")
    patience: int = Field(5, ge=1, description="Epochs without a better validation metric before stopping.")


class BPRMFModule(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, item_features: torch.Tensor | None):
        super().__init__()
        self.users = torch.nn.Embedding(n_users, dim)
        torch.nn.init.normal_(self.users.weight, std=0.05)
        self.items = ItemEncoder(n_items, dim, item_features)


class BPRMF(Tool):
    name = "bpr_mf"
    task = "direct"
    config_class = BPRMFConfig

    def build(self, item_features):
        return BPRMFModule(self.n_users, self.n_items, self.cfg.embedding_dim, item_features)

    def training_batches(self, data: ToolData, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        return bpr_batches(data, rng, self.cfg.batch_size)

    def loss(self, batch):
        m = self.module
        user = m.users(batch["user"])
        pos = (user * m.items(batch["pos"])).sum(-1)
        neg = (user * m.items(batch["neg"])).sum(-1)
        return -F.logsigmoid(pos - neg).mean()

    def score_candidates(self, queries: Queries, candidates: torch.Tensor) -> torch.Tensor:
        user = self.module.users(self.tensor(queries.user_idx))
        return torch.einsum("nd,ncd->nc", user, self.module.items(candidates))

    def score_all_items(self, queries: Queries) -> torch.Tensor:
        return self.module.users(self.tensor(queries.user_idx)) @ self.module.items.all_items().T


def train_pairs(data: ToolData) -> tuple[np.ndarray, np.ndarray]:
    """(user_idx, item_idx) int64 arrays of every training interaction."""
    train = data.split.train
    return train["user_idx"].to_numpy().astype(np.int64), train["item_idx"].to_numpy().astype(np.int64)


def bpr_batches(data: ToolData, rng: np.random.Generator, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """One epoch of BPR triples: every training interaction once, in random order, with one negative item
    drawn uniformly from the catalogue (a rare draw of one of the user's own items is BPR-standard)."""
    users, positives = train_pairs(data)
    order = rng.permutation(len(users))
    negatives = rng.integers(0, data.n_items, size=len(users))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        yield {"user": torch.from_numpy(users[rows]), "pos": torch.from_numpy(positives[rows]),
               "neg": torch.from_numpy(negatives[rows])}

"""LightGCN (He et al., SIGIR 2020): collaborative filtering by linear propagation of id embeddings over the
user-item graph, trained with BPR.

What it is for: the strongest purely collaborative ('direct') tool on sparse data. Propagation lets a user's
vector borrow from the items of users like them (and an item's from the users of similar items), which plain
MF cannot do when each user and item has only a handful of interactions.

Model (as in the paper): E0 = [user embeddings; item embeddings], E(k+1) = A_hat E(k) with
A_hat = D^-1/2 A D^-1/2 the symmetrically normalised adjacency of the bipartite train graph (no self-loops,
no weights, no non-linearity), final embeddings = mean of E(0)..E(K); score = <user, item>; loss = BPR plus
L2 on the batch's layer-0 embeddings. A_hat is a torch sparse matrix, never dense.

The graph is built from `data.split.train` in `fit` and kept in the checkpoint as an edge-list buffer
(`edges`, [2, n_edges] of distinct (user_idx, item_idx) pairs); A_hat is rebuilt from it on first use, so a
loaded checkpoint scores exactly as the trained model did.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from reasonrec.tools.base import Tool, ToolConfig
from reasonrec.tools.bpr_mf import bpr_batches, train_pairs
from reasonrec.tools.content import ItemEncoder
from reasonrec.tools.data import Queries, ToolData


class LightGCNConfig(ToolConfig):
    n_layers: int = Field(2, ge=0, description="Propagation layers K (the paper uses 1-4; 0 is plain MF).")
    reg_weight: float = Field(1e-4, ge=0, description="L2 weight on the batch's layer-0 embeddings (paper's lambda).")
    lr: float = Field(1e-2, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.5, ge=0, description=(
        "AdamW (decoupled) weight decay: shrinks rarely-updated embeddings, as for BPR-MF on sparse data."))
    batch_size: int = Field(1024, ge=1, description="BPR triples per step (each step propagates the whole graph).")
    epochs: int = Field(60, ge=1, description="Upper bound on training epochs (early stopping usually ends sooner).")
    patience: int = Field(5, ge=1, description="Epochs without a better validation metric before stopping.")


class LightGCNModule(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, n_layers: int, item_features: torch.Tensor | None):
        super().__init__()
        self.n_users, self.n_items, self.n_layers = n_users, n_items, n_layers
        self.users = torch.nn.Embedding(n_users, dim)
        torch.nn.init.normal_(self.users.weight, std=0.05)
        self.items = ItemEncoder(n_items, dim, item_features)
        self.register_buffer("edges", torch.zeros(2, 0, dtype=torch.int64))
        self._adjacency: torch.Tensor | None = None
        self._scoring_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def set_graph(self, user_idx: np.ndarray, item_idx: np.ndarray) -> None:
        """Store the distinct (user, item) training pairs as the graph."""
        pairs = np.unique(np.stack([user_idx, item_idx]).astype(np.int64), axis=1)
        self.edges = torch.from_numpy(pairs).to(self.users.weight.device)
        self._adjacency = self._scoring_cache = None

    def adjacency(self) -> torch.Tensor:
        """A_hat = D^-1/2 A D^-1/2 over users then items, as a sparse COO tensor (built once per graph)."""
        if self._adjacency is None:
            users, items = self.edges[0], self.edges[1] + self.n_users
            rows, cols = torch.cat([users, items]), torch.cat([items, users])
            n_nodes = self.n_users + self.n_items
            degree = torch.bincount(rows, minlength=n_nodes).float()
            inv_sqrt = degree.pow(-0.5).masked_fill(degree == 0, 0.0)
            values = inv_sqrt[rows] * inv_sqrt[cols]
            self._adjacency = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n_nodes, n_nodes),
                                                      check_invariants=True).coalesce()
        return self._adjacency

    def layer0(self) -> torch.Tensor:
        return torch.cat([self.users.weight, self.items.all_items()])

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users [n_users, d], items [n_items, d]): the mean of the K+1 layer embeddings."""
        if self.edges.shape[1] == 0:
            raise RuntimeError("LightGCN has no graph: fit the tool (or load a fitted checkpoint) first")
        if self._scoring_cache is not None:
            return self._scoring_cache
        layer = self.layer0()
        total = layer
        adjacency = self.adjacency()
        for _ in range(self.n_layers):
            layer = torch.sparse.mm(adjacency, layer)
            total = total + layer
        final = total / (self.n_layers + 1)
        result = (final[:self.n_users], final[self.n_users:])
        if not self.training and not torch.is_grad_enabled():
            self._scoring_cache = result  # reused by every scoring batch until the weights can change
        return result

    def train(self, mode: bool = True) -> "LightGCNModule":
        self._scoring_cache = None
        return super().train(mode)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args, **kwargs) -> None:
        # The graph's size is only known from the checkpoint: resize the buffer before the copy.
        edges = state_dict.get(prefix + "edges")
        if edges is not None:
            self.edges = torch.empty_like(edges)
        self._adjacency = self._scoring_cache = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class LightGCN(Tool):
    name = "lightgcn"
    task = "direct"
    config_class = LightGCNConfig

    def build(self, item_features):
        return LightGCNModule(self.n_users, self.n_items, self.cfg.embedding_dim, self.cfg.n_layers, item_features)

    def fit(self, data: ToolData) -> list[dict[str, Any]]:
        self.module.set_graph(*train_pairs(data))
        return super().fit(data)

    def training_batches(self, data: ToolData, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        return bpr_batches(data, rng, self.cfg.batch_size)

    def loss(self, batch):
        m = self.module
        users, items = m.propagate()
        user, pos, neg = users[batch["user"]], items[batch["pos"]], items[batch["neg"]]
        bpr = -F.logsigmoid((user * pos).sum(-1) - (user * neg).sum(-1)).mean()
        ego_user, ego_pos, ego_neg = m.users(batch["user"]), m.items(batch["pos"]), m.items(batch["neg"])
        l2 = (ego_user.pow(2) + ego_pos.pow(2) + ego_neg.pow(2)).sum(-1).mean() / 2
        return bpr + self.cfg.reg_weight * l2

    def score_candidates(self, queries: Queries, candidates: torch.Tensor) -> torch.Tensor:
        users, items = self.module.propagate()
        return torch.einsum("nd,ncd->nc", users[self.tensor(queries.user_idx)], items[candidates])

    def score_all_items(self, queries: Queries) -> torch.Tensor:
        users, items = self.module.propagate()
        return users[self.tensor(queries.user_idx)] @ items.T

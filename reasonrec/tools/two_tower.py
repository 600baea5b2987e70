"""Two-tower retrieval model (Covington et al., RecSys 2016; Yi et al., RecSys 2019): a user tower and an
item tower whose inner product scores a pair, trained with a sampled softmax over in-batch negatives.

What it is for: candidate generation. Because a score is just <user vector, item vector>, the item tower's
vectors go into a faiss index once (`item_vectors`, reasonrec.tools.retrieval) and each user's candidates
come from one nearest-neighbour search with `user_vectors`; the heavier tools then rerank only those.

User tower: an MLP over [user id embedding ; mean of the item vectors of the user's recent history] (the
history is what lets the vector follow a user's latest interests without retraining). Item tower: the
shared `ItemEncoder` (id embedding, + content MLP for '+V'). Both outputs are L2-normalised, so scores are
cosines divided by a temperature.

Training (one example per training interaction): the history is the user's items *before* that
interaction, as at serving time. The softmax's negatives are the other positives of the batch (popular
items, as in Yi et al.) plus items drawn uniformly from the catalogue (mixed negative sampling, Yang et
al., WWW 2020, so rare items are pushed down too). Every logit is corrected by the log of the item's
probability of being sampled (the logQ correction), which makes the sampled softmax estimate the full one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from reasonrec.tools.base import Tool, ToolConfig, history_tensor
from reasonrec.tools.content import ItemEncoder
from reasonrec.tools.data import Queries, ToolData


class TwoTowerConfig(ToolConfig):
    temperature: float = Field(0.3, gt=0, description="Softmax temperature on the cosine scores.")
    uniform_negatives: int = Field(256, ge=0, description=(
        "Items drawn uniformly per batch as extra negatives for every query (mixed negative sampling)."))
    max_len: int = Field(20, ge=1, description="Most recent history items the user tower averages.")
    lr: float = Field(1e-2, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    epochs: int = Field(40, ge=1, description="Upper bound on training epochs (early stopping usually ends sooner).")
    patience: int = Field(5, ge=1, description="Epochs without a better validation metric before stopping.")


class TwoTowerModule(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, dropout: float, item_features: torch.Tensor | None):
        super().__init__()
        self.n_items = n_items
        self.users = torch.nn.Embedding(n_users, dim)
        torch.nn.init.normal_(self.users.weight, std=0.05)
        self.items = ItemEncoder(n_items, dim, item_features)
        self.user_tower = torch.nn.Sequential(
            torch.nn.Dropout(dropout), torch.nn.Linear(2 * dim, 2 * dim), torch.nn.GELU(),
            torch.nn.Linear(2 * dim, dim))

    def user_vectors(self, user_idx: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """[n, dim] unit vectors; history [n, L] item indices with padding = n_items."""
        real = (history != self.n_items).unsqueeze(-1).float()
        history_mean = (self.encode(history) * real).sum(1) / real.sum(1).clamp(min=1.0)
        return F.normalize(self.user_tower(torch.cat([self.users(user_idx), history_mean], dim=-1)), dim=-1)

    def item_vectors(self, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Unit vectors of the given items, or [n_items, dim] of every item."""
        vectors = self.items.all_items() if item_idx is None else self.encode(item_idx)
        return F.normalize(vectors, dim=-1)

    def encode(self, item_idx: torch.Tensor) -> torch.Tensor:
        """ItemEncoder vectors, computed once per distinct item (histories repeat items; '+V' runs an MLP)."""
        distinct, position = torch.unique(item_idx, return_inverse=True)
        return self.items(distinct)[position]


class TwoTower(Tool):
    name = "two_tower"
    task = "direct"
    config_class = TwoTowerConfig

    def build(self, item_features):
        return TwoTowerModule(self.n_users, self.n_items, self.cfg.embedding_dim, self.cfg.dropout, item_features)

    def training_batches(self, data: ToolData, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        train, max_len = data.train, self.cfg.max_len
        counts = np.bincount(train.items, minlength=self.n_items).astype(np.float64)
        popularity = torch.from_numpy(counts / counts.sum()).float()
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), train.lengths())
        user_start = train.offsets[users]
        order = rng.permutation(len(train.items))
        for start in range(0, len(order), self.cfg.batch_size):
            rows = order[start:start + self.cfg.batch_size]  # positions in train.items
            # The history of interaction j is the user's items in [max(user start, j - max_len), j).
            window = rows[:, None] - max_len + np.arange(max_len)
            history = np.where(window >= user_start[rows, None], train.items[np.maximum(window, 0)], self.n_items)
            yield {"user": torch.from_numpy(users[rows]), "history": torch.from_numpy(history),
                   "pos": torch.from_numpy(train.items[rows]),
                   "uniform": torch.from_numpy(rng.integers(0, self.n_items, size=self.cfg.uniform_negatives)),
                   "popularity": popularity}

    def loss(self, batch):
        m, cfg = self.module, self.cfg
        users = m.user_vectors(batch["user"], batch["history"])
        items = torch.cat([batch["pos"], batch["uniform"]])
        logits = users @ m.item_vectors(items).T / cfg.temperature
        # logQ correction: an item's chance to be a column is (batch share of popular draws) + (uniform draws).
        n_pos, n_uniform = len(batch["pos"]), len(batch["uniform"])
        sampling = n_pos * batch["popularity"][items] + n_uniform / self.n_items
        logits = logits - torch.log(sampling)
        # A column holding the row's own positive item (its own, or a duplicate elsewhere) is not a negative.
        same_item = items.unsqueeze(0) == batch["pos"].unsqueeze(1)
        own = torch.arange(n_pos, device=logits.device)
        same_item[own, own] = False
        logits = logits.masked_fill(same_item, float("-inf"))
        return F.cross_entropy(logits, own)

    # -------------------------------------------------------------- scoring and retrieval vectors

    def _user_vectors(self, queries: Queries) -> torch.Tensor:
        """Unit user vectors scaled by 1/temperature, so <user, item> is the trained logit."""
        return self.module.user_vectors(self.tensor(queries.user_idx),
                                        history_tensor(queries, self.n_items, self.device)) / self.cfg.temperature

    def score_candidates(self, queries: Queries, candidates: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nd,ncd->nc", self._user_vectors(queries), self.module.item_vectors(candidates))

    def score_all_items(self, queries: Queries) -> torch.Tensor:
        return self._user_vectors(queries) @ self.module.item_vectors().T

    @torch.no_grad()
    def user_vectors(self, queries: Queries) -> np.ndarray:
        """[n, d] float32 query vectors for faiss: their inner products with `item_vectors` are the scores."""
        self.module.eval()
        out = np.empty((len(queries), self.cfg.embedding_dim), dtype=np.float32)
        step = self.cfg.score_batch_size
        for start in range(0, len(queries), step):
            out[start:start + step] = self._user_vectors(queries.take(slice(start, start + step))).cpu().numpy()
        return out

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        """[n_items, d] float32 item-tower vectors (row = item_idx), for `retrieval.build_index`."""
        self.module.eval()
        return self.module.item_vectors().cpu().numpy().astype(np.float32)

"""BPR-MLP: the MLP branch of Neural Collaborative Filtering (He et al., WWW 2017), trained with the BPR loss
(Rendle et al., UAI 2009) instead of NCF's pointwise log loss.

What it is for: a collaborative ('direct') tool whose user-item interaction function is learnt (a tower of
ReLU layers over the concatenated user and item embeddings) rather than fixed to a dot product, so the
router has a non-linear collaborative opinion next to BPR-MF's and LightGCN's. Expect it to trail them,
most on very sparse data (Rendle et al., RecSys 2020: an MLP learns a dot product only from a lot of data);
on the 3,000-user Beauty slice it does not beat popularity, on MovieLens and full Beauty it does.

Scoring the whole catalogue cannot be one matmul, so it runs the tower over item chunks. The first layer is
linear in the concatenation, W [u; i] = W_u u + W_i i, so each user's and each item's part is computed once
and only the (small) upper layers run per pair.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt

from reasonrec.tools.base import Tool, ToolConfig
from reasonrec.tools.bpr_mf import bpr_batches
from reasonrec.tools.content import ItemEncoder
from reasonrec.tools.data import Queries, ToolData

PAIRS_PER_CHUNK = 1 << 20  # (user, item) pairs per full-catalogue scoring step: ~256 MiB of activations


class BPRMLPConfig(ToolConfig):
    layers: list[PositiveInt] = Field(default_factory=lambda: [64, 32, 16], min_length=1, description=(
        "Widths of the MLP tower's hidden layers (NCF's tower, halving each layer); a linear layer to 1 follows."))
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description=(
        "AdamW (decoupled) weight decay; off, as in NCF's released code (here it slowed the tower's start)."))
    epochs: int = Field(60, ge=1, description="Upper bound on training epochs (early stopping usually ends sooner).")
    patience: int = Field(5, ge=1, description="Epochs without a better validation metric before stopping.")


class BPRMLPModule(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, layers: list[int], dropout: float,
                 item_features: torch.Tensor | None):
        super().__init__()
        self.dim = dim
        self.users = torch.nn.Embedding(n_users, dim)
        torch.nn.init.normal_(self.users.weight, std=0.05)
        self.items = ItemEncoder(n_items, dim, item_features)
        self.first = torch.nn.Linear(2 * dim, layers[0])
        upper: list[torch.nn.Module] = []
        for width_in, width_out in zip(layers, layers[1:] + [1]):
            upper += [torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(width_in, width_out)]
        self.upper = torch.nn.Sequential(*upper)

    def user_part(self, user_vectors: torch.Tensor) -> torch.Tensor:
        """The user's share of the first layer, W_u u + b."""
        return F.linear(user_vectors, self.first.weight[:, :self.dim], self.first.bias)

    def item_part(self, item_vectors: torch.Tensor) -> torch.Tensor:
        """The item's share of the first layer, W_i i."""
        return F.linear(item_vectors, self.first.weight[:, self.dim:])

    def pair_scores(self, user_part: torch.Tensor, item_part: torch.Tensor) -> torch.Tensor:
        """Scores [n, c] from user parts [n, h] and item parts [n, c, h] or [c, h]."""
        return self.upper(user_part.unsqueeze(1) + item_part).squeeze(-1)


class BPRMLP(Tool):
    name = "bpr_mlp"
    task = "direct"
    config_class = BPRMLPConfig

    def build(self, item_features):
        return BPRMLPModule(self.n_users, self.n_items, self.cfg.embedding_dim, self.cfg.layers, self.cfg.dropout,
                            item_features)

    def training_batches(self, data: ToolData, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        return bpr_batches(data, rng, self.cfg.batch_size)

    def loss(self, batch):
        m = self.module
        user = m.user_part(m.users(batch["user"]))
        items = m.item_part(m.items(torch.stack([batch["pos"], batch["neg"]], dim=1)))  # [n, 2, h]
        scores = m.pair_scores(user, items)
        return -F.logsigmoid(scores[:, 0] - scores[:, 1]).mean()

    def score_candidates(self, queries: Queries, candidates: torch.Tensor) -> torch.Tensor:
        m = self.module
        return m.pair_scores(m.user_part(m.users(self.tensor(queries.user_idx))), m.item_part(m.items(candidates)))

    def score_all_items(self, queries: Queries) -> torch.Tensor:
        m = self.module
        user = m.user_part(m.users(self.tensor(queries.user_idx)))
        items = m.item_part(m.items.all_items())
        chunk = max(1, PAIRS_PER_CHUNK // max(1, len(queries)))
        return torch.cat([m.pair_scores(user, items[start:start + chunk])
                          for start in range(0, self.n_items, chunk)], dim=1)

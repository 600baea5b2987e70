"""SASRec (Kang & McAuley, ICDM 2018, "Self-Attentive Sequential Recommendation").

What it is for: next-item recommendation from the order of a user's recent items. Causal self-attention
over the item sequence plus learned absolute position embeddings lets it weigh a few recent, relevant items
(short-term intent on sparse data) or many (long-term taste on dense data) per user.

As in the paper: item embeddings scaled by sqrt(d) plus learned positions, dropout, stacked pre-LayerNorm
Transformer blocks with a causal mask (a position attends to itself and earlier real items), padding zeroed
after every block, a final LayerNorm, and prediction by the dot product with the shared item embeddings.
Trained with full-catalogue cross-entropy on every position (see `sequence_batches`) instead of the paper's
one-negative binary loss.
"""

from __future__ import annotations

import torch
from pydantic import Field

from reasonrec.tools.content import ItemEncoder
from reasonrec.tools.sequence_batches import SequentialConfig, SequentialEncoder, SequentialTool


class SASRecConfig(SequentialConfig):
    n_layers: int = Field(2, ge=1, description="Self-attention blocks (paper: 2).")
    n_heads: int = Field(2, ge=1, description="Attention heads per block; must divide embedding_dim.")
    ffn_multiplier: int = Field(4, ge=1, description="Feed-forward width = ffn_multiplier * embedding_dim.")


class SASRecModule(SequentialEncoder):
    def __init__(self, n_items: int, max_len: int, cfg: SASRecConfig, item_features: torch.Tensor | None):
        super().__init__(n_items, max_len)
        dim = cfg.embedding_dim
        if dim % cfg.n_heads:
            raise ValueError(f"sasrec: embedding_dim {dim} is not divisible by n_heads {cfg.n_heads}")
        self.n_heads, self.scale = cfg.n_heads, dim ** 0.5
        self.items = ItemEncoder(n_items, dim, item_features)
        self.position = torch.nn.Embedding(max_len, dim)
        torch.nn.init.normal_(self.position.weight, std=0.05)
        self.dropout = torch.nn.Dropout(cfg.dropout)
        self.blocks = torch.nn.ModuleList(
            torch.nn.TransformerEncoderLayer(dim, cfg.n_heads, cfg.ffn_multiplier * dim, cfg.dropout,
                                             activation="gelu", batch_first=True, norm_first=True)
            for _ in range(cfg.n_layers))
        self.final_norm = torch.nn.LayerNorm(dim)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        is_real = history != self.n_items                                        # [B, W]
        width = history.shape[1]
        x = self.items(history) * self.scale + self.position(self.positions(width))
        keep = is_real.unsqueeze(-1).to(x.dtype)
        x = self.dropout(x) * keep
        # A position sees itself and the earlier real items; padding rows see only themselves (no empty
        # softmax), and padding is never seen by a real position.
        causal = torch.ones(width, width, dtype=torch.bool, device=history.device).tril()
        allowed = (causal & is_real.unsqueeze(1)) | torch.eye(width, dtype=torch.bool, device=history.device)
        blocked = (~allowed).repeat_interleave(self.n_heads, dim=0)                # [B*heads, W, W]
        for block in self.blocks:
            x = block(x, src_mask=blocked) * keep
        return self.final_norm(x)


class SASRec(SequentialTool):
    name = "sasrec"
    config_class = SASRecConfig

    def build(self, item_features):
        return SASRecModule(self.n_items, self.cfg.max_len, self.cfg, item_features)

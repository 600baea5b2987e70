"""LightSANs (Fan et al., SIGIR 2021, "Lighter and Better: Low-Rank Decomposed Self-Attention Networks for
Next-Item Recommendation").

What it is for: next-item recommendation like SASRec, with an attention that scales with a few latent
interests instead of the sequence length, and item and position information kept apart so that position
noise does not leak into item-to-item relevance.

As in the paper (and RecBole's implementation): per block, the projected keys and values are each pooled
into `k_interests` latent interests by a learned item-to-interest softmax over the items
(softmax(X theta) over positions); every query attends over those k interests (an n x k attention instead
of n x n); a decoupled position attention, softmax((P Wq)(P Wk)^T / sqrt(2 d_h)), mixes the full-length
values by position alone; the two contexts are added, followed by post-LayerNorm residual and feed-forward
sublayers. Item embeddings carry no position; positions enter only through the position attention.

Causal adaptation (documented deviation): to train on every position in one pass like the other
sequential tools, position t pools its interests from, and attends by position to, only the real items at
positions <= t. Its output is then exactly the paper's model applied to the prefix ending at t, which is
what RecBole's training on every prefix computes, and for scoring (the last position) it is the paper's
model on the whole history.
"""

from __future__ import annotations

import torch
from pydantic import Field

from reasonrec.tools.content import ItemEncoder
from reasonrec.tools.sequence_batches import SequentialConfig, SequentialEncoder, SequentialTool


class LightSANsConfig(SequentialConfig):
    n_layers: int = Field(2, ge=1, description="Low-rank self-attention blocks.")
    n_heads: int = Field(2, ge=1, description="Attention heads per block; must divide embedding_dim.")
    k_interests: int = Field(5, ge=1, description="Latent interests the items are pooled into (the rank k).")
    ffn_multiplier: int = Field(4, ge=1, description="Feed-forward width = ffn_multiplier * embedding_dim.")


class InterestAggregation(torch.nn.Module):
    """Item-to-interest aggregation: k softmax(X theta)-weighted sums of the visible items, per query position."""

    def __init__(self, dim: int, k_interests: int):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.randn(dim, k_interests) * dim ** -0.5)

    def forward(self, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """x [B, W, d], visible [B, W(t), W(s)] bool -> interests [B, W(t), k, d]."""
        logits = (x @ self.theta).unsqueeze(1)                                # [B, 1, W(s), k]
        logits = logits.masked_fill(~visible.unsqueeze(-1), float("-inf"))   # [B, W(t), W(s), k]
        return torch.einsum("btsk,bsd->btkd", logits.softmax(dim=2), x)


class LowRankAttention(torch.nn.Module):
    """Low-rank item attention over k interests + decoupled position attention, then Add & LayerNorm."""

    def __init__(self, dim: int, n_heads: int, k_interests: int, dropout: float):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"lightsans: embedding_dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads, self.head_dim, self.k_interests = n_heads, dim // n_heads, k_interests
        self.query, self.key, self.value = (torch.nn.Linear(dim, dim) for _ in range(3))
        self.key_interests = InterestAggregation(dim, k_interests)
        self.value_interests = InterestAggregation(dim, k_interests)
        self.position_norm = torch.nn.LayerNorm(dim)
        self.position_query, self.position_key = torch.nn.Linear(dim, dim), torch.nn.Linear(dim, dim)
        self.attention_dropout = torch.nn.Dropout(dropout)
        self.dense, self.out_dropout, self.norm = torch.nn.Linear(dim, dim), torch.nn.Dropout(dropout), \
            torch.nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, position: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """x [B, W, d], position [W, d] embeddings, visible [B, W(t), W(s)] bool."""
        batch, width, dim = x.shape
        h, e, k = self.n_heads, self.head_dim, self.k_interests
        query = self.query(x).view(batch, width, h, e)
        values = self.value(x)
        interest_keys = self.key_interests(self.key(x), visible).view(batch, width, k, h, e)
        interest_values = self.value_interests(values, visible).view(batch, width, k, h, e)
        item_scores = torch.einsum("bthe,btjhe->bhtj", query, interest_keys) / e ** 0.5   # [B, h, W, k]
        item_probs = self.attention_dropout(item_scores.softmax(dim=-1))
        item_context = torch.einsum("bhtj,btjhe->bthe", item_probs, interest_values)

        p = self.position_norm(position)
        position_scores = torch.einsum("the,she->hts", self.position_query(p).view(width, h, e),
                                       self.position_key(p).view(width, h, e)) / (2 * e) ** 0.5
        position_scores = position_scores.unsqueeze(0).masked_fill(~visible.unsqueeze(1), float("-inf"))
        position_probs = self.attention_dropout(position_scores.softmax(dim=-1))             # [B, h, W, W]
        position_context = torch.einsum("bhts,bshe->bthe", position_probs, values.view(batch, width, h, e))

        context = (item_context + position_context).reshape(batch, width, dim)
        return self.norm(x + self.out_dropout(self.dense(context)))


class LightSANsBlock(torch.nn.Module):
    def __init__(self, dim: int, n_heads: int, k_interests: int, ffn_width: int, dropout: float):
        super().__init__()
        self.attention = LowRankAttention(dim, n_heads, k_interests, dropout)
        self.feed_forward = torch.nn.Sequential(torch.nn.Linear(dim, ffn_width), torch.nn.GELU(),
                                                torch.nn.Linear(ffn_width, dim), torch.nn.Dropout(dropout))
        self.norm = torch.nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, position: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, position, visible)
        return self.norm(x + self.feed_forward(x))


class LightSANsModule(SequentialEncoder):
    def __init__(self, n_items: int, max_len: int, cfg: LightSANsConfig, item_features: torch.Tensor | None):
        super().__init__(n_items, max_len)
        dim = cfg.embedding_dim
        self.items = ItemEncoder(n_items, dim, item_features)
        self.position = torch.nn.Embedding(max_len, dim)
        torch.nn.init.normal_(self.position.weight, std=0.05)
        self.input_norm, self.dropout = torch.nn.LayerNorm(dim), torch.nn.Dropout(cfg.dropout)
        self.blocks = torch.nn.ModuleList(
            LightSANsBlock(dim, cfg.n_heads, cfg.k_interests, cfg.ffn_multiplier * dim, cfg.dropout)
            for _ in range(cfg.n_layers))

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        is_real = history != self.n_items
        width = history.shape[1]
        keep = is_real.unsqueeze(-1).float()
        x = self.dropout(self.input_norm(self.items(history))) * keep
        # Position t sees the real items at positions <= t; padding rows see only themselves (no empty softmax).
        causal = torch.ones(width, width, dtype=torch.bool, device=history.device).tril()
        visible = (causal & is_real.unsqueeze(1)) | torch.eye(width, dtype=torch.bool, device=history.device)
        position = self.position(self.positions(width))
        for block in self.blocks:
            x = block(x, position, visible) * keep
        return x


class LightSANs(SequentialTool):
    name = "lightsans"
    config_class = LightSANsConfig

    def build(self, item_features):
        return LightSANsModule(self.n_items, self.cfg.max_len, self.cfg, item_features)

"""GRU4Rec (Hidasi et al., ICLR 2016, "Session-based Recommendations with Recurrent Neural Networks").

What it is for: the classic recurrent baseline for next-item recommendation: a GRU reads the history in
order and its state after each item predicts the next one. Cheap, strong on short sessions, and the
reference point the attention and convolution models are usually compared against.

As in the paper (and RecBole's implementation): item embeddings with dropout, GRU layers, and the state
after each item mapped by a linear layer to item space and scored against the shared item embeddings.
The loss is the shared full-catalogue cross-entropy, the paper's "softmax + cross-entropy" option (its
mini-batch negative sampling was a speed measure). Padding is skipped by packing, so a state depends only
on the user's real items.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from reasonrec.tools.content import ItemEncoder
from reasonrec.tools.sequence_batches import SequentialConfig, SequentialEncoder, SequentialTool


class GRU4RecConfig(SequentialConfig):
    dropout: float = Field(0.3, ge=0, lt=1, description=(
        "Dropout on the input embeddings (RecBole: 0.3; 0.5 under-fits the synthetic set)."))
    hidden_size: int = Field(128, ge=1, description="Width of the GRU state (RecBole: 128).")
    n_layers: int = Field(1, ge=1, description="Stacked GRU layers (paper: 1).")


class GRU4RecModule(SequentialEncoder):
    def __init__(self, n_items: int, max_len: int, cfg: GRU4RecConfig, item_features: torch.Tensor | None):
        super().__init__(n_items, max_len)
        self.items = ItemEncoder(n_items, cfg.embedding_dim, item_features)
        self.dropout = torch.nn.Dropout(cfg.dropout)
        self.gru = torch.nn.GRU(cfg.embedding_dim, cfg.hidden_size, cfg.n_layers, batch_first=True)
        self.output = torch.nn.Linear(cfg.hidden_size, cfg.embedding_dim)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        width = history.shape[1]
        # An empty history reads one padding item (zero vector), wherever its batch's width puts it.
        lengths = (history != self.n_items).sum(dim=1).clamp(min=1)
        offset = (width - lengths).unsqueeze(1)                  # where each row's real items start
        columns = torch.arange(width, device=history.device)
        left_aligned = history.gather(1, (columns + offset) % width)
        packed = pack_padded_sequence(self.dropout(self.items(left_aligned)), lengths.cpu(),  # torch wants CPU lengths
                                      batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=width)
        right_aligned = states.gather(1, ((columns - offset) % width).unsqueeze(-1).expand_as(states))
        return self.output(right_aligned)


class GRU4Rec(SequentialTool):
    name = "gru4rec"
    config_class = GRU4RecConfig

    def build(self, item_features):
        return GRU4RecModule(self.n_items, self.cfg.max_len, self.cfg, item_features)

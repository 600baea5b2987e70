"""NextItNet (Yuan et al., WSDM 2019, "A Simple Convolutional Generative Network for Next Item
Recommendation").

What it is for: next-item recommendation with a convolutional rather than attention encoder: stacked
dilated causal 1-D convolutions see an exponentially growing window of recent items at a cost linear in the
sequence length, which suits long sessions and cheap inference.

As in the paper (and its reference code, which RecBole follows): residual blocks of type (b), each two
1 x kernel_size causal convolutions with dilation d then 2d, each followed by LayerNorm and ReLU, added to
the block's input; the dilations repeat (paper: 1, 2, 4, 8, stacked). The default blocks (1, 4) give
convolutions dilated 1, 2, 4, 8: a receptive field of 31 items, the most recent 31 of a history (Amazon
histories are far shorter; (1, 4, 1, 4) reaches 61, with a lower validation NDCG on the Beauty slice). The last
position goes through a linear layer and is scored against the shared item embeddings (RecBole's output
layer; sharing lets '+V' content vectors score too), with the shared full-catalogue cross-entropy (the
paper's loss is a full softmax as well). Added for sparse data: dropout on the input embeddings and on each
block's residual branch (the paper has none; without it the model memorises training sequences and stays
at the popularity level on the Amazon Beauty slice).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt

from reasonrec.tools.content import ItemEncoder
from reasonrec.tools.sequence_batches import SequentialConfig, SequentialEncoder, SequentialTool


class NextItNetConfig(SequentialConfig):
    dilations: list[PositiveInt] = Field([1, 4], min_length=1, description=(
        "Dilation d of each residual block (its two convolutions use d and 2d)."))
    kernel_size: int = Field(3, ge=2, description="Width of every causal convolution (paper: 3).")


class CausalConv(torch.nn.Module):
    """1-D convolution over [B, W, d] that only looks left: position t sees t, t-dilation, t-2*dilation, ..."""

    def __init__(self, dim: int, kernel_size: int, dilation: int):
        super().__init__()
        self.left_padding = (kernel_size - 1) * dilation
        self.conv = torch.nn.Conv1d(dim, dim, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x.transpose(1, 2), (self.left_padding, 0))).transpose(1, 2)


class ResidualBlock(torch.nn.Module):
    """The paper's residual block (b): conv(d) -> LN -> ReLU -> conv(2d) -> LN -> ReLU, plus the input."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv1, self.norm1 = CausalConv(dim, kernel_size, dilation), torch.nn.LayerNorm(dim)
        self.conv2, self.norm2 = CausalConv(dim, kernel_size, 2 * dilation), torch.nn.LayerNorm(dim)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x [B, W, d]; keep [B, W, 1] is 0 at padding, which is zeroed after every convolution so that it
        equals the convolutions' own zero padding: the output does not depend on how much padding there is."""
        h = F.relu(self.norm1(self.conv1(x))) * keep
        h = F.relu(self.norm2(self.conv2(h))) * keep
        return x + self.dropout(h)


class NextItNetModule(SequentialEncoder):
    def __init__(self, n_items: int, max_len: int, cfg: NextItNetConfig, item_features: torch.Tensor | None):
        super().__init__(n_items, max_len)
        self.items = ItemEncoder(n_items, cfg.embedding_dim, item_features)
        self.dropout = torch.nn.Dropout(cfg.dropout)
        self.blocks = torch.nn.ModuleList(ResidualBlock(cfg.embedding_dim, cfg.kernel_size, d, cfg.dropout)
                                          for d in cfg.dilations)
        self.output = torch.nn.Linear(cfg.embedding_dim, cfg.embedding_dim)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        keep = (history != self.n_items).unsqueeze(-1).float()
        x = self.dropout(self.items(history)) * keep
        for block in self.blocks:
            x = block(x, keep)
        return self.output(x)


class NextItNet(SequentialTool):
    name = "nextitnet"
    config_class = NextItNetConfig

    def build(self, item_features):
        return NextItNetModule(self.n_items, self.cfg.max_len, self.cfg, item_features)

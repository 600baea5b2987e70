"""DLRM (Naumov et al., 2019, "Deep Learning Recommendation Model for Personalization and Recommendation
Systems"): click prediction from dense and sparse features with only second-order (dot-product) interactions.

A bottom MLP maps the dense features to one vector the size of an embedding (the shared `dense` field),
the sparse features are embeddings (the other shared fields), every pair of these vectors interacts by a
dot product, and a top MLP reads the bottom MLP's output concatenated with the pairwise dots.
"""

from __future__ import annotations

import torch

from reasonrec.tools.ctr_fields import DENSE_FIELD, CTRInputs, CTRTool, mlp


class DLRMHead(torch.nn.Module):
    def __init__(self, n_fields: int, dim: int, top_units: list[int], dropout: float):
        super().__init__()
        rows, cols = torch.triu_indices(n_fields, n_fields, offset=1)
        self.register_buffer("pair_rows", rows, persistent=False)
        self.register_buffer("pair_cols", cols, persistent=False)
        self.top = mlp(dim + len(rows), top_units, dropout)
        self.output = torch.nn.Linear(top_units[-1], 1)

    def forward(self, inputs: CTRInputs) -> torch.Tensor:
        fields = inputs.fields                                              # [N, F, D]
        dots = torch.bmm(fields, fields.transpose(1, 2))[:, self.pair_rows, self.pair_cols]
        return self.output(self.top(torch.cat([fields[:, DENSE_FIELD], dots], dim=1))).squeeze(-1)


class DLRM(CTRTool):
    name = "dlrm"

    def build_head(self, n_fields: int, dim: int) -> torch.nn.Module:
        return DLRMHead(n_fields, dim, self.cfg.hidden_units, self.cfg.dropout)

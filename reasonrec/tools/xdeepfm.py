"""xDeepFM (Lian et al., KDD 2018, "xDeepFM: Combining Explicit and Implicit Feature Interactions for Recommender
Systems"): a linear part, a Compressed Interaction Network (CIN) and a DNN summed into one click logit.

The CIN learns explicit vector-wise interactions: layer k computes
X^k_h = sum_{i,j} W^{k,h}_{ij} (X^{k-1}_i * X^0_j) (a 1x1 convolution over the field-pair outer products),
each layer's maps are sum-pooled over the embedding dimension and concatenated into p^+. Like the authors'
code, half of each hidden layer's maps feed the next layer and half go straight to the output
(`split_half`), and the CIN uses the identity activation (the paper's best choice). The fields are shared
with the other CTR tools; the linear part is their first-order per-feature weights.
"""

from __future__ import annotations

import torch
from pydantic import Field

from reasonrec.tools.ctr_fields import CTRConfig, CTRInputs, CTRTool, mlp


class XDeepFMConfig(CTRConfig):
    cin_layers: list[int] = Field(default_factory=lambda: [32, 32], min_length=1, description=(
        "Feature maps per CIN layer (the paper uses 100-200 for Criteo's 39 fields; these tools have 5)."))
    split_half: bool = Field(True, description=(
        "Half of each hidden CIN layer's maps go to the output, half to the next layer (authors' code)."))


class CompressedInteractionNetwork(torch.nn.Module):
    """CIN over field embeddings. The paper's per-layer filters W^{k,h} ([H_{k-1} x m] each) are one Linear
    over the flattened outer products (the same as the authors' 1x1 convolution, faster on CPU)."""

    def __init__(self, n_fields: int, layer_sizes: list[int], split_half: bool):
        super().__init__()
        if split_half and any(size % 2 for size in layer_sizes[:-1]):
            raise ValueError(f"split_half needs even hidden CIN layer sizes, got {layer_sizes}")
        self.layers = torch.nn.ModuleList()
        self.to_next: list[int] = []   # feature maps each layer passes to the next (the rest go to the output)
        previous, self.out_width = n_fields, 0
        for k, size in enumerate(layer_sizes):
            self.layers.append(torch.nn.Linear(previous * n_fields, size))
            previous = size // 2 if split_half and k < len(layer_sizes) - 1 else size
            self.to_next.append(previous)
            self.out_width += size - previous if previous < size else size

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 [N, m, D] -> sum-pooled feature maps p^+ [N, out_width]."""
        base = x0.transpose(1, 2)                                               # [N, D, m]
        pooled, x = [], base
        for layer, to_next in zip(self.layers, self.to_next):
            maps = layer((x.unsqueeze(-1) * base.unsqueeze(-2)).flatten(2))     # [N, D, H_k]; identity activation
            if to_next < maps.shape[-1]:
                x, direct = maps.split([to_next, maps.shape[-1] - to_next], dim=-1)
            else:
                x = direct = maps
            pooled.append(direct.sum(1))
        return torch.cat(pooled, dim=1)


class XDeepFMHead(torch.nn.Module):
    def __init__(self, n_fields: int, dim: int, cin_layers: list[int], split_half: bool,
                 hidden_units: list[int], dropout: float):
        super().__init__()
        self.cin = CompressedInteractionNetwork(n_fields, cin_layers, split_half)
        self.cin_output = torch.nn.Linear(self.cin.out_width, 1)
        self.deep = mlp(n_fields * dim, hidden_units, dropout)
        self.deep_output = torch.nn.Linear(hidden_units[-1], 1)

    def forward(self, inputs: CTRInputs) -> torch.Tensor:
        fields = inputs.fields
        logit = self.cin_output(self.cin(fields)) + self.deep_output(self.deep(fields.flatten(1)))
        return logit.squeeze(-1) + inputs.linear


class XDeepFM(CTRTool):
    name = "xdeepfm"
    config_class = XDeepFMConfig
    with_linear = True

    def build_head(self, n_fields: int, dim: int) -> torch.nn.Module:
        cfg = self.cfg
        return XDeepFMHead(n_fields, dim, cfg.cin_layers, cfg.split_half, cfg.hidden_units, cfg.dropout)

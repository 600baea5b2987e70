"""DCN-V2 (Wang et al., WWW 2021, "DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale
Learning to Rank Systems"): explicit bounded-degree feature crosses plus a DNN, for click prediction.

Each cross layer is x_{l+1} = x_0 * (W_l x_l + b_l) + x_l with a full-rank W_l (the V2 change from DCN's
rank-one crosses), so L layers model every feature interaction up to degree L + 1. The cross network and the
DNN are either parallel (both read x_0, their outputs are concatenated) or stacked (the DNN reads the cross
network's output). The fields (x_0 = their concatenation) are shared with the other CTR tools.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from reasonrec.tools.ctr_fields import CTRConfig, CTRInputs, CTRTool, mlp


class DCNv2Config(CTRConfig):
    cross_layers: int = Field(3, ge=1, description="Number of full-rank cross layers.")
    structure: Literal["parallel", "stacked"] = Field("parallel", description=(
        "'parallel': cross network and DNN side by side on x_0; 'stacked': the DNN on top of the crosses."))


class CrossNetworkV2(torch.nn.Module):
    """x_{l+1} = x_0 * (W_l x_l + b_l) + x_l, W_l full rank."""

    def __init__(self, width: int, n_layers: int):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(n_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class DCNv2Head(torch.nn.Module):
    def __init__(self, width: int, cross_layers: int, structure: str, hidden_units: list[int], dropout: float):
        super().__init__()
        self.structure = structure
        self.cross = CrossNetworkV2(width, cross_layers)
        self.deep = mlp(width, hidden_units, dropout)
        out_width = hidden_units[-1] + (width if structure == "parallel" else 0)
        self.output = torch.nn.Linear(out_width, 1)

    def forward(self, inputs: CTRInputs) -> torch.Tensor:
        x0 = inputs.fields.flatten(1)
        if self.structure == "parallel":
            hidden = torch.cat([self.cross(x0), self.deep(x0)], dim=1)
        else:
            hidden = self.deep(self.cross(x0))
        return self.output(hidden).squeeze(-1)


class DCNv2(CTRTool):
    name = "dcnv2"
    config_class = DCNv2Config

    def build_head(self, n_fields: int, dim: int) -> torch.nn.Module:
        cfg = self.cfg
        return DCNv2Head(n_fields * dim, cfg.cross_layers, cfg.structure, cfg.hidden_units, cfg.dropout)

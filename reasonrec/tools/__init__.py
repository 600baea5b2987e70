"""The tool zoo: classical recommenders the router delegates to, all behind `reasonrec.tools.base.Tool`."""

from __future__ import annotations

from reasonrec.tools.base import Tool, load_tool
from reasonrec.tools.bpr_mf import BPRMF
from reasonrec.tools.bpr_mlp import BPRMLP
from reasonrec.tools.dcnv2 import DCNv2
from reasonrec.tools.dlrm import DLRM
from reasonrec.tools.gru4rec import GRU4Rec
from reasonrec.tools.lightgcn import LightGCN
from reasonrec.tools.lightsans import LightSANs
from reasonrec.tools.nextitnet import NextItNet
from reasonrec.tools.sasrec import SASRec
from reasonrec.tools.two_tower import TwoTower
from reasonrec.tools.xdeepfm import XDeepFM

# name -> class; jobs/train_tools.py --tools takes these names (append '+v' for the content variant).
TOOLS: dict[str, type[Tool]] = {tool.name: tool for tool in (
    SASRec, LightSANs, NextItNet, GRU4Rec,  # sequential
    BPRMF, BPRMLP, LightGCN, TwoTower,     # direct / collaborative
    DCNv2, XDeepFM, DLRM,                  # CTR
)}

__all__ = ["TOOLS", "Tool", "load_tool"]

"""The tool zoo: classical recommenders the router delegates to, all behind `reasonrec.tools.base.Tool`."""

from __future__ import annotations

from reasonrec.tools.base import Tool, load_tool
from reasonrec.tools.bpr_mf import BPRMF

# name -> class; jobs/train_tools.py --tools takes these names.
TOOLS: dict[str, type[Tool]] = {tool.name: tool for tool in (BPRMF,)}

__all__ = ["TOOLS", "Tool", "load_tool"]

"""A small recommendation world, built once per session in-process: a prepared synthetic set, three trained
tools (SASRec, BPR-MF, the two-tower retriever) and an (untrained) tiny VLM laid out as a train_vlm run folder
(model/ + run.json). Mechanics tests need real artifacts on the real loading paths, not good ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from reasonrec.data.prepare import prepare
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.tools import TOOLS
from reasonrec.tools.data import ToolData
from reasonrec.vlm.build import build_tiny_vlm
from reasonrec.vlm.instruction_config import InstructionConfig
from reasonrec.vlm.model_config import VLMModelConfig

TOOL_NAMES = ["bpr_mf", "sasrec", "two_tower"]
VLM_TOOLS = ["bpr_mf", "sasrec"]          # the tools the VLM has <tool_*> tokens for (its consult pool)


@dataclass
class World:
    dataset: str
    tools_dir: str
    vlm_dir: str
    data: ToolData


def build_world(root: Path, n_users: int = 150, n_items: int = 150) -> World:
    dataset = root / "dataset"
    prepare(PrepareConfig.model_validate({
        "out": str(dataset), "name": "synthetic",
        "source": {"kind": "synthetic", "synthetic": {"n_users": n_users, "n_items": n_items}},
        "splits": {"protocols": ["loo"]}, "candidates": {"ranking_negatives": [99]}}))
    data = ToolData.load(str(dataset))
    tools_dir = root / "tools"
    for name in TOOL_NAMES:
        cls = TOOLS[name]
        tool = cls(cls.config_class(epochs=2, embedding_dim=16, max_len=20), data.n_users, data.n_items)
        tool.fit(data)
        tool.save(tools_dir / name)
    vlm_dir = root / "vlm"
    model_cfg = VLMModelConfig(image_size=32)
    corpus = [f"USER: History: <item_{i}> item {i}. Evidence horizon 0.5. Which item next? ASSISTANT: EH: 0.50 | "
              f"Confidence: <conf_3> | Tools: <tool_sasrec> | Answer: <item_{i}>" for i in range(n_items)]
    build_tiny_vlm(vlm_dir / "model", data.n_items, VLM_TOOLS, corpus, model_cfg)
    settings = {"dataset": str(dataset), "tools_dir": str(tools_dir), "instructions":
                InstructionConfig(tasks=["sequential"]).model_dump(mode="json"), "model": model_cfg.model_dump(mode="json")}
    (vlm_dir / "run.json").write_text(json.dumps({"settings": settings, "plan": {}}))
    return World(str(dataset), str(tools_dir), str(vlm_dir), data)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))

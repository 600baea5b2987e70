"""Fixtures for the VLM data side: a small prepared synthetic set and tools whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from reasonrec.data.prepare import prepare
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.tools import TOOLS
from reasonrec.tools.base import Tool, ToolConfig
from reasonrec.tools.data import ToolData
from reasonrec.vlm.instructions import read_split_evidence
from tests.vlm.conftest_model import tiny_model, tiny_vlm, toy_images  # noqa: F401  (model-side fixtures)


class FixedRuleTool(Tool):
    """A tool with no weights whose scores follow a rule, so its answers are known by hand."""

    def build(self, item_features):
        return torch.nn.Identity()

    def training_batches(self, data, rng):
        return iter(())

    def loss(self, batch):
        raise NotImplementedError


class LowIdTool(FixedRuleTool):
    """A 'sequential' tool that prefers low item indices (score = -item): its top-k is known by hand."""

    name = "low_id"
    task = "sequential"

    def score_candidates(self, queries, candidates):
        return -candidates.float()


class ParityTool(FixedRuleTool):
    """A CTR tool that predicts a click on even items only (logit +1 / -1)."""

    name = "parity"
    task = "ctr"

    def score_candidates(self, queries, candidates):
        return torch.where(candidates % 2 == 0, 1.0, -1.0)


@pytest.fixture(scope="session")
def vlm_data(tmp_path_factory) -> ToolData:
    """200 users x 200 items (synthetic, with images and reviews), loo + random (CTR), 1+9 and 1+99 lists."""
    root = tmp_path_factory.mktemp("vlm_synthetic")
    prepare(PrepareConfig.model_validate({
        "out": str(root), "name": "synthetic",
        "source": {"kind": "synthetic", "synthetic": {"n_users": 200, "n_items": 200}},
        "splits": {"protocols": ["loo", "random"]}, "candidates": {"ranking_negatives": [99, 9]}}))
    return ToolData.load(str(root))


@pytest.fixture(scope="session")
def vlm_evidence(vlm_data) -> pd.DataFrame:
    return read_split_evidence(vlm_data)


@pytest.fixture(scope="session")
def fake_tools(vlm_data) -> dict[str, Tool]:
    cfg = ToolConfig(max_len=20)
    return {"low_id": LowIdTool(cfg, vlm_data.n_users, vlm_data.n_items),
            "parity": ParityTool(cfg, vlm_data.n_users, vlm_data.n_items)}


@pytest.fixture(scope="session")
def bpr_tool(vlm_data) -> Tool:
    """A real BPR-MF, briefly trained (a few seconds)."""
    cls = TOOLS["bpr_mf"]
    tool = cls(cls.config_class(epochs=10, embedding_dim=32, lr=0.01, weight_decay=0.01, seed=0),
               vlm_data.n_users, vlm_data.n_items)
    tool.fit(vlm_data)
    return tool


def user_items(histories, user: int) -> np.ndarray:
    return histories.items[histories.offsets[user]:histories.offsets[user + 1]]

"""The recommendation world of tests/recommend (synthetic set, sasrec/bpr_mf/two_tower, an untrained tiny VLM)
plus one tiny CTR tool for /v1/ctr. build_world prepares no random split (no CTR rows), so the CTR tool is
trained on a second preparation of the same seeded synthetic source that also writes it: same users, same
items, same indices (checked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reasonrec.data.prepare import prepare
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.data.schema import Dataset
from reasonrec.tools import TOOLS
from reasonrec.tools.data import ToolData
from tests.recommend.conftest import World, build_world

CTR_TOOL = "dcnv2"


def build_serve_world(root: Path, n_users: int = 60, n_items: int = 150) -> World:
    world = build_world(root, n_users=n_users, n_items=n_items)
    ctr_dataset = root / "ctr-dataset"
    prepare(PrepareConfig.model_validate({
        "out": str(ctr_dataset), "name": "synthetic",
        "source": {"kind": "synthetic", "synthetic": {"n_users": n_users, "n_items": n_items}},
        "splits": {"protocols": ["loo", "random"]},
        "candidates": {"ranking_negatives": [99], "ctr_negatives_per_positive": [4]}}))
    served, ctr_side = Dataset.load(world.dataset), Dataset.load(str(ctr_dataset))
    for frame in ("users", "items"):
        assert getattr(served, frame).equals(getattr(ctr_side, frame)), f"{frame} differ between the preparations"
    data = ToolData.load(str(ctr_dataset))
    cls = TOOLS[CTR_TOOL]
    tool = cls(cls.config_class(epochs=1, embedding_dim=8, hidden_units=[16]), data.n_users, data.n_items)
    tool.fit(data)
    tool.save(Path(world.tools_dir) / CTR_TOOL)
    return world


@pytest.fixture(scope="session")
def serve_world(tmp_path_factory) -> World:
    return build_serve_world(tmp_path_factory.mktemp("serve-world"))

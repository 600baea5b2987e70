"""Prepared data for tool tests: a small synthetic set (always) and small real slices (../shared/data)."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.data.prepare import prepare
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.tools.content import item_content_features
from reasonrec.tools.data import ToolData


def prepared(root, **config) -> ToolData:
    prepare(PrepareConfig.model_validate({"out": str(root), **config}))
    return ToolData.load(str(root))


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> ToolData:
    """600 users x 300 items of the embedded generator: taste-driven, so a real model beats popularity."""
    return prepared(tmp_path_factory.mktemp("synthetic"), name="synthetic",
                    source={"kind": "synthetic", "synthetic": {"n_users": 600, "n_items": 300}},
                    splits={"protocols": ["loo", "random"]}, candidates={"ranking_negatives": [99]})


@pytest.fixture(scope="session")
def synthetic_features(synthetic_data) -> np.ndarray:
    return item_content_features(synthetic_data.dataset)


@pytest.fixture(scope="session")
def beauty_slice(tmp_path_factory, shared_data) -> ToolData:
    """3,000 seeded users of Amazon Beauty (P5): the sequential benchmark the literature reports on."""
    return prepared(tmp_path_factory.mktemp("beauty"), name="beauty", max_users=3000,
                    source={"kind": "amazon_p5", "path": str(shared_data / "amazon-p5" / "beauty")},
                    splits={"protocols": ["loo"]}, candidates={"ranking_negatives": [99]})


@pytest.fixture(scope="session")
def movielens_slice(tmp_path_factory, shared_data) -> ToolData:
    """300 seeded users of ml-latest-small, with posters for +V tools and CTR rows."""
    return prepared(tmp_path_factory.mktemp("ml"), name="ml-latest-small", max_users=300,
                    source={"kind": "movielens", "path": str(shared_data / "ml-latest-small"),
                            "images": str(shared_data / "movielens-posters" / "posters")},
                    splits={"protocols": ["loo", "random"]}, candidates={"ranking_negatives": [99]})

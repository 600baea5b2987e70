"""The CTR table on a real prepared set with a CTR split and a trained CTR tool: numbers equal the tool's own
evaluation on every row, a user subset keeps only its rows, and the VLM rows say why they have no numbers."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.data.prepare import prepare
from reasonrec.data.prepare_config import PrepareConfig
from reasonrec.report.ctr import ctr_rows
from reasonrec.tools import TOOLS
from reasonrec.tools.data import ToolData
from reasonrec.tools.evaluate import evaluate_popularity, evaluate_tool


@pytest.fixture(scope="module")
def ctr_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctr-world")
    prepare(PrepareConfig.model_validate({
        "out": str(root / "dataset"), "name": "synthetic",
        "source": {"kind": "synthetic", "synthetic": {"n_users": 40, "n_items": 200}},
        "splits": {"protocols": ["loo", "random"]},
        "candidates": {"ranking_negatives": [99], "ctr_negatives_per_positive": [4]}}))
    data = ToolData.load(str(root / "dataset"))
    cls = TOOLS["dlrm"]
    tool = cls(cls.config_class(epochs=1, embedding_dim=8), data.n_users, data.n_items)
    tool.fit(data)
    return data, tool


def test_ctr_rows_equal_the_tools_own_evaluation(ctr_world):
    data, tool = ctr_world
    rows = {r["model"]: r for r in ctr_rows({"dlrm": tool}, data, None, ["sequential"])}
    expected = evaluate_tool(tool, data)
    assert rows["dlrm"]["AUC"] == pytest.approx(expected["AUC"])
    assert rows["dlrm"]["LogLoss"] == pytest.approx(expected["LogLoss"])
    assert rows["dlrm"]["rows"] == len(data.ctr["test"])
    assert rows["most_popular"]["AUC"] == pytest.approx(evaluate_popularity(data)["AUC"])
    assert rows["VLM-only"]["note"] == "not trained for CTR (the VLM's tasks: sequential)"
    assert "AUC" not in rows["ReasonRec"]


def test_user_subset_and_a_vlm_trained_for_ctr(ctr_world):
    data, tool = ctr_world
    test = data.ctr["test"]
    users = np.unique(test["user_idx"])[:20]
    rows = {r["model"]: r for r in ctr_rows({"dlrm": tool}, data, users, ["sequential", "ctr"])}
    assert rows["dlrm"]["rows"] == int(test["user_idx"].isin(users).sum()) < len(test)
    assert "not in this report yet" in rows["VLM-only"]["note"] and "AUC" not in rows["VLM-only"]


def test_no_ctr_split_no_rows(ctr_world):
    data, _ = ctr_world
    data_without = ToolData(**{**data.__dict__, "ctr": None})
    assert ctr_rows({}, data_without, None, []) == []

"""jobs/train_tools.py through its real CLI on local Ray: parallel tasks, checkpoints that load, a table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reasonrec.tools.base import load_tool
from reasonrec.tools.data import ToolData
from reasonrec.tools.training import ranking_ranks

pytestmark = pytest.mark.ray   # starts or joins Ray: the xdist group "ray" (tests/conftest.py)


def test_trains_tools_in_parallel_and_writes_loadable_checkpoints(job, tmp_path):
    dataset, out = tmp_path / "ds", tmp_path / "tools"
    job("prepare_data.py", "--config", "configs/synthetic.yaml", f"out={dataset}",
        "source.synthetic.n_users=300", "source.synthetic.n_items=200", "splits.protocols=[loo,random]",
        "candidates.ranking_negatives=[99]")
    result = job("train_tools.py", "--dataset", str(dataset), "--tools", "bpr_mf,bpr_mf+v,dlrm", "--out", str(out),
                 "epochs=3", "cpus_per_tool=0.5")
    assert "| bpr_mf |" in result.stdout and "| most_popular |" in result.stdout

    metrics = json.loads((out / "metrics.json").read_text())
    rows = {row["tool"]: row for row in metrics["rows"]}
    assert {"most_popular", "majority_vote", "bpr_mf", "bpr_mf+V", "dlrm"} <= set(rows)
    assert 0.0 < rows["dlrm"]["AUC"] < 1.0 and rows["dlrm"]["LogLoss"] > 0  # CTR tools: AUC/LogLoss only
    assert "sampled_HR@5" not in rows["dlrm"]
    assert rows["bpr_mf"]["epochs"] <= 3 and 0 <= rows["bpr_mf"]["full_HR@5"] <= rows["bpr_mf"]["full_HR@10"] <= 1
    assert (out / "metrics.md").read_text().count("\n|") >= 5

    # The checkpoint reproduces the reported test number exactly.
    tool = load_tool(out / "bpr_mf")
    data = ToolData.load(str(dataset))
    ranks = ranking_ranks(tool, data, "test", "train+valid")
    assert np.mean(ranks < 5) == rows["bpr_mf"]["sampled_HR@5"]


def test_unknown_tool_fails_before_training(job, tmp_path):
    result = job("train_tools.py", "--dataset", str(tmp_path), "--tools", "nosuchtool", check=False)
    assert result.returncode != 0 and "unknown tool 'nosuchtool'" in (result.stderr + result.stdout)


def test_evaluate_sampled_and_none_skip_the_full_catalogue(job, tmp_path):
    """evaluate=sampled keeps the 1+N lists (no full-ranking column, no most-popular row); evaluate=none writes
    loadable checkpoints with no test numbers at all."""
    dataset = tmp_path / "ds"
    job("prepare_data.py", "--config", "configs/synthetic.yaml", f"out={dataset}",
        "source.synthetic.n_users=120", "source.synthetic.n_items=200", "splits.protocols=[loo]",
        "candidates.ranking_negatives=[99]", "candidates.ctr_negatives_per_positive=[]")
    rows = {}
    for level in ("sampled", "none"):
        out = tmp_path / level
        job("train_tools.py", "--dataset", str(dataset), "--tools", "bpr_mf,sasrec", "--out", str(out), "epochs=1",
            "cpus_per_tool=0.5", f"evaluate={level}")
        rows[level] = {row["tool"]: row for row in json.loads((out / "metrics.json").read_text())["rows"]}
        load_tool(out / "sasrec")

    sampled = rows["sampled"]
    assert set(sampled) == {"majority_vote", "bpr_mf", "sasrec"}
    assert 0.0 <= sampled["sasrec"]["sampled_HR@5"] <= 1.0 and "full_HR@5" not in sampled["sasrec"]
    assert set(rows["none"]) == {"bpr_mf", "sasrec"}
    assert not any(key.startswith(("sampled_", "full_")) for row in rows["none"].values() for key in row)
    assert "not evaluated (evaluate=none)" in (tmp_path / "none" / "metrics.md").read_text()

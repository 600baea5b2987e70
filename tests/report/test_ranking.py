"""The main table's tool and baseline rows, on a real prepared set with real trained tools: on every test user
they equal reasonrec.tools.evaluate's numbers (the tools' own table), and a user subset only scores those users."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.recommend.calibration import part_requests
from reasonrec.report.ranking import baseline_rows, load_tools
from reasonrec.tools.evaluate import evaluate_majority_vote, evaluate_popularity, evaluate_tool
from tests.recommend.conftest import TOOL_NAMES, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("report-world"), n_users=60)


@pytest.fixture(scope="module")
def tools(world, tmp_path_factory):
    return load_tools(world.tools_dir, None, str(tmp_path_factory.mktemp("fetched")))


def test_load_tools_finds_every_trained_tool(world, tools, tmp_path):
    assert list(tools.tools) == sorted(TOOL_NAMES)
    assert tools.tasks == {"bpr_mf": "direct", "sasrec": "sequential", "two_tower": "direct"}
    with pytest.raises(FileNotFoundError, match="lightgcn: no trained tool"):
        load_tools(world.tools_dir, ["lightgcn"], str(tmp_path))


def test_rows_on_every_user_equal_the_tools_own_evaluation(world, tools):
    data = world.data
    rows = {r["model"]: r for r in baseline_rows(tools, data, part_requests(data, "test"), full=True)}
    assert list(rows) == [*sorted(TOOL_NAMES), "most_popular", "majority_vote"]
    for name in TOOL_NAMES:
        expected = evaluate_tool(tools.tools[name], data)
        for metric in ("HR@5", "NDCG@5", "HR@10", "NDCG@10"):
            assert rows[name][metric] == pytest.approx(expected[f"sampled_{metric}"]), (name, metric)
            assert rows[name][f"full_{metric}"] == pytest.approx(expected[f"full_{metric}"]), (name, metric)
        assert rows[name]["users"] == len(data.test_candidates)
    pop = evaluate_popularity(data)
    assert rows["most_popular"]["HR@5"] == pytest.approx(pop["sampled_HR@5"])
    assert rows["most_popular"]["full_NDCG@5"] == pytest.approx(pop["full_NDCG@5"])
    vote = evaluate_majority_vote([tools.tools[n] for n in sorted(TOOL_NAMES)], data)
    assert rows["majority_vote"]["NDCG@5"] == pytest.approx(vote["sampled_NDCG@5"])
    assert rows["majority_vote"]["members"] == sorted(TOOL_NAMES) and "full_HR@5" not in rows["majority_vote"]


def test_a_user_subset_scores_only_those_users(world, tools):
    data = world.data
    requests = part_requests(data, "test", max_users=10, seed=3)
    rows = {r["model"]: r for r in baseline_rows(tools, data, requests, full=False)}
    assert all(r["users"] == 10 for r in rows.values())
    assert "full_HR@5" not in rows["sasrec"]
    # Hit rates of 10 users are multiples of 0.1.
    assert all(np.isclose(r["HR@5"] * 10, round(r["HR@5"] * 10)) for r in rows.values())

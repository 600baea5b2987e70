"""jobs/calibrate.py through its real CLI on a small world: a versioned policy that meets its target, a report,
a clear failure for an unreachable target."""

from __future__ import annotations

import json

import pytest

from reasonrec.recommend.system import model_version
from reasonrec.recommend.config import RecommendConfig
from reasonrec.router.config import Policy, PolicyVersionError
from tests.recommend.conftest import build_world

pytestmark = pytest.mark.ray   # starts or joins Ray: the xdist group "ray" (tests/conftest.py)

GRIDS = ["tau_low=[0.0, 0.3, 0.6, 0.9]", "tau_tool=[0.0, 0.5]", "tau_conf=[0.0, 0.5, 1.0]"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Its own world: the job writes policy.json into the VLM folder."""
    return build_world(tmp_path_factory.mktemp("calibrate-world"), n_users=80)


def test_calibrates_saves_a_versioned_policy_and_a_report(job, world, tmp_path):
    out = tmp_path / "report"
    result = job("calibrate.py", f"recommend.dataset={world.dataset}", f"recommend.vlm_dir={world.vlm_dir}",
                 "recommend.device=cpu", "max_users=30", "batch_size=16", "target=0.5", f"out={out}", *GRIDS)
    assert "routed, calibrated" in result.stdout

    version = model_version(RecommendConfig(dataset=world.dataset, vlm_dir=world.vlm_dir))
    policy = Policy.load(world.vlm_dir, version)
    cal = policy.calibration
    assert cal.n_rows == 30 and cal.objective == "delegation_share" and cal.target == 0.5
    assert cal.achieved_share >= 0.5 and cal.grid_points == 4 * 2 * 3
    assert policy.tau_low in (0.0, 0.3, 0.6, 0.9) and policy.tau_high == 0.7 and policy.tau_low <= policy.tau_high
    with pytest.raises(PolicyVersionError, match="calibrated for model"):
        Policy.load(world.vlm_dir, "another@000000000000")

    report = json.loads((out / "calibration.json").read_text())
    assert report["model_version"] == version and report["rows"] == 30 and report["part"] == "valid"
    assert report["routed"]["hr5"] == pytest.approx(cal.valid_hr5)
    assert report["routed"]["share"] == pytest.approx(cal.achieved_share)
    assert set(report["routes"]) == {"tool", "vlm", "vlm+tools"}
    for route, row in report["routes"].items():
        assert 0.0 <= row["hr5"] <= 1.0 and row["latency"] > 0
        assert report["routed_minus_forced_hr5"][route] == pytest.approx(report["routed"]["hr5"] - row["hr5"])
    assert "routed, calibrated" in (out / "calibration.md").read_text()
    # The tool route's tool is the best on these validation rows, and policy.json says so.
    metrics = report["tool_metrics"]
    assert report["best_tool"] == max(metrics, key=lambda n: (metrics[n]["NDCG@5"], metrics[n]["HR@5"]))
    assert policy.best_tool["sequential"] == report["best_tool"]
    # The fusion weights were fit on the same rows (or their absence is said) and travel in policy.json.
    if "fusion" in report:
        assert policy.fusion is not None and policy.fusion.model_dump() == report["fusion"]
        assert set(policy.fusion.tools) == set(metrics) and 0 < policy.fusion.n_rows <= 30
        assert "VLM+tools fusion weights" in (out / "calibration.md").read_text()
    else:
        assert policy.fusion is None and "refined pass parsed" in report["fusion_skipped"]


def test_unreachable_target_exits_with_the_grids_best(job, world, tmp_path):
    result = job("calibrate.py", f"recommend.dataset={world.dataset}", f"recommend.vlm_dir={world.vlm_dir}",
                 "recommend.device=cpu", "max_users=8", "target=0.5", "tau_low=[0.0]", f"out={tmp_path}",
                 check=False)
    assert result.returncode == 1
    assert "no threshold setting reaches a delegation share of 0.500; the grid's best is 0.000" in result.stderr
    assert not (tmp_path / "calibration.json").exists()


def test_help_config(job):
    result = job("calibrate.py", "--help-config")
    assert "objective:" in result.stdout and "recommend.router.tau_high:" in result.stdout

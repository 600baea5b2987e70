"""benchmarks/score.py --quick on a tiny world: every mode and every pipeline ran on the same users, the
calibrated policy was the one applied, and the JSON's figures agree with each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from reasonrec.recommend.system import model_version
from reasonrec.recommend.calibration import part_requests
from reasonrec.recommend.config import RecommendConfig
from reasonrec.router.config import Policy
from tests.conftest import REPO_ROOT
from tests.recommend.conftest import build_world

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_quick_run_reports_every_mode_and_pipeline(tmp_path):
    world = build_world(tmp_path / "world", n_users=80)
    version = model_version(RecommendConfig(dataset=world.dataset, vlm_dir=world.vlm_dir))
    # A hand-set policy for these weights: rows with EH < 0.5 take the tool route (tool confidence is >= 0).
    Policy(model_version=version, tau_low=0.5, tau_high=0.9, tau_tool=0.0, tau_conf=0.0,
           best_tool={"sequential": "sasrec"}).save(world.vlm_dir)

    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "score.py"), "--quick", "--dataset", world.dataset,
         "--vlm-dir", world.vlm_dir, "--k", "5"],
        cwd=REPO_ROOT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, capture_output=True, text=True,
        timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])  # the JSON line comes last (Ray may print before it)

    assert out["model_version"] == version
    assert out["policy"]["source"] == "policy.json"
    assert (out["policy"]["tau_low"], out["policy"]["tau_tool"]) == (0.5, 0.0)

    ev = out["evaluation"]
    modes = ev["modes"]
    assert ev["users"] == 12 and list(modes) == ["tools", "vlm", "vlm+tools", "routed"]
    assert ev["metrics_same_every_round"]
    assert modes["tools"]["route_shares"]["tool"] == 1.0
    assert modes["vlm"]["route_shares"]["vlm"] == 1.0
    assert modes["vlm+tools"]["route_shares"]["vlm+tools"] == 1.0
    requests = part_requests(world.data, "test", 12, 0)  # the same seeded users the script evaluated
    assert modes["routed"]["route_shares"]["tool"] == pytest.approx(float(np.mean(requests.eh < 0.5)), abs=1e-4)
    for mode in modes.values():
        assert len(mode["seconds"]) == len(mode["cpu_seconds"]) == ev["repeats"] == 2  # quick: two rounds
        assert min(mode["seconds"]) == pytest.approx(12 / mode["users_per_second"], abs=1e-3)  # best round
        assert 0.0 <= mode["HR@5"] <= mode["HR@10"] <= 1.0
        assert sum(mode["route_shares"].values()) == pytest.approx(1.0, abs=1e-3)
        assert set(mode["answer_sources"]) == {r for r, share in mode["route_shares"].items() if share}
    # The control row on the same test users: the consulted tools stacked with weights fit on validation lists.
    stack = ev["learned_stack"]
    assert stack["members"] == ["sasrec", "bpr_mf"] and set(stack["weights"]) == set(stack["members"])
    assert stack["fit_on_valid_users"] == min(2000, len(world.data.valid_candidates))
    assert 0.0 <= stack["NDCG@5"] <= stack["HR@5"] <= 1.0
    ratios = ev["ratios"]
    speedup = modes["routed"]["users_per_second"] / modes["vlm+tools"]["users_per_second"]
    assert ratios["routed_vs_vlm_tools_users_per_second"] == pytest.approx(speedup, abs=1e-3)
    hr5_share = ratios["routed_vs_vlm_tools_hr5"]  # None when vlm+tools hits nothing (an untrained VLM may not)
    assert ev["goal"]["met"] == (hr5_share is not None and speedup >= 2.0 and hr5_share >= 0.97)

    pipe = out["pipeline"]
    runs = [pipe["ray_1x1"], pipe["ray_2x2"], pipe["single_process"]]
    assert (pipe["ray_1x1"]["vlm_actors"], pipe["ray_2x2"]["vlm_actors"]) == (1, 2)
    for run in runs:  # every user gets k rows: 24 users x 5, on each of the three
        assert (run["users"], run["rows"]) == (24, 120)
        assert run["rows_per_second"] > 0
    assert pipe["ratios"]["ray_2x2_vs_1x1_rows_per_second"] == pytest.approx(
        pipe["ray_2x2"]["rows_per_second"] / pipe["ray_1x1"]["rows_per_second"], rel=0.01)
    assert out["peak_rss_mib_driver"] > 0

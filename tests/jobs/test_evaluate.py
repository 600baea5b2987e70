"""jobs/evaluate.py through its real CLI on a small world: every file of the report, numbers that agree with
the recommendation path run separately on the same users, the quick mode, and a clear failure without a policy."""

from __future__ import annotations

import json

import pytest

from reasonrec.recommend.bundle import Bundle, model_version
from reasonrec.recommend.calibration import part_requests
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.evaluate import evaluate_requests
from tests.recommend.conftest import build_world

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("evaluate-world"), n_users=60)


def artifacts(world) -> list[str]:
    return [f"recommend.dataset={world.dataset}", f"recommend.vlm_dir={world.vlm_dir}", "recommend.device=cpu",
            "recommend.policy=config", "recommend.router.n_consult=1"]


def test_report_files_and_numbers_agree_with_the_recommendation_path(job, world, tmp_path):
    out = tmp_path / "report"
    job("evaluate.py", *artifacts(world), "max_users=10", "seed=1", "batch_size=8", f"out={out}")
    assert {p.name for p in out.iterdir()} == {"report.md", "report.json", "reliability.png", "cold_start.png",
                                               "a9.png"}
    for png in ("reliability.png", "cold_start.png", "a9.png"):
        assert (out / png).read_bytes()[:8] == PNG
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()

    cfg = RecommendConfig(dataset=world.dataset, vlm_dir=world.vlm_dir, device="cpu", policy="config",
                          router={"n_consult": 1})
    h = report["header"]
    assert h["model_version"] == model_version(cfg) and h["model_version"] in md
    assert (h["users"], h["users_total"], h["seed"]) == (10, len(world.data.test_candidates), 1)
    assert h["machine"]["cpus"] >= 1 and h["machine"]["torch"] and h["wall_seconds"] > 0
    assert h["files"][0].endswith("splits/loo/candidates/neg99/test.parquet")

    # The routed answer read from the one pass = the recommendation path run in routed mode on the same users.
    requests = part_requests(world.data, "test", 10, 1)
    bundle = Bundle(cfg)
    main = {r["model"]: r for r in report["main"]}
    for mode, name in (("routed", "ReasonRec (routed)"), ("vlm", "VLM-only")):
        expected = evaluate_requests(bundle, requests, mode, batch_size=8)
        assert main[name]["HR@5"] == pytest.approx(expected["HR@5"]), mode
        assert main[name]["NDCG@5"] == pytest.approx(expected["NDCG@5"]), mode
        assert main[name]["users"] == 10
        if mode == "routed":
            assert main[name]["route_shares"] == pytest.approx(expected["route_shares"])
            assert sum(share > 0 for share in expected["route_shares"].values()) >= 2   # a real mix of routes
    assert {"bpr_mf", "sasrec", "two_tower", "most_popular", "majority_vote"} <= set(main)
    assert all(r["users"] == 10 for r in main.values())

    a9 = {r["answer"]: r for r in report["a9"]}
    assert a9["VLM-only"]["HR@5"] == main["VLM-only"]["HR@5"]
    assert a9["ReasonRec (routed)"]["HR@5"] == main["ReasonRec (routed)"]["HR@5"]
    assert a9["best tool alone (sasrec)"]["HR@5"] == main["sasrec"]["HR@5"]     # the tool route is sasrec alone
    assert [r["selection"] for r in report["a7"]] == ["learned", "random", "oracle"]
    assert report["a7"][0]["always_HR@5"] == main["VLM+tools always"]["HR@5"]   # learned is the router's own mode
    cold = report["cold_start"]
    assert sum(g["users"] for g in cold["groups"]) == sum(a["users"] for a in cold["aggregates"]) == 10
    assert report["conflict"]["rows"] == 10
    forced = {r["answer"]: r for r in report["calibration"]}
    assert forced["forced vlm"]["accuracy"] == pytest.approx(main["VLM-only"]["HR@5"])   # hit@5 by default
    assert report["ctr"] == [] and "no CTR split" in md
    for section in ("Explanation generation", "Ablations", "Time shift", "Multi-domain"):
        assert section in md.split("## Not in this report yet")[1]


def test_quick_mode_and_flags(job, world, tmp_path):
    out = tmp_path / "quick"
    result = job("evaluate.py", "--dataset", world.dataset, "--out", str(out), "--quick", *artifacts(world),
                 "quick_users=4", "tool_selection=[]", "full_ranking=false")
    assert "VLM pass: 4/4 users" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["header"]["quick"] and report["header"]["users"] == 4
    assert report["a7"] == [] and "Not computed in this run" in (out / "report.md").read_text()
    assert "full_HR@5" not in report["main"][0]


def test_missing_policy_exits_with_the_reason(job, world, tmp_path):
    result = job("evaluate.py", *artifacts(world)[:-2], f"out={tmp_path}", check=False)
    assert result.returncode == 1 and "no policy; run jobs/calibrate.py" in result.stderr
    assert not (tmp_path / "report.md").exists()


def test_help_config(job):
    result = job("evaluate.py", "--help-config")
    assert "tool_selection:" in result.stdout and "recommend.router.tau_high:" in result.stdout

"""jobs/evaluate.py through its real CLI on a small world: every file of the report, numbers that agree with
the recommendation path run separately on the same users, the ablations table and Table A6, the time-shift table
(on the world's loo split under another name: the world has no temporal split), the quick mode, and clear failures
without a policy or an ablation's run.json, or with a time-shift VLM trained on another split."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.system import model_version, resolve
from reasonrec.recommend.calibration import part_requests
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.evaluate import evaluate_requests
from tests.conftest import REPO_ROOT
from tests.recommend.conftest import build_world

pytestmark = pytest.mark.ray   # starts or joins Ray: the xdist group "ray" (tests/conftest.py)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("evaluate-world"), n_users=60)


@pytest.fixture(scope="module")
def ablation_dir(world, tmp_path_factory) -> str:
    """The world's VLM copied with one training setting changed in run.json: the same weights, so its answers
    must equal the main model's, and the table must name exactly that setting."""
    folder = tmp_path_factory.mktemp("ablation") / "vlm-curriculum"
    shutil.copytree(world.vlm_dir, folder)
    run = json.loads((folder / "run.json").read_text())
    run["settings"]["instructions"]["curriculum"]["mode"] = "uniform"    # the world's VLM says 'curriculum'
    (folder / "run.json").write_text(json.dumps(run))
    return str(folder)


@pytest.fixture(scope="module")
def explain_vlm_dir(world, tmp_path_factory) -> str:
    """The world's VLM with the split it trained on stated in run.json, as jobs/train_vlm.py writes it (the
    explanation table refuses a VLM whose split it cannot check against the pairs')."""
    folder = tmp_path_factory.mktemp("explain") / "vlm"
    shutil.copytree(world.vlm_dir, folder)
    run = json.loads((folder / "run.json").read_text())
    run["settings"]["split"] = "loo"
    (folder / "run.json").write_text(json.dumps(run))
    return str(folder)


def artifacts(world) -> list[str]:
    return [f"recommend.dataset={world.dataset}", f"recommend.vlm_dir={world.vlm_dir}", "recommend.device=cpu",
            "recommend.policy=config", "recommend.router.n_consult=1"]


def test_report_files_and_numbers_agree_with_the_recommendation_path(job, world, ablation_dir, explain_vlm_dir,
                                                                    tmp_path):
    out = tmp_path / "report"
    job("evaluate.py", *artifacts(world), "max_users=10", "seed=1", "batch_size=8", f"out={out}",
        f"ablations=[{{name: uniform order, vlm_dir: {ablation_dir}}}]",
        f"explanation=[{{name: world reviews, dataset: {world.dataset}, vlm_dir: {explain_vlm_dir}, max_pairs: 12}}]",
        f"time_shift=[{{name: loo again, split: loo, vlm_dir: {explain_vlm_dir}, tools_dir: {world.tools_dir}}}]")
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
    bundle = Bundle(resolve(cfg))
    main = {r["model"]: r for r in report["main"]}
    for mode, name in (("routed", "ReasonRec (routed)"), ("vlm", "VLM-only")):
        expected = evaluate_requests(bundle, requests, mode, batch_size=8)
        assert main[name]["HR@5"] == pytest.approx(expected["HR@5"]), mode
        assert main[name]["NDCG@5"] == pytest.approx(expected["NDCG@5"]), mode
        assert main[name]["users"] == 10
        if mode == "routed":
            assert main[name]["route_shares"] == pytest.approx(expected["route_shares"])
            assert sum(share > 0 for share in expected["route_shares"].values()) >= 2   # a real mix of routes
        # Whose output answered, per route: the one pass and the live path agree, and the report says it.
        assert report["answer_sources"][name] == expected["answer_sources"], mode
    assert "Answer sources, per route taken" in md and "parsed VLM output" in md
    assert {"bpr_mf", "sasrec", "two_tower", "most_popular", "majority_vote", "learned_stack"} <= set(main)
    stack = main["learned_stack"]   # fit on validation lists only: as many as there are, up to stack_users
    assert stack["members"] == main["majority_vote"]["members"] and set(stack["weights"]) == set(stack["members"])
    assert stack["fit_on_valid_users"] == min(2000, len(world.data.valid_candidates))
    assert any(r["answer"] == "tool ensemble only (learned stack)" for r in report["a6"])
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
    not_yet = md.split("## Not in this report yet")[1]
    assert "Multi-domain" in not_yet
    assert "Ablations" not in not_yet and "A6" not in not_yet and "Explanation" not in not_yet
    assert "Time shift" not in not_yet

    # Explanation: baselines scored on 12 seeded pairs; the world's VLM is sequential-only, so its rows say so.
    (expl,) = report["explanation"]
    rows = {r["model"]: r for r in expl["rows"]}
    assert expl["name"] == "world reviews" and expl["max_pairs"] == 12
    assert rows["template"]["pairs"] == rows["retrieval"]["pairs"] == 12
    assert 0 <= rows["retrieval"]["BLEU-4"] <= 100 and 0 <= rows["retrieval"]["ROUGE-L"] <= 100
    assert "not trained on explanation" in rows["VLM-only"]["note"] and "BLEU-4" not in rows["ReasonRec"]
    assert "## Explanation generation (BLEU-4, ROUGE-L)" in md and "### world reviews" in md
    assert "explanation world reviews" in h["stage_seconds"]

    # Ablations: the main model's row, then the copy whose run.json differs in one setting (same weights).
    main_row, ablation = report["ablations"]
    assert main_row["name"] == "vlm (main model)" and main_row["differs"] == []
    assert (main_row["vlm_HR@5"], main_row["vlm+tools_HR@5"]) == (main["VLM-only"]["HR@5"],
                                                                 main["VLM+tools always"]["HR@5"])
    assert ablation["name"] == "uniform order" and ablation["vlm_dir"] == ablation_dir
    assert ablation["differs"] == ['instructions.curriculum.mode: "curriculum" -> "uniform"']
    assert ablation["model_version"] == "vlm-curriculum@" + h["model_version"].split("@")[1]
    for key in ("vlm_HR@5", "vlm_NDCG@5", "vlm+tools_HR@5", "vlm+tools_NDCG@5"):
        assert ablation[key] == pytest.approx(main_row[key]), key
    assert ablation["users"] == 10 and "ablation uniform order" in h["stage_seconds"]
    assert '| uniform order | `instructions.curriculum.mode: "curriculum" -> "uniform"` |' in md

    # Table A6: a view over the main table's rows.
    a6 = {r["answer"]: r for r in report["a6"]}
    assert a6["tool ensemble only (majority vote)"]["HR@5"] == main["majority_vote"]["HR@5"]
    assert a6["VLM without planning (tools always)"]["HR@5"] == main["VLM+tools always"]["HR@5"]
    assert a6["VLM-only"]["NDCG@5"] == main["VLM-only"]["NDCG@5"]
    assert a6["ReasonRec (routed)"]["route_shares"] == main["ReasonRec (routed)"]["route_shares"]
    assert "### Table A6" in md and "| tool ensemble only (majority vote) |" in md

    # Time shift: the same weights on the same split, users and router as the main table, through the entry's own
    # Bundle and ToolData, must give the main table's numbers row for row.
    (shift,) = report["time_shift"]
    assert (shift["name"], shift["split"], shift["rows_scored"], shift["users_scored"]) == ("loo again", "loo", 10, 10)
    assert shift["policy_source"] == "the router config (policy=config)"
    assert shift["summary"]["test_users"] == len(world.data.test_candidates)
    rows = {r["model"]: r for r in shift["rows"]}
    assert list(rows) == ["bpr_mf", "sasrec", "two_tower", "most_popular", "majority_vote", "VLM-only",
                          "VLM+tools always", "ReasonRec (routed)"]
    for model, row in rows.items():
        assert row["main_HR@5"] == main[model]["HR@5"] and row["main_NDCG@5"] == main[model]["NDCG@5"], model
        assert row["HR@5"] == pytest.approx(main[model]["HR@5"]), model
        assert row["NDCG@5"] == pytest.approx(main[model]["NDCG@5"]), model
    assert rows["ReasonRec (routed)"]["route_shares"] == pytest.approx(main["ReasonRec (routed)"]["route_shares"])
    assert "## Time shift (temporal cut-off)" in md and "| model | kind | loo HR@5 | loo NDCG@5 | loo HR@5 |" in md
    assert "time shift loo again" in h["stage_seconds"]


def test_quick_mode_and_flags(job, world, tmp_path):
    out = tmp_path / "quick"
    result = job("evaluate.py", "--dataset", world.dataset, "--out", str(out), "--quick", *artifacts(world),
                 "quick_users=4", "tool_selection=[]", "full_ranking=false")
    assert "VLM pass: 4/4 users" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["header"]["quick"] and report["header"]["users"] == 4
    assert report["a7"] == [] and "Not computed in this run" in (out / "report.md").read_text()
    assert "full_HR@5" not in report["main"][0]
    assert report["ablations"] == [] and "Not computed in this run (ablations: [])" in (out / "report.md").read_text()
    assert report["time_shift"] == [] and "Time shift (temporal cut-off)" in report["not_yet"]
    assert report["multi_domain"] == [] and report["by_domain"] == []
    assert "Multi-domain (Beauty + Sports merged)" in report["not_yet"]


def test_missing_ablation_run_exits_naming_the_file(job, world, tmp_path):
    result = job("evaluate.py", *artifacts(world), f"out={tmp_path}",
                 f"ablations=[{{name: gone, vlm_dir: {tmp_path / 'nowhere'}}}]", check=False)
    assert result.returncode == 1 and f"ablation 'gone': {tmp_path / 'nowhere' / 'run.json'} not found" in result.stderr
    assert not (tmp_path / "report.md").exists()


def refused_before_scoring(world, tmp_path, capsys, flag: str) -> str:
    """Run evaluate's recipe_main in-process (as the CLI runs it: a subprocess would add only interpreter start-up)
    with one more flag; it must exit 1 before any scoring and write no report. Returns stderr."""
    spec = importlib.util.spec_from_file_location("job_evaluate", REPO_ROOT / "jobs" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exited:
        module.recipe_main([*artifacts(world), f"out={tmp_path}", flag])
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert "VLM pass" not in captured.out and not (tmp_path / "report.md").exists()
    return captured.err


def test_time_shift_refuses_models_of_another_split_naming_run_json(world, explain_vlm_dir, tmp_path, capsys):
    """The world's loo VLM declared as a temporal entry: refused before anything is scored."""
    entry = f"{{name: shifted, split: temporal, vlm_dir: {explain_vlm_dir}, tools_dir: {world.tools_dir}}}"
    err = refused_before_scoring(world, tmp_path, capsys, f"time_shift=[{entry}]")
    assert f"{explain_vlm_dir}/run.json says the VLM trained on split 'loo', the entry scores split 'temporal'" in err


def test_multi_domain_on_a_data_set_that_is_not_a_merge_exits_naming_it(world, tmp_path, capsys):
    """A multi-domain entry on the world's single-domain data set: refused before anything is scored (the table's
    end-to-end run on a real merge is tests/jobs/test_evaluate_real.py, the id mapping tests/report/)."""
    entry = f"{{name: beauty, dataset: {world.dataset}, vlm_dir: {world.vlm_dir}}}"
    err = refused_before_scoring(world, tmp_path, capsys, f"multi_domain=[{entry}]")
    assert f"multi-domain 'beauty': {world.dataset} was merged from no domains (not a merged data set)" in err


def test_missing_policy_exits_with_the_reason(job, world, tmp_path):
    result = job("evaluate.py", *artifacts(world)[:-2], f"out={tmp_path}", check=False)
    assert result.returncode == 1 and "no policy; run jobs/calibrate.py" in result.stderr
    assert not (tmp_path / "report.md").exists()


def test_help_config(job):
    result = job("evaluate.py", "--help-config")
    assert "tool_selection:" in result.stdout and "recommend.router.tau_high:" in result.stdout


def test_time_shift_falls_back_to_the_router_config_when_its_vlm_has_no_policy(world, explain_vlm_dir, tmp_path):
    """A calibrated main run (a hand-set policy.json for the main VLM's version) beside a time-shift VLM without
    one: the entry runs with the router config and its policy source says why, the main run keeps its policy
    (setup only: no scoring, so this stays cheap)."""
    from reasonrec.router.config import Policy

    spec = importlib.util.spec_from_file_location("job_evaluate", REPO_ROOT / "jobs" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main_vlm = tmp_path / "main-vlm"
    shutil.copytree(world.vlm_dir, main_vlm)
    (main_vlm / "policy.json").unlink(missing_ok=True)
    assert not (Path(explain_vlm_dir) / "policy.json").exists()
    entry = f"{{name: shifted, split: loo, vlm_dir: {explain_vlm_dir}, tools_dir: {world.tools_dir}}}"
    cfg = module.parse([f"recommend.dataset={world.dataset}", f"recommend.vlm_dir={main_vlm}", "recommend.device=cpu",
                        "recommend.policy=calibrated", f"out={tmp_path / 'report'}", f"time_shift=[{entry}]"])
    version = model_version(cfg.recommend)
    Policy(model_version=version, tau_low=0.45, tau_tool=0.2).save(str(main_vlm))

    recipe = module.EvaluateRecipe(cfg, "test")
    recipe.setup()
    assert recipe.policy is not None and recipe.router.tau_low == 0.45          # the main run is calibrated
    [shifted] = recipe.time_shift
    assert shifted["router"] == cfg.recommend.router                            # the entry: the router config
    assert shifted["policy_source"].startswith("the router config (")
    assert f"{explain_vlm_dir}/policy.json: no policy" in shifted["policy_source"]

"""The settings diff that labels each ablation, the ablation rows and Table A6, from hand-made settings and
outcomes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from reasonrec.report.ablations import a6_rows, ablation_rows, flatten, settings_diff
from reasonrec.report.config import EvaluateConfig
from reasonrec.recommend.outcomes import Outcome, PartOutcomes

MAIN = {"dataset": "/data/ml", "out": "artifacts/vlm/main", "lr": 0.002, "tools": None, "betas": [0.9, 0.999],
        "instructions": {"templates": "mixture", "use_tools": True, "curriculum": {"mode": "uniform"}}}


def test_flatten_keeps_lists_whole():
    assert flatten(MAIN)["instructions.curriculum.mode"] == "uniform"
    assert flatten(MAIN)["betas"] == [0.9, 0.999] and "instructions" not in flatten(MAIN)


def test_settings_diff_names_each_changed_setting_and_ignores_output_paths():
    other = {**MAIN, "out": "artifacts/vlm/elsewhere",
             "instructions": {**MAIN["instructions"], "use_tools": False, "curriculum": {"mode": "curriculum"}}}
    assert settings_diff(MAIN, other) == ['instructions.curriculum.mode: "uniform" -> "curriculum"',
                                          "instructions.use_tools: true -> false"]
    assert settings_diff(MAIN, MAIN) == []
    changed = {**MAIN, "tools": ["sasrec"], "betas": [0.9, 0.99], "seed": 1}
    del changed["lr"]
    assert settings_diff(MAIN, changed) == ["betas: [0.9, 0.999] -> [0.9, 0.99]", "lr: 0.002 -> absent",
                                            "seed: absent -> 1", 'tools: null -> ["sasrec"]']


def test_settings_diff_treats_two_spellings_of_one_local_path_as_equal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert settings_diff({"dataset": str(tmp_path / "d")}, {"dataset": "d"}) == []
    assert settings_diff({"dataset": "s3://b/d"}, {"dataset": "s3://b/e"}) == ['dataset: "s3://b/d" -> "s3://b/e"']


def outcomes(vlm_rank, tools_rank, users=(0, 1, 2, 3)) -> PartOutcomes:
    n = len(users)

    def out(rank):
        return Outcome(np.asarray(rank), np.zeros(n, dtype=np.int64), np.full(n, 0.1))

    return PartOutcomes(user_idx=np.asarray(users), eh=np.array([0.1, 0.5, 0.9, 0.5]), targets=np.full(n, 7),
                        tool_confidence=np.full(n, 0.5), vlm_confidence=np.full(n, 0.5), parse_ok=np.ones(n, bool),
                        answers={"tool": out([0, 0, 9, 9]), "vlm": out(vlm_rank), "vlm+tools": out(tools_rank)},
                        best_tool="sasrec", vlm_failures={"vlm": 0})


def test_ablation_rows_main_first_then_each_ablation_with_its_diff():
    main = outcomes([0, 1, 9, 9], [0, 0, 0, 9])
    single = {**MAIN, "instructions": {**MAIN["instructions"], "templates": "single"}}
    rows = ablation_rows("ml", MAIN, main, {"single template": ("artifacts/vlm/st", single,
                                                                outcomes([9, 9, 9, 0], [0, 9, 9, 9]))})
    assert [r["name"] for r in rows] == ["ml (main model)", "single template"]
    assert rows[0]["differs"] == [] and rows[1]["differs"] == ['instructions.templates: "mixture" -> "single"']
    assert (rows[0]["vlm_HR@5"], rows[0]["vlm+tools_HR@5"]) == (0.5, 0.75)
    assert (rows[1]["vlm_HR@5"], rows[1]["vlm+tools_HR@5"]) == (0.25, 0.25)
    assert rows[1]["vlm_NDCG@5"] == pytest.approx(0.25)                       # one hit at rank 0 of four users
    assert rows[0]["vlm_NDCG@5"] == pytest.approx((1 + 1 / np.log2(3)) / 4)
    assert rows[1]["users"] == 4 and rows[1]["vlm_dir"] == "artifacts/vlm/st"


def test_ablation_rows_refuse_outcomes_on_other_users():
    with pytest.raises(ValueError, match="'other'.*other rows"):
        ablation_rows("ml", MAIN, outcomes([0] * 4, [0] * 4),
                      {"other": ("x", MAIN, outcomes([0] * 4, [0] * 4, users=(0, 1, 2, 5)))})


def test_a6_reads_the_main_tables_rows():
    main = outcomes([0, 1, 9, 9], [0, 0, 0, 9])
    vote = {"model": "majority_vote", "users": 4, "HR@5": 0.5, "NDCG@5": 0.4, "members": ["bpr_mf", "sasrec"]}
    routed = {"model": "ReasonRec (routed)", "users": 4, "HR@5": 0.75, "NDCG@5": 0.6,
              "route_shares": {"tool": 0.5, "vlm": 0.25, "vlm+tools": 0.25}}
    rows = a6_rows([{"model": "sasrec", "users": 4, "HR@5": 0.1, "NDCG@5": 0.1}, vote], main, routed)
    assert [r["answer"] for r in rows] == ["tool ensemble only (majority vote)", "VLM without planning (tools always)",
                                           "VLM-only", "ReasonRec (routed)"]
    assert [r["HR@5"] for r in rows] == [0.5, 0.75, 0.5, 0.75]
    assert "bpr_mf, sasrec" in rows[0]["what"] and rows[3]["route_shares"]["tool"] == 0.5
    alone = a6_rows([], main, routed)[0]                     # one ranking tool: no ensemble row numbers
    assert alone["HR@5"] is None and "fewer than two" in alone["what"]


def test_config_ablations_need_distinct_names():
    cfg = EvaluateConfig(ablations=[{"name": "no tools", "vlm_dir": "a"}, {"name": "single", "vlm_dir": "b"}])
    assert [a.vlm_dir for a in cfg.ablations] == ["a", "b"]
    with pytest.raises(ValueError, match="names must differ"):
        EvaluateConfig(ablations=[{"name": "x", "vlm_dir": "a"}, {"name": "x", "vlm_dir": "b"}])

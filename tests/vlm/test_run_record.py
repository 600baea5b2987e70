"""<out>/run.json: a rerun resumes only the run its folder holds, and a refusal names what changed."""

from __future__ import annotations

import json

import pytest

from reasonrec.vlm.run_record import earlier_run, flatten, record_run
from reasonrec.vlm.schedule import TrainPlan
from reasonrec.vlm.train_config import TrainVLMConfig


def plan(**changes) -> TrainPlan:
    settings = {"n_examples": 40, "num_workers": 2, "batch_size": 4, "grad_accum": 1, "max_steps": 5, "epochs": None,
                "warmup_ratio": 0.0, "checkpoint_every": 2, "seed": 0, "curriculum": "{}", **changes}
    return TrainPlan.build(**settings)


def test_flatten_names_every_leaf_by_its_dotted_key_and_keeps_empty_dicts_as_leaves():
    assert flatten({"a": {"b": 1, "c": {"d": [2]}}, "e": {}, "f": None}) == {"a.b": 1, "a.c.d": [2], "e": {},
                                                                            "f": None}


def test_a_new_run_is_recorded_and_resumes_with_only_resumable_changes(tmp_path):
    cfg = TrainVLMConfig(out=str(tmp_path), lr=1e-3)
    assert earlier_run(cfg) is None
    record_run(cfg, plan(), None)
    recorded = json.loads((tmp_path / "run.json").read_text())
    assert "out" not in recorded["settings"] and recorded["settings"]["lr"] == 1e-3
    resumed = earlier_run(cfg.model_copy(update={"log_every": 7, "max_failures": 3}))
    assert resumed == recorded
    record_run(cfg, plan(), resumed)  # the same plan: accepted, run.json untouched
    assert json.loads((tmp_path / "run.json").read_text()) == recorded


def test_a_changed_setting_or_plan_is_refused_by_name(tmp_path):
    cfg = TrainVLMConfig(out=str(tmp_path), lr=1e-3)
    record_run(cfg, plan(), None)
    with pytest.raises(SystemExit, match=r"other settings \(lr: 0.001 there, 0.002 now\)"):
        earlier_run(cfg.model_copy(update={"lr": 2e-3}))
    with pytest.raises(SystemExit, match=r"planned differently \(total_steps: 5 on disk, 6 now\)"):
        record_run(cfg, plan(max_steps=6), earlier_run(cfg))

"""Routing decisions exactly at the thresholds, unreadable values, malformed VLM output, and the Policy file."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from reasonrec.router.config import Calibration, Policy, PolicyVersionError, RouterConfig
from reasonrec.router.policy import decide, first_stage, read_generations, second_stage, vlm_confidence
from reasonrec.vlm.thought import format_thought

# Binary-exact thresholds, so "exactly at the threshold" means the same float.
CFG = RouterConfig(tau_low=0.25, tau_high=0.75, tau_tool=0.5, tau_conf=0.5)


def test_first_stage_boundaries():
    eh = np.array([0.2499, 0.25, 0.2499, 0.2499, 0.0, np.nan, 0.1])
    tool = np.array([0.5, 0.9, 0.4999, 1.0, 0.5, 0.9, np.nan])
    # EH == tau_low is not low (strict <); tool confidence == tau_tool is sure enough (>=); NaN is never low.
    assert first_stage(eh, tool, CFG).tolist() == [True, False, False, True, True, False, False]


def test_second_stage_boundaries():
    eh = np.array([0.75, 0.7501, 0.5, 0.5, 0.5, np.nan, 0.5])
    conf = np.array([0.9, 0.9, 0.5, 0.4999, 0.9, 0.9, np.nan])
    ok = np.array([True, True, True, True, False, True, True])
    # EH == tau_high is not high (strict >); confidence == tau_conf is not escalated (strict <);
    # a parse failure, an unknown EH and an unreadable confidence all escalate.
    assert second_stage(eh, conf, ok, CFG).tolist() == [False, True, False, True, True, True, True]


def test_decide_routes_and_risks_agree():
    eh = np.array([0.1, 0.1, 0.5, 0.5, 0.9])
    tool = np.array([0.9, 0.1, 0.9, 0.9, 0.9])
    conf = np.array([np.nan, 0.9, 0.9, 0.1, 0.9])   # row 0 never reached the VLM: its NaN is ignored
    ok = np.array([False, True, True, True, True])
    d = decide(eh, tool, conf, ok, CFG)
    assert d.route.tolist() == ["tool", "vlm", "vlm", "vlm+tools", "vlm+tools"]
    assert d.risk.tolist() == ["low", "medium", "medium", "high", "high"]
    assert d.low.tolist() == [True, False, False, False, False]
    assert d.rows("vlm+tools").tolist() == [3, 4]
    assert d.shares() == {"tool": 0.2, "vlm": 0.4, "vlm+tools": 0.4}


def test_high_evidence_horizon_is_never_the_tool_route():
    rng = np.random.default_rng(0)
    eh, tool = rng.random(1000), rng.random(1000)
    d = decide(eh, tool, np.ones(1000), np.ones(1000, dtype=bool), RouterConfig())
    assert (d.route[eh > 0.7] == "vlm+tools").all()
    assert (d.route[eh >= 0.3] != "tool").all()
    assert ((d.route == "tool") == ((eh < 0.3) & (tool >= 0.3))).all()


def test_malformed_vlm_output_is_consulted():
    good = format_thought(0.5, 0.85, []) + " <item_3>"
    texts = [good, "", "EH: 0.5 | Confidence: <conf_8> | Tools: <tool_none> | Answer: maybe", b"\xff\xfe", None,
             "EH: 0.5 | Confidence: 7 | Tools: <tool_none> | Answer: <item_1>"]
    conf, ok = read_generations(texts, "sequential")
    assert ok.tolist() == [True, False, False, False, False, False]
    assert conf[0] == pytest.approx(0.85) and np.isnan(conf[1])
    n = len(texts)
    d = decide(np.full(n, 0.5), np.zeros(n), conf, ok, CFG)   # medium EH: only the output decides
    assert d.route.tolist() == ["vlm"] + ["vlm+tools"] * (n - 1)


def test_vlm_confidence_sources():
    out = SimpleNamespace(confidence=np.array([0.2, 0.6, 0.4]), answer_prob=np.array([0.9, 0.1, 0.05]),
                          ctr_prob=np.array([0.5, 0.5, 0.2]))
    assert vlm_confidence(out, "sequential").tolist() == [0.2, 0.6, 0.4]
    assert vlm_confidence(out, ["direct", "direct", "ctr"], "answer_prob").tolist() == pytest.approx([0.9, 0.1, 0.8])
    with pytest.raises(ValueError, match="confidence source"):
        vlm_confidence(out, "direct", "logits")


def test_shape_errors_are_loud():
    with pytest.raises(ValueError, match="3 rows"):
        first_stage(np.zeros(3), np.zeros(2), CFG)
    with pytest.raises(ValueError, match="parse_ok"):
        second_stage(np.zeros(3), np.zeros(3), np.ones(2, dtype=bool), CFG)


def test_router_config_is_strict_and_described():
    for name, field in RouterConfig.model_fields.items():
        assert field.description, name
    for model in (Policy, Calibration):
        assert all(f.description for f in model.model_fields.values()), model.__name__
    with pytest.raises(ValidationError, match="tau_low"):
        RouterConfig(tau_low=0.8, tau_high=0.7)
    with pytest.raises(ValidationError):
        RouterConfig(tau_lo=0.2)
    with pytest.raises(ValidationError):
        RouterConfig(tool_selection="best")


def _policy(version: str = "vlm-2026-11-22") -> Policy:
    return Policy(model_version=version, tau_low=0.2, tau_high=0.8, tau_tool=0.45, tau_conf=0.35,
                  best_tool={"sequential": "gru4rec"},
                  calibration=Calibration(objective="delegation_share", target=0.3, n_rows=10, achieved_share=0.3,
                                          valid_hr5=0.5, expected_latency=12.0))


def test_policy_round_trip_and_version_check(tmp_path):
    policy = _policy()
    uri = policy.save(str(tmp_path / "model"))
    assert uri.endswith("model/policy.json")
    assert json.loads((tmp_path / "model" / "policy.json").read_text())["model_version"] == "vlm-2026-11-22"
    assert Policy.load(str(tmp_path / "model"), "vlm-2026-11-22") == policy
    with pytest.raises(PolicyVersionError, match="calibrated for model 'vlm-2026-11-22', not 'vlm-next'"):
        Policy.load(str(tmp_path / "model"), "vlm-next")
    with pytest.raises(FileNotFoundError, match="calibrate"):
        Policy.load(str(tmp_path / "other"), "vlm-2026-11-22")


def test_policy_apply_replaces_thresholds_only():
    cfg = RouterConfig(n_consult=3, tool_selection="random")
    applied = _policy().apply(cfg)
    assert (applied.tau_low, applied.tau_high, applied.tau_tool, applied.tau_conf) == (0.2, 0.8, 0.45, 0.35)
    assert applied.best_tool == {"sequential": "gru4rec"}
    assert (applied.n_consult, applied.tool_selection) == (3, "random")


def test_policy_on_s3(s3_endpoint):
    policy = _policy()
    policy.save("s3://rr-test/models/v1")
    assert Policy.load("s3://rr-test/models/v1", "vlm-2026-11-22") == policy
    with pytest.raises(PolicyVersionError):
        Policy.load("s3://rr-test/models/v1", "v2")

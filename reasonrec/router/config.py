"""The router's typed config, and the versioned `Policy` (calibrated thresholds) saved beside a VLM version.

A threshold is policy, not a hyper-parameter: it was picked for one model's confidence scale on one
validation run, so a policy carries the model_version it was calibrated for, and loading it for another
model is an error rather than a silent mismatch.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, model_validator

from reasonrec.config import StrictModel
from reasonrec.io import join, open_fs
from reasonrec.router.fusion import FusionWeights

POLICY_FILE = "policy.json"
ToolSelection = Literal["learned", "random", "oracle", "fixed"]
ConfidenceSource = Literal["stated", "answer_prob"]


class _Thresholds(StrictModel):
    """The four thresholds of the two-stage decision (see reasonrec.router.policy for the exact inequalities)."""

    tau_low: float = Field(0.3, ge=0, le=1, description=(
        "Evidence horizon strictly below this (and a sure tool) is low risk: the best tool answers alone."))
    tau_high: float = Field(0.7, ge=0, le=1, description=(
        "Evidence horizon strictly above this is high risk: tools are consulted and the VLM runs a second pass."))
    tau_tool: float = Field(0.3, ge=0, le=1, description=(
        "The best tool's confidence must be at least this (>=) for the tool route."))
    tau_conf: float = Field(0.3, ge=0, le=1, description=(
        "VLM confidence strictly below this escalates a VLM row to high risk (consult tools, second pass)."))
    confidence_source: ConfidenceSource = Field("stated", description=(
        "Which VLM reading is compared with tau_conf: 'stated' = the expected <conf_*> bin (VLMOutput.confidence); "
        "'answer_prob' = the top candidate's probability (max(p, 1 - p) of the click for CTR rows)."))

    @model_validator(mode="after")
    def _ordered(self):
        if self.tau_low > self.tau_high:
            raise ValueError(f"tau_low {self.tau_low} is above tau_high {self.tau_high}")
        return self


class RouterConfig(_Thresholds):
    """Risk-aware routing between the tools and the VLM (issue 5)."""

    best_tool: dict[str, str] = Field(
        default_factory=lambda: {"sequential": "sasrec", "direct": "lightgcn", "ctr": "dlrm"}, description=(
            "Per task, the tool that answers low-risk rows alone (a task without an entry, e.g. explanation, "
            "never takes the tool route)."))
    n_consult: int = Field(2, ge=1, description="Tools consulted for a high-risk row (at most; oracle may use fewer).")
    tool_selection: ToolSelection = Field("learned", description=(
        "Which tools a high-risk row consults: 'learned' = the VLM's top tool tokens (excluding <tool_none>); "
        "'random' = a seeded draw per (user, task); 'oracle' = tools whose top-k holds the target (evaluation "
        "only: needs targets); 'fixed' = consult_tools[task]."))
    consult_tools: dict[str, list[str]] = Field(
        default_factory=lambda: {"sequential": ["sasrec", "gru4rec"], "direct": ["lightgcn", "bpr_mf"],
                                 "ctr": ["dlrm", "dcnv2"]}, description=(
            "Per task, the tools consulted when tool_selection is 'fixed' (the first n_consult that are available)."))
    seed: int = Field(0, ge=0, description="Seeds the 'random' tool selection (per user and task).")
    fusion: FusionWeights | None = Field(None, description=(
        "High-risk ranking rows: weights of the refined VLM ranking and each pool tool's scores (fit on "
        "validation by jobs/calibrate.py, stored in policy.json); null = the refined VLM ranking alone."))


class Calibration(StrictModel):
    """Where a policy's thresholds came from: the objective, its target, and what the chosen point achieved."""

    objective: Literal["delegation_share", "latency_budget"] = Field(description=(
        "delegation_share: maximise HR@5 with at least `target` of the rows on the tool route; "
        "latency_budget: maximise HR@5 with expected latency per row at most `target`."))
    target: float = Field(description="The required delegation share, or the latency budget (same unit as latency).")
    split: str = Field("valid", description="The part the thresholds were picked on.")
    n_rows: int = Field(ge=0, description="Rows of that part used for the search.")
    achieved_share: float = Field(description="Share of rows on the tool route at the chosen thresholds.")
    valid_hr5: float = Field(description="Mean per-row hit@5 (the routed answer) at the chosen thresholds.")
    expected_latency: float = Field(description="Expected latency per row at the chosen thresholds.")
    route_shares: dict[str, float] = Field(default_factory=dict, description=(
        "Share of rows per route (tool, vlm, vlm+tools) at the chosen thresholds."))
    grid_points: int = Field(0, ge=0, description="Threshold combinations searched.")


class Policy(_Thresholds):
    """Calibrated thresholds for one model version, stored as <model_dir>/policy.json."""

    model_version: str = Field(min_length=1, description="The VLM version these thresholds were calibrated for.")
    best_tool: dict[str, str] = Field(default_factory=dict, description=(
        "The tool-route tool per task at calibration time (tau_tool is on that tool's confidence scale)."))
    fusion: FusionWeights | None = Field(None, description=(
        "VLM+tools fusion weights fit on the same validation rows (null = the refined VLM ranking alone)."))
    calibration: Calibration | None = Field(None, description="Provenance; None for a hand-set policy.")

    def apply(self, cfg: RouterConfig) -> RouterConfig:
        """cfg with this policy's thresholds (and its best tools, if recorded), validated."""
        update = self.model_dump(include={"tau_low", "tau_high", "tau_tool", "tau_conf", "confidence_source"})
        if self.best_tool:
            update["best_tool"] = dict(self.best_tool)
        if self.fusion is not None:
            update["fusion"] = self.fusion.model_dump()
        return RouterConfig.model_validate({**cfg.model_dump(), **update})

    def save(self, model_dir: str) -> str:
        """Write <model_dir>/policy.json (local path or s3://); returns the URI written."""
        uri = join(model_dir, POLICY_FILE)
        fs, path = open_fs(uri)
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "w") as f:
            f.write(json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
        return uri

    @classmethod
    def load(cls, model_dir: str, model_version: str) -> "Policy":
        """Read <model_dir>/policy.json; a policy calibrated for another model version is an error."""
        uri = join(model_dir, POLICY_FILE)
        fs, path = open_fs(uri)
        if not fs.exists(path):
            raise FileNotFoundError(f"{uri}: no policy; run jobs/calibrate.py for model {model_version!r}")
        with fs.open(path, "r") as f:
            policy = cls.model_validate(json.loads(f.read()))
        if policy.model_version != model_version:
            raise PolicyVersionError(
                f"{uri} was calibrated for model {policy.model_version!r}, not {model_version!r}: thresholds are "
                f"on that model's confidence scale; re-run jobs/calibrate.py for {model_version!r}")
        return policy


class PolicyVersionError(ValueError):
    """A policy file belongs to a different model version than the one being served or evaluated."""

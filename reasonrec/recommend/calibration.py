"""Calibration's config and its rows: the validation lists jobs/calibrate.py searches thresholds on, Ray-free.

The router's thresholds only decide which of three answers a row gets (the best tool's, the VLM's, the VLM's
after consulting tools), so each row is answered all three ways once by the one outcomes loop
(reasonrec.recommend.outcomes.collect: the same `score_tools` / `answer` code the nightly job and the Serve app
run, with the route forced) and its hit@5 and latency are kept per route. The same pass keeps what the vlm+tools
rows were merged from: the fusion weights are fit on it (`fusion_examples`) and the vlm+tools answers re-merged
with them (`with_fusion`), so the VLM runs once per row and route. A threshold setting is then scored from these
arrays without touching a model again (reasonrec.router.calibrate).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from reasonrec.config import StrictModel
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.requests import Requests, split_requests
from reasonrec.router.calibrate import DEFAULT_GRID
from reasonrec.tools.data import ToolData
from reasonrec.vlm.instructions import _evidence_array, read_split_evidence

if TYPE_CHECKING:   # the scoring stack (faiss, the VLM) is imported where a row is scored, not with the config
    from reasonrec.recommend.outcomes import PartOutcomes
    from reasonrec.router.fusion import FusionWeights



class CalibrateConfig(StrictModel):
    """jobs/calibrate.py: pick the router's thresholds on a split's validation lists and save them as policy."""

    config_section = "calibrate"   # its section in a sectioned file (configs/<dataset>.yaml)

    recommend: RecommendConfig = Field(default_factory=RecommendConfig, description=(
        "Artifacts and router (its `policy` is ignored: the search starts from the router section's thresholds)."))
    split: str = Field("loo", description="Ranking split whose fixed validation lists are scored.")
    negatives: int = Field(99, ge=1, description="Which fixed lists: 99 -> the 1+99 lists.")
    part: Literal["valid"] = Field("valid", description=(
        "Part the thresholds are picked on; only valid: the test part stays unseen until evaluation."))
    max_users: int | None = Field(None, ge=1, description="Score a seeded random subset of this many users; null = all.")
    seed: int = Field(0, ge=0, description="Seeds the user subset.")
    objective: Literal["delegation_share", "latency_budget"] = Field("delegation_share", description=(
        "delegation_share: best HR@5 with at least `target` of the rows on the tool route; latency_budget: best "
        "HR@5 with expected latency per row at most `target` seconds."))
    target: float = Field(0.3, ge=0, description="The delegation share (0-1) or the latency budget (seconds per row).")
    tau_low: list[float] = Field(default_factory=lambda: list(DEFAULT_GRID), description="Grid searched for tau_low.")
    tau_tool: list[float] = Field(default_factory=lambda: list(DEFAULT_GRID), description="Grid searched for tau_tool.")
    tau_conf: list[float] = Field(default_factory=lambda: list(DEFAULT_GRID), description="Grid searched for tau_conf.")
    tau_high: list[float] | None = Field(None, description="Grid searched for tau_high; null = keep recommend.router.tau_high.")
    batch_size: int = Field(64, ge=1, description="Rows per scoring batch (each runs the tools once, the VLM three times).")
    choose_best_tool: bool = Field(True, description=(
        "Make the tool route's tool the ranking tool with the best NDCG@5 on these validation rows (recorded in "
        "policy.json); false = recommend.router.best_tool as configured."))
    fit_fusion: bool = Field(True, description=(
        "Fit the VLM+tools fusion weights (refined VLM ranking + every pool tool) on these validation rows before "
        "the threshold search, and store them in policy.json; false = the refined VLM ranking alone."))
    fusion_regularisation: float = Field(1.0, gt=0, description="Inverse L2 strength C of the fusion's logistic regression.")
    out: str | None = Field(None, description="Where calibration.{json,md} go; null = <vlm_dir>/calibration.")

    @field_validator("tau_low", "tau_tool", "tau_conf", "tau_high")
    @classmethod
    def _grid(cls, values: list[float] | None) -> list[float] | None:
        if values is not None and (not values or any(not 0.0 <= v <= 1.0 for v in values)):
            raise ValueError(f"a threshold grid needs at least one value, all in [0, 1]; got {values}")
        return values

    @model_validator(mode="after")
    def _consistent(self):
        if self.recommend.vlm_dir is None:
            raise ValueError("recommend.vlm_dir is null: without a VLM every row takes the tool route, nothing to calibrate")
        if self.objective == "delegation_share" and self.target > 1:
            raise ValueError(f"target {self.target} is a delegation share: it must be in [0, 1]")
        if self.objective == "latency_budget" and self.target <= 0:
            raise ValueError("target is a latency budget in seconds per row: it must be > 0")
        return self


def tool_metrics(bundle, requests: Requests, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """HR@5 / NDCG@5 of each ranking tool of the bundle (best tool and consult pool) on `requests`."""
    from reasonrec.metrics.ranking import rank_of_target, ranking_metrics
    from reasonrec.recommend.outcomes import target_columns
    from reasonrec.recommend.stages import score_tools

    names = list(bundle.tools)
    ranks: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, len(requests), batch_size):
        req = requests.take(np.arange(start, min(start + batch_size, len(requests))))
        scores = score_tools(bundle, req, names).scores
        columns = target_columns(req.candidates, req.targets, req.user_idx)
        for t, name in enumerate(names):
            ranks[name].append(rank_of_target(scores[:, t], columns))
    return {name: {k: v for k, v in ranking_metrics(np.concatenate(r), (5,)).items() if k != "MRR@5"}
            for name, r in ranks.items()}


def fusion_examples(outcomes: PartOutcomes, requests: Requests):
    """(refined VLM scores [n, C], pool tool scores [n, T, C], pool names, candidates, targets) of every row whose
    refined pass parsed, from what collect(keep_refine_inputs=True) kept of the vlm+tools answers: what the
    fusion weights are fit on; None when there is none (no consult pool, or no refined pass parsed)."""
    kept = outcomes.refine_inputs
    if kept is None or not kept.parse_ok.any():
        return None
    rows = kept.rows[kept.parse_ok]
    return (kept.vlm_scores[kept.parse_ok], kept.tool_scores[kept.parse_ok], list(kept.names),
            requests.candidates[rows], requests.targets[rows])


def with_fusion(outcomes: PartOutcomes, requests: Requests, fusion: FusionWeights) -> PartOutcomes:
    """The outcomes with each parsed vlm+tools row re-merged under `fusion` (router.refine.merge, the code the
    routed answer runs), from the kept refine inputs: the same answer a second VLM+tools pass with these weights
    gives, without running the VLM again. Rows whose refined pass did not parse keep their fallback answer."""
    from reasonrec.recommend.outcomes import outcome_of
    from reasonrec.router.refine import merge

    kept = outcomes.refine_inputs
    if kept is None:
        raise ValueError("with_fusion needs the refine inputs: collect(..., keep_refine_inputs=True)")
    ok = kept.parse_ok
    rows, tool_scores = kept.rows[ok], kept.tool_scores[ok]
    req = requests.take(rows)
    merged = merge(kept.vlm_scores[ok], req.candidates, np.ones(len(rows), dtype=bool), tool_scores,
                   np.ones(tool_scores.shape[:2], dtype=bool), fusion, kept.names)
    before = outcomes.answers["vlm+tools"]
    fused = outcome_of(merged.scores, req, before.latency[rows])
    rank, top1 = before.rank.copy(), before.top1.copy()
    rank[rows], top1[rows] = fused.rank, fused.top1
    answers = {name: (replace(got, rank=rank, top1=top1) if got is before else got)
               for name, got in outcomes.answers.items()}
    return replace(outcomes, answers=answers)


def split_eh(data: ToolData) -> np.ndarray:
    """EH per user_idx from the split's evidence.parquet, with the VLM's training rule for unlisted users (1.0)."""
    return _evidence_array(read_split_evidence(data), data.n_users)


def part_requests(data: ToolData, part: str, max_users: int | None = None, seed: int = 0) -> Requests:
    """The fixed-list requests of `part`, or a seeded subset of max_users of them (in user order)."""
    requests = split_requests(data, part, split_eh(data))
    if max_users is None or max_users >= len(requests):
        return requests
    rows = np.sort(np.random.default_rng(seed).choice(len(requests), size=max_users, replace=False))
    return requests.take(rows)

"""The typed config of jobs/evaluate.py: which artifacts, which users, which tables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reasonrec.config import StrictModel
from reasonrec.recommend.config import RecommendConfig
from reasonrec.router.config import ToolSelection


class EvaluateConfig(StrictModel):
    """jobs/evaluate.py: the evaluation report (report.md, report.json, PNG plots) on a split's test part."""

    recommend: RecommendConfig = Field(default_factory=RecommendConfig, description=(
        "Artifacts and router, as jobs/score.py reads them; policy=calibrated uses <vlm_dir>/policy.json."))
    split: str = Field("loo", description="Ranking split whose fixed test lists are scored.")
    negatives: int = Field(99, ge=1, description="Which fixed lists: 99 -> the 1+99 lists.")
    ctr_split: str = Field("random", description="Split whose CTR rows the CTR table scores.")
    ctr_ratio: int = Field(4, ge=1, description="Which CTR rows: 4 -> 1 positive to 4 negatives.")
    max_users: int | None = Field(None, ge=1, description=(
        "Evaluate a seeded random subset of this many test users (every table, every row); null = all."))
    quick: bool = Field(False, description="CI mode: evaluate quick_users users (overrides max_users).")
    quick_users: int = Field(40, ge=1, description="Users evaluated in quick mode.")
    seed: int = Field(0, ge=0, description="Seeds the user subset (and is stated in the report).")
    tools: list[str] | None = Field(None, description=(
        "Tool folders of tools_dir in the tables; null = every trained tool there (ranking tools in the main "
        "table and the majority vote, CTR tools in the CTR table)."))
    full_ranking: bool = Field(True, description=(
        "Also rank each target against the whole catalogue (tools and most-popular; the VLM ranks lists only)."))
    tool_selection: list[ToolSelection] = Field(default_factory=lambda: ["learned", "random", "oracle"],
                                                description=(
        "Table A7: consult modes compared on VLM+tools-always (each costs one more refine pass per user); "
        "[] = skip the table."))
    calibration_hit: Literal[1, 5] = Field(5, description=(
        "Confidence calibration compares the stated confidence with hit@1 or hit@5 of the route's answer."))
    calibration_bins: int = Field(10, ge=2, description="Equal-width confidence bins of the reliability diagram.")
    batch_size: int = Field(64, ge=1, description="Rows per scoring batch (tools once, the VLM once per route).")
    out: str = Field("report", description="Folder for report.md, report.json and the PNGs (local or s3://).")

    @model_validator(mode="after")
    def _needs_vlm(self):
        if self.recommend.vlm_dir is None:
            raise ValueError("recommend.vlm_dir is null: the report compares the VLM routes with the tools")
        return self

    @property
    def users(self) -> int | None:
        """How many test users are evaluated (None = all)."""
        return self.quick_users if self.quick else self.max_users

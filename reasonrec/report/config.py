"""The typed config of jobs/evaluate.py: which artifacts, which users, which tables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reasonrec.config import StrictModel
from reasonrec.recommend.config import RecommendConfig
from reasonrec.router.config import ToolSelection


class Ablation(StrictModel):
    """One ablation VLM of the ablations table: answered on the main table's users with the main tools."""

    name: str = Field(description="Row label of the ablation (e.g. 'no tools'); what it changed is read from run.json.")
    vlm_dir: str = Field(description=(
        "Its jobs/train_vlm.py run folder (model/ + run.json); its settings are compared with the main VLM's."))


class ExplanationSet(StrictModel):
    """One explanation table: a data set with review text and a VLM trained there on the explanation task
    (the ranking data of the report may have no reviews: ml-latest-small has none)."""

    name: str = Field(description="Table label, e.g. 'All-Beauty reviews'.")
    dataset: str = Field(description="Prepared dataset with review text (local or s3://).")
    vlm_dir: str = Field(description=(
        "jobs/train_vlm.py run trained on this dataset's `split` with `explanation` among its tasks; a VLM "
        "without the task gets baseline rows only and a note."))
    split: str = Field("loo", description="The split the VLM trained on (its test part gives the pairs; checked).")
    negatives: int = Field(99, ge=1, description="The split's fixed ranking lists the VLM run used (1+N).")
    max_pairs: int | None = Field(None, ge=1, description=(
        "Seeded subset of this many test (user, item) pairs; null = every pair (quick mode: quick_users)."))
    drop_seen: bool = Field(False, description=(
        "Score only pairs whose reference is not verbatim one of the user's own training reviews (Amazon 2018 "
        "copies a review onto every variant of a product: most All-Beauty test references)."))
    max_new_tokens: int = Field(48, ge=1, le=512, description="Greedy tokens per generated explanation.")


class TimeShift(StrictModel):
    """One time-shift table: the system trained and tested on another split of the report's dataset (a temporal
    cut-off), its rows beside the main table's (reasonrec/report/time_shift.py)."""

    name: str = Field(description="Table label, e.g. 'temporal cut-off'.")
    split: str = Field("temporal", description=(
        "Ranking split of recommend.dataset whose fixed test lists are scored; the VLM's run.json and the tools' "
        "metrics.json / tool.json must name this split (checked)."))
    vlm_dir: str = Field(description=(
        "jobs/train_vlm.py run folder trained on `split` (its policy.json for its version, if any, routes)."))
    tools_dir: str | None = Field(None, description=(
        "Tools trained on `split` (every ranking tool there is a row); null = the tools_dir the VLM was trained with."))
    negatives: int = Field(99, ge=1, description="Which fixed lists of the split: 99 -> the 1+99 lists.")
    max_rows: int | None = Field(None, ge=1, description=(
        "Seeded subset of this many test rows (a temporal split has one row per test interaction, many per "
        "user); null = as the main table (max_users; quick mode always uses quick_users)."))


class MultiDomain(StrictModel):
    """One domain of the multi-domain table: the system trained on that domain alone, beside the report's system
    (trained on the merged data set) on the domain's own fixed test lists (reasonrec/report/multi_domain.py)."""

    name: str = Field(description=(
        "Domain name as in the merged data set's manifest `domains` (its ids are '<name>:<id>'), e.g. 'beauty'."))
    dataset: str = Field(description="The domain's own prepared dataset, the one the merge read (local or s3://).")
    vlm_dir: str = Field(description=(
        "jobs/train_vlm.py run trained on that dataset alone (its policy.json for its version, if any, routes)."))
    tools_dir: str | None = Field(None, description=(
        "Tools trained on that dataset (every ranking tool there is a row); null = the tools_dir the VLM was "
        "trained with."))
    negatives: int = Field(99, ge=1, description="Which fixed lists of the domain's split: 99 -> the 1+99 lists.")
    max_rows: int | None = Field(None, ge=1, description=(
        "Seeded subset of this many of the domain's test users; null = as the main table (max_users; quick mode "
        "always uses quick_users)."))


class EvaluateConfig(StrictModel):
    """jobs/evaluate.py: the evaluation report (report.md, report.json, PNG plots) on a split's test part."""

    config_section = "evaluate"   # its section in a sectioned file (configs/<dataset>.yaml)

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
    stack_users: int | None = Field(2000, ge=1, description=(
        "Seeded validation users whose fixed lists the learned tool stack is fit on (never a test list); null = "
        "every validation user; quick mode: quick_users."))
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
    ablations: list[Ablation] = Field(default_factory=list, description=(
        "Ablations table: each VLM answers the same users VLM-only and VLM+tools always (both answers for every "
        "user), beside the main model; [] = skip the table."))
    explanation: list[ExplanationSet] = Field(default_factory=list, description=(
        "Explanation tables (BLEU-4, ROUGE-L): template and retrieval baselines, VLM-only and ReasonRec per data "
        "set; [] = skip the section."))
    time_shift: list[TimeShift] = Field(default_factory=list, description=(
        "Time-shift tables: most-popular, the entry's ranking tools, majority vote, VLM-only, VLM+tools always and "
        "ReasonRec on another split's test rows, beside the main table's numbers; [] = skip the section."))
    multi_domain: list[MultiDomain] = Field(default_factory=list, description=(
        "Multi-domain tables (recommend.dataset must be a merge, configs/beauty-sports.yaml): per domain, "
        "its single-domain system and the report's merged system on the domain's own test lists; [] = skip."))
    batch_size: int = Field(64, ge=1, description="Rows per scoring batch (tools once, the VLM once per route).")
    out: str = Field("report", description="Folder for report.md, report.json and the PNGs (local or s3://).")

    @model_validator(mode="after")
    def _needs_vlm(self):
        if self.recommend.vlm_dir is None:
            raise ValueError("recommend.vlm_dir is null: the report compares the VLM routes with the tools")
        names = [a.name for a in self.ablations]
        if len(set(names)) != len(names):
            raise ValueError(f"ablations: names must differ, got {names}")
        names = [t.name for t in self.time_shift]
        if len(set(names)) != len(names):
            raise ValueError(f"time_shift: names must differ, got {names}")
        names = [m.name for m in self.multi_domain]
        if len(set(names)) != len(names):
            raise ValueError(f"multi_domain: names must differ, got {names}")
        return self

    @property
    def users(self) -> int | None:
        """How many test users are evaluated (None = all)."""
        return self.quick_users if self.quick else self.max_users

"""The typed config of the R-VIT instruction data: what a prompt shows, which instances consult tools, and the
order training reads them in. A YAML section of the VLM jobs validates against `InstructionConfig`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reasonrec.config import StrictModel
from reasonrec.vlm.records import TASKS, Task


class CurriculumConfig(StrictModel):
    """Risk levels from the evidence horizon and the phases of the training order (see vlm/curriculum.py)."""

    mode: Literal["curriculum", "uniform"] = Field("curriculum", description=(
        "curriculum: low-risk users first, then low+medium, then all with high-risk upsampled at the end; "
        "uniform: a seeded uniform order over all examples (the ablation)."))
    tau_low: float = Field(0.3, ge=0, le=1, description="Evidence horizon below this is low risk.")
    tau_high: float = Field(0.7, ge=0, le=1, description="Evidence horizon above this is high risk.")
    phase_ends: tuple[float, float] = Field((0.3, 0.6), description=(
        "Fractions of the training samples at which phase 1 (low risk only) and phase 2 (low + medium) end; "
        "after the second, every example is eligible."))
    upsample_after: float = Field(0.95, ge=0, le=1, description=(
        "Fraction of the samples after which high-risk examples are drawn `high_risk_upsample` times as often."))
    high_risk_upsample: int = Field(3, ge=1, description=(
        "Weight of a high-risk example in the final phase (an integer: each appears that many times per pass)."))

    @model_validator(mode="after")
    def _ordered(self) -> "CurriculumConfig":
        if self.tau_low > self.tau_high:
            raise ValueError(f"tau_low {self.tau_low} is above tau_high {self.tau_high}")
        first, second = self.phase_ends
        if not 0.0 <= first <= second <= self.upsample_after <= 1.0:
            raise ValueError("need 0 <= phase_ends[0] <= phase_ends[1] <= upsample_after <= 1, got "
                             f"phase_ends={self.phase_ends}, upsample_after={self.upsample_after}")
        return self


class InstructionConfig(StrictModel):
    """How instances are drawn from a split and rendered into prompts and teacher thoughts."""

    tasks: list[Task] = Field(default_factory=lambda: list(TASKS), description=(
        "Tasks to build: sequential, direct, ctr, explanation (explanation is skipped on data without reviews)."))
    templates: Literal["mixture", "single"] = Field("mixture", description=(
        "mixture: one of 10 paraphrases per example, chosen by a seeded hash; single: always template 0 "
        "(the ablation)."))
    max_images: int = Field(3, ge=0, description=(
        "Images shown: the most recent history items whose image_status is 'ok', at most this many."))
    max_history: int = Field(10, ge=0, description="Most recent history items listed (item token + short title).")
    title_max_chars: int = Field(24, ge=0, description="Titles are cut to this many characters (short prompts).")
    review_max_chars: int = Field(160, ge=1, description="Explanation answers (review text) are cut to this length.")
    targets_per_user: int = Field(2, ge=1, description=(
        "Train instances per user and task: targets slide back from the last train item, one item at a time."))
    cover_history: bool = Field(False, description=(
        "Also a train target every max_history items further back, so the prompts' histories together cover "
        "each user's whole train sequence (with history_loss_weight every train item is then a next-item label "
        "at least once, as in SASRec's training); false = only the targets_per_user most recent targets."))
    min_history: int = Field(1, ge=0, description="A train target needs at least this many items before it.")
    train_direct_negatives: int = Field(19, ge=1, description=(
        "Direct task, train part: seeded negatives (items the user never interacted with) beside the target."))
    direct_eval_negatives: int | None = Field(9, ge=1, description=(
        "Direct task, valid/test: use the fixed 1+N lists of splits/<split>/candidates/negN (prepare_data "
        "writes 9 and 99); null uses the lists the ToolData was loaded with. Short lists keep prompts short."))
    ctr_train_rows_per_user: int | None = Field(5, ge=1, description=(
        "CTR task, train part: a seeded sample of at most this many CTR rows per user; null keeps every row."))
    ctr_train_hide_ranking_holdout: bool = Field(True, description=(
        "CTR task, train part: CTR rows come from another split (random), whose train part holds most users' "
        "ranking valid/test items; drop those (user, item) rows and take those items out of the shown "
        "histories, so training on CTR never shows a ranking evaluation target."))
    thought_tools: Literal["usable", "consulted"] = Field("usable", description=(
        "What the teacher thought's Tools field lists on a prompt with tool hints: 'usable' = the shown tools "
        "whose (clean) top-k holds the target; 'consulted' = every tool the prompt shows, which is what the "
        "router's refine pass forces there (it cannot know usability), so the refined read stays in "
        "distribution."))
    use_tools: bool = Field(True, description=(
        "False is the 'no tools' ablation: no tool outputs in prompts and Tools: <tool_none> in every thought "
        "(tool labels, if tools are given, still set the teacher confidence and usable_tools)."))
    tool_k: int = Field(10, ge=1, description="A tool is usable for an instance when the target is in its top-k.")
    tool_top_m: int = Field(3, ge=1, description="Items of a consulted ranking tool's top list shown in the prompt.")
    exclude_history: bool = Field(True, description=(
        "Tools rank the catalogue minus the items already in the instance's history (as the evaluation does)."))
    consult_high_risk: bool = Field(True, description=(
        "Every high-risk instance (evidence horizon above curriculum.tau_high) shows tool outputs."))
    consult_share: float = Field(0.3, ge=0, le=1, description=(
        "Probability (seeded per instance) that any other instance shows tool outputs."))
    max_consulted: int = Field(2, ge=1, description="At most this many tools (a seeded choice) shown per instance.")
    noise_prob: float = Field(0.1, ge=0, le=1, description=(
        "Probability (seeded per instance and tool) that a consulted tool's shown output is replaced by random "
        "items, so the model learns tools are not authoritative; recorded in Instruction.noisy_tools."))
    confidence_tool_weight: float = Field(0.7, ge=0, le=1, description=(
        "Teacher confidence = w * (share of tools that get this instance right) + (1 - w) * (1 - EH); "
        "without tools it is 1 - EH."))
    score_batch_size: int = Field(256, ge=1, description="Queries per tool scoring batch (bounds memory).")
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig, description=(
        "Risk thresholds and the training order."))
    seed: int = Field(0, ge=0, description="Seeds every draw: template choice, negatives, consulting, noise.")

"""The typed config of the recommendation path: which artifacts, how many candidates, how the router decides.

One section shared by jobs/score.py, jobs/calibrate.py (and later evaluation and serving), so a threshold
calibrated by one is read by the others on the same scale.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reasonrec.config import StrictModel
from reasonrec.router.config import RouterConfig


class RecommendConfig(StrictModel):
    """Artifacts and knobs of one recommendation run (reasonrec/recommend/)."""

    dataset: str = Field("artifacts/datasets/synthetic", description=(
        "Prepared dataset (local or s3://): items, users, interactions, and the splits calibration reads."))
    vlm_dir: str | None = Field("artifacts/vlm/synthetic", description=(
        "A jobs/train_vlm.py run folder (model/ + run.json; policy.json beside them); null = no VLM, every row "
        "takes the tool route (the tools-only mode)."))
    tools_dir: str | None = Field(None, description=(
        "Trained tool checkpoints (jobs/train_tools.py out); null = the tools_dir the VLM was trained with."))
    consult_pool: list[str] | None = Field(None, description=(
        "Ranking tools a high-risk row may consult; null = the ranking tools the VLM has tokens for (or "
        "router.consult_tools.sequential when it has none)."))
    retrieval_tool: str = Field("two_tower", description=(
        "Tool whose item tower gives the faiss index and whose user tower gives the queries."))
    retrieval_index: Literal["flat", "ivf"] = Field("flat", description=(
        "faiss index: flat = exact inner product; ivf = inverted lists (large catalogues)."))
    n_candidates: int = Field(100, ge=1, description=(
        "Items retrieved per user (history excluded) that the tools and the VLM rank tonight."))
    vlm_batch_size: int = Field(16, ge=1, description="Instructions per VLM forward pass.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the VLM runs; auto = cuda if present.")
    policy: Literal["calibrated", "config"] = Field("calibrated", description=(
        "calibrated: thresholds from <vlm_dir>/policy.json written by jobs/calibrate.py for this model version "
        "(an error if it is missing or for another version); config: the router section's thresholds as given."))
    router: RouterConfig = Field(default_factory=RouterConfig, description=(
        "Thresholds, best tool and tool selection (thresholds are replaced by the policy when policy=calibrated)."))

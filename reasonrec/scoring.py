"""The nightly scoring job's typed config (jobs/score.py), Ray-free so tests and docs can read it."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from reasonrec.config import StrictModel
from reasonrec.io import join
from reasonrec.recommend.config import RecommendConfig


class Bootstrap(StrictModel):
    """How a fresh laptop gets the artifacts tonight's run needs; each step runs only when its output is absent
    (so the second run is cached). On a cluster, set them null: a missing artifact is then an error. Each
    *_config is one file passed to that job's --config; a sectioned file (configs/synthetic.yaml) serves all four,
    each job reading its own section."""

    prepare_config: str | None = Field("configs/synthetic.yaml", description=(
        "jobs/prepare_data.py config that writes recommend.dataset (null: a missing dataset is an error)."))
    train_tools_config: str | None = Field("configs/synthetic.yaml", description=(
        "jobs/train_tools.py config that writes the tools (null: missing tools are an error)."))
    train_tools_overrides: list[str] = Field(
        default_factory=lambda: ["tools=[sasrec,gru4rec,bpr_mf,lightgcn,two_tower,dlrm]"], description=(
            "key=value overrides for that job: the demo trains the ranking tools the router uses and DLRM, "
            "the CTR tool behind the Serve app's /v1/ctr (~6 s)."))
    train_vlm_config: str | None = Field("configs/synthetic.yaml", description=(
        "jobs/train_vlm.py config that writes recommend.vlm_dir (null: a missing VLM is an error)."))
    train_vlm_overrides: list[str] = Field(
        default_factory=lambda: ["instructions.tasks=[sequential]", "tools=[sasrec,gru4rec,bpr_mf,lightgcn,two_tower]",
                                 "max_steps=600", "checkpoint_every=600"],
        description=("key=value overrides for that job: a short sequential-only run for the demo (SASRec distilled "
                     "into it, as configs/synthetic.yaml's train_vlm section says)."))
    calibrate_config: str | None = Field("configs/synthetic.yaml", description=(
        "jobs/calibrate.py config that writes <vlm_dir>/policy.json (null: a missing policy is an error)."))
    calibrate_overrides: list[str] = Field(default_factory=list, description=(
        "key=value overrides for that job (none: every validation user; fusion weights and thresholds fit on 200 "
        "users left the demo's routed answer below the tools' vote, see benchmarks/RESULTS.md)."))


class ScoreConfig(StrictModel):
    """Nightly scoring (issue 5): every user of a prepared dataset, routed between the tools and the VLM."""

    config_section = "score"   # its section in a sectioned file (configs/<dataset>.yaml)

    recommend: RecommendConfig = Field(default_factory=RecommendConfig, description=(
        "Artifacts, candidates and router (reasonrec/recommend/config.py); shared with jobs/calibrate.py."))
    bootstrap: Bootstrap = Field(default_factory=Bootstrap, description="Jobs that make absent artifacts (demo).")
    users: str | None = Field(None, description=(
        "Parquet of tonight's users (columns user_id, user_idx; local or s3://): one file, or a folder of parts "
        "(read in name order; names starting with _ or . skipped), e.g. an upstream export; "
        "null = the dataset's users.parquet. Rows the dataset cannot score are quarantined, not dropped; a "
        "repeated user_id is scored once (first row) and counted as duplicate_users in the summary."))
    out: str = Field("artifacts/recommendations", description=(
        "Table root; each night lands in <out>/run_date=YYYY-MM-DD/ (local or s3://), its summary in "
        "<out>/_summaries/run_date=YYYY-MM-DD.json."))
    run_date: dt.date = Field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).date(), description=(
        "The night being scored (UTC date); rerunning a date replaces that partition atomically."))
    k: int = Field(10, ge=1, le=1000, description="Recommendations written per user (at most n_candidates).")
    mode: Literal["routed", "tools", "vlm", "vlm+tools"] = Field("routed", description=(
        "routed = the risk policy decides; the others force one route for every user (benchmarks, fallbacks)."))
    max_users: int | None = Field(None, ge=1, description="Score only the first N users (smoke runs); null = all.")
    eval_split: str | None = Field("loo", description=(
        "Split whose fixed 1+N test lists give tonight's offline check of the same pipeline (null: skip)."))
    eval_negatives: int = Field(99, ge=1, description="Which fixed lists the offline check reads: 99 -> 1+99.")
    eval_users: int | None = Field(None, ge=1, description=(
        "Seeded test users in the offline check; null = every test user (the demo's 845: 200 were too few to call)."))
    ray_address: str | None = Field(None, description=(
        "Ray cluster to join; null = the cluster of `ray job submit`, or a new local one."))
    read_blocks: int = Field(8, ge=1, description="Blocks the user table is split into (parallelism of the stream).")
    batch_size: int = Field(256, ge=1, description="Users per batch handed to the candidate and VLM actors.")
    candidate_actors: int = Field(1, ge=1, description="CPU actors retrieving candidates and scoring the tools.")
    candidate_cpus: float = Field(0.5, gt=0, description=(
        "CPUs per candidate actor; fractional on a 2-CPU laptop so read/write tasks keep a CPU."))
    vlm_actors: int = Field(1, ge=1, description="VLM actors (a fixed pool: one per GPU on a cluster).")
    vlm_cpus: float = Field(0.5, gt=0, description=(
        "CPUs per VLM actor; with candidate_cpus, leave a whole CPU for the read and write tasks (2-CPU laptop)."))
    vlm_gpus: float | Literal["auto"] = Field("auto", description=(
        "GPUs per VLM actor; auto = 1 when the cluster has GPUs, else 0 (CPU inference)."))
    write_cpus: float = Field(0.25, gt=0, description="CPUs per write task.")
    fuse_tool_night: bool = Field(True, description=(
        "A night with no VLM to run (mode=tools, or no vlm_dir) runs retrieval, the tools, the router and the "
        "write in one pool of candidate_actors CPU actors (actors/recommend.py ToolNightScorer); false: the "
        "split candidate -> router -> write pipeline of a VLM night (benchmarks compare the two)."))
    tool_night_cpus: float = Field(1.0, gt=0, description=(
        "CPUs per actor of a fused tool night; Ray gives each actor as many torch/faiss threads (OMP_NUM_THREADS, "
        "at least 1). candidate_actors x this must fit the cluster: nothing else runs beside them."))
    stale_staging_hours: float = Field(24.0, gt=0, description=(
        "Staging folders of OTHER nights untouched this long are a killed run's and are deleted at start "
        "(a killed attempt at tonight's partition is deleted whatever its age: one writer per partition)."))

    @property
    def users_uri(self) -> str:
        """Tonight's users file: `users`, or the dataset's users.parquet."""
        return self.users or join(self.recommend.dataset, "users.parquet")

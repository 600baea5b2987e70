"""Nightly scoring, the Ray-free part: the job's config and the recommender each scoring actor holds.

Today the recommender is the most-popular baseline (items the user has not interacted with, most popular
first). The tool zoo, the VLM and the router replace it behind the same `recommend(users)` call.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from pydantic import Field

from reasonrec.baselines import MostPopular
from reasonrec.config import StrictModel
from reasonrec.data.schema import Dataset
from reasonrec.metrics.ranking import seen_matrix

OUTPUT_COLUMNS = ["user_id", "rank", "item_id", "score", "route", "model_version", "run_date"]


class ScoreConfig(StrictModel):
    dataset: str = Field("artifacts/datasets/synthetic", description=(
        "Prepared dataset folder (local or s3://) whose users are scored."))
    prepare_config: str | None = Field("configs/prepare/synthetic.yaml", description=(
        "If `dataset` does not exist yet, prepare it first with this prepare_data config (null: fail)."))
    out: str = Field("artifacts/recommendations", description=(
        "Table root; each night lands in <out>/run_date=YYYY-MM-DD/ (local or s3://)."))
    run_date: dt.date = Field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).date(), description=(
        "The night being scored (UTC date); rerunning a date replaces that partition."))
    k: int = Field(10, ge=1, le=1000, description="Recommendations written per user.")
    eval_split: str = Field("loo", description=(
        "Split whose test candidates give tonight's offline check (HR/NDCG on 1+99); must be prepared."))
    eval_negatives: int = Field(99, ge=1, description="Which sampled protocol to check: 99 -> 1+99.")
    ray_address: str | None = Field(None, description=(
        "Ray cluster to join; null = the cluster of `ray job submit`, or a new local one."))
    num_scorers: int = Field(1, ge=1, description="Scoring actors in the Ray Data actor pool.")
    scorer_num_cpus: float = Field(0.5, gt=0, description=(
        "CPUs per scoring actor; fractional so read/write tasks keep a CPU on small machines."))
    batch_size: int = Field(512, ge=1, description="Users per batch handed to a scoring actor.")
    read_blocks: int = Field(4, ge=1, description=(
        "Blocks the user table is split into, so every actor in the pool gets work."))


class PopularityRecommender:
    """Most popular unseen items; fitted on every interaction the dataset has, since tonight scores the future."""

    route = "popularity"

    def __init__(self, dataset_root: str, k: int):
        ds = Dataset.load(dataset_root)
        self.k = k
        self.item_ids = ds.items["item_id"].to_numpy()
        self.model = MostPopular().fit(ds.interactions, ds.n_items)
        self.seen = seen_matrix(ds.interactions["user_idx"].to_numpy(), ds.interactions["item_idx"].to_numpy(),
                                ds.n_users, ds.n_items)

    def recommend(self, users: pd.DataFrame) -> pd.DataFrame:
        """users: user_id, user_idx -> one row per (user, rank) with rank starting at 1."""
        user_idx = users["user_idx"].to_numpy()
        top = self.model.topk(user_idx, self.k, exclude=self.seen)
        return pd.DataFrame({
            "user_id": np.repeat(users["user_id"].to_numpy(), self.k),
            "rank": np.tile(np.arange(1, self.k + 1, dtype=np.int32), len(users)),
            "item_id": self.item_ids[top.ravel()],
            "score": self.model.item_scores[top.ravel()].astype(np.float32),
        })

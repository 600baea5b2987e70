"""Ray Data callable class over `reasonrec.scoring`: one recommender loaded per actor, reused per batch."""

from __future__ import annotations

import pandas as pd

from reasonrec.scoring import PopularityRecommender


class RecommenderActor:
    """Loads the model once in the actor (Ray passes the class, never a pickled model)."""

    def __init__(self, dataset_root: str, k: int, model_version: str, run_date: str):
        self.recommender = PopularityRecommender(dataset_root, k)
        self.model_version = model_version
        self.run_date = run_date

    def __call__(self, users: pd.DataFrame) -> pd.DataFrame:
        rows = self.recommender.recommend(users)
        rows["route"] = self.recommender.route
        rows["model_version"] = self.model_version
        rows["run_date"] = self.run_date
        return rows

"""HR/NDCG of the recommendation path on a split's fixed lists: the same stages tonight runs, on requests
whose target is known (the nightly offline check, and the benchmark's quality column)."""

from __future__ import annotations

import numpy as np

from reasonrec.baselines import MostPopular
from reasonrec.metrics.ranking import rank_of_target, ranking_metrics
from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.requests import Requests
from reasonrec.recommend.stages import Mode, answer, score_tools
from reasonrec.router.policy import ROUTES


def target_columns(candidates: np.ndarray, targets: np.ndarray, user_idx: np.ndarray | None = None) -> np.ndarray:
    """Each row's target column in its candidate list; a list without its target is an error naming the user."""
    present = candidates == np.asarray(targets)[:, None]
    missing = np.flatnonzero(~present.any(axis=1))
    if len(missing):
        row = int(missing[0])
        who = f"user_idx {int(user_idx[row])}" if user_idx is not None else f"row {row}"
        raise ValueError(f"{who}: target item {int(targets[row])} is not among its candidates "
                         f"({len(missing)} row(s) like this)")
    return present.argmax(axis=1)


def evaluate_requests(bundle: Bundle, requests: Requests, mode: Mode = "routed", batch_size: int = 64,
                      ks: tuple[int, ...] = (5, 10)) -> dict:
    """Metrics of `mode` on `requests` (all with targets), route shares, and seconds per user."""
    ranks, routes, latency = [], [], []
    for start in range(0, len(requests), batch_size):
        batch = requests.take(np.arange(start, min(len(requests), start + batch_size)))
        result = answer(bundle, batch, score_tools(bundle, batch), mode)
        ranks.append(rank_of_target(result.scores, target_columns(batch.candidates, batch.targets, batch.user_idx)))
        routes.append(result.route)
        latency.append(result.latency)
    rank, route = np.concatenate(ranks), np.concatenate(routes)
    return {"mode": mode, "users": len(rank), **ranking_metrics(rank, ks),
            "route_shares": {r: float((route == r).mean()) for r in ROUTES},
            "seconds_per_user": float(np.concatenate(latency).mean())}


def popularity_metrics(train_interactions, n_items: int, requests: Requests, ks: tuple[int, ...] = (5, 10)) -> dict:
    """Most-popular (fitted on the split's train part) on the same lists: the floor a model must clear."""
    model = MostPopular().fit(train_interactions, n_items)
    scores = model.score(requests.user_idx, requests.candidates)
    return ranking_metrics(rank_of_target(scores, target_columns(requests.candidates, requests.targets,
                                                                 requests.user_idx)), ks)

"""HR/NDCG of the recommendation path on a split's fixed lists: the outcomes loop in one live mode, on requests
whose target is known (the nightly offline check, and the benchmark's quality column)."""

from __future__ import annotations


from reasonrec.baselines import MostPopular
from reasonrec.metrics.ranking import rank_of_target, ranking_metrics
from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.outcomes import ANSWER_OF_MODE, collect, target_columns
from reasonrec.recommend.requests import Requests
from reasonrec.recommend.stages import Mode
from reasonrec.recommend.system import System
from reasonrec.router.policy import ROUTES


def evaluate_requests(bundle: Bundle, requests: Requests, mode: Mode = "routed", batch_size: int = 64,
                      ks: tuple[int, ...] = (5, 10)) -> dict:
    """Metrics of `mode` on `requests` (all with targets), route shares, and seconds per user: one live pass of
    the outcomes loop (the router decides per row when mode is routed; no warm-up, as the nightly check runs)."""
    got = collect(bundle, requests, batch_size, modes=(mode,), warm_up=False).answers[ANSWER_OF_MODE[mode]]
    return {"mode": mode, "users": len(got.rank), **ranking_metrics(got.rank, ks),
            "route_shares": {r: float((got.route == r).mean()) for r in ROUTES},
            "answer_sources": got.sources(), "seconds_per_user": float(got.latency.mean())}


def popularity_metrics(train_interactions, n_items: int, requests: Requests, ks: tuple[int, ...] = (5, 10)) -> dict:
    """Most-popular (fitted on the split's train part) on the same lists: the floor a model must clear."""
    model = MostPopular().fit(train_interactions, n_items)
    scores = model.score(requests.user_idx, requests.candidates)
    return ranking_metrics(rank_of_target(scores, target_columns(requests.candidates, requests.targets,
                                                                 requests.user_idx)), ks)


def offline_check(system: System, split: str, negatives: int, users: int | None, mode: str) -> dict:
    """The nightly job's offline check: tonight's answer path on the split's fixed test lists (targets held out
    of every model's training), HR/NDCG of `mode` and of most-popular on the same seeded users (users None: all of them). jobs/score.py
    runs it as a Ray task beside the VLM actors."""
    from reasonrec.recommend.calibration import part_requests
    from reasonrec.tools.data import ToolData

    bundle = Bundle(system)
    data = ToolData.load(system.dataset, split, negatives)
    requests = part_requests(data, "test", max_users=users, seed=0)   # EH as calibration and training read it
    metrics = evaluate_requests(bundle, requests, mode)
    popular = popularity_metrics(data.split.train, data.n_items, requests)
    vote = vote_metrics(bundle, requests)
    return {"split": split, "protocol": f"1+{negatives}", **metrics,
            "most_popular": {k: popular[k] for k in ("HR@5", "NDCG@5")},
            **({"majority_vote": {k: vote[k] for k in ("HR@5", "NDCG@5")}} if vote else {})}


def vote_metrics(bundle: Bundle, requests: Requests, ks: tuple[int, ...] = (5, 10)) -> dict | None:
    """The majority vote of the system's ranking tools (best tool and consult pool: the mean of per-list
    z-scores, as the report's vote row) on the same lists: the ensemble the routed answer must beat; None with
    fewer than two tools."""
    from reasonrec.recommend.stages import score_tools
    from reasonrec.router.fusion import standardise

    names = list(bundle.tools)
    if len(names) < 2:
        return None
    scores = score_tools(bundle, requests, names).scores
    vote = standardise(scores.astype(float), (requests.candidates >= 0)[:, None, :]).mean(axis=1)
    vote = vote.copy()
    vote[requests.candidates < 0] = -float("inf")
    ranks = rank_of_target(vote, target_columns(requests.candidates, requests.targets, requests.user_idx))
    return ranking_metrics(ranks, ks)

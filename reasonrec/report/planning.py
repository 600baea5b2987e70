"""Planning tables from the one pass of outcomes: A9 (VLM alone vs VLM + tools always vs routed, with the
seconds each costs per user) and A7 (which tools a consulting row is shown: learned / random / oracle)."""

from __future__ import annotations

import numpy as np

from reasonrec.recommend.outcomes import Outcome, PartOutcomes
from reasonrec.report.ranking import metrics
from reasonrec.router.policy import ROUTES, Thresholds


def answer_row(name: str, outcome: Outcome, route: np.ndarray | None = None) -> dict:
    """HR/NDCG@5,10, mean seconds per user and (for a routed answer) the share of users on each route."""
    row = {"answer": name, "users": int(len(outcome.rank)), **metrics(outcome.rank),
           "seconds_per_user": float(outcome.latency.mean()) if len(outcome.rank) else 0.0}
    if route is not None:
        row["route_shares"] = {r: float((route == r).mean()) if len(route) else 0.0 for r in ROUTES}
    return row


def a9_rows(outcomes: PartOutcomes, thresholds: dict[str, Thresholds]) -> list[dict]:
    """Best tool alone (reference), VLM-only, VLM+tools always, and the routed answer under each named set of
    thresholds (e.g. the calibrated policy and the router config's)."""
    rows = [answer_row(f"best tool alone ({outcomes.best_tool})", outcomes.answers["tool"]),
            answer_row("VLM-only", outcomes.answers["vlm"]),
            answer_row("VLM+tools always", outcomes.answers["vlm+tools"])]
    for name, t in thresholds.items():
        outcome, route = outcomes.routed(t)
        rows.append(answer_row(name, outcome, route))
    return rows


def a7_rows(outcomes: PartOutcomes, thresholds: Thresholds) -> list[dict]:
    """Per consult mode collected ('select/<mode>'): VLM+tools always with that mode, and the routed answer
    whose consulting rows use it (the tool and VLM-only rows are the same for every mode)."""
    rows = []
    routed, route = outcomes.routed(thresholds)
    consult = route == "vlm+tools"
    for name, outcome in outcomes.answers.items():
        if not name.startswith("select/"):
            continue
        mixed = Outcome(np.where(consult, outcome.rank, routed.rank), np.where(consult, outcome.top1, routed.top1),
                        np.where(consult, outcome.latency, routed.latency))
        always, with_route = answer_row(name, outcome), answer_row(name, mixed)
        rows.append({"selection": name.split("/", 1)[1], "users": always["users"],
                     "always_HR@5": always["HR@5"], "always_NDCG@5": always["NDCG@5"],
                     "routed_HR@5": with_route["HR@5"], "routed_NDCG@5": with_route["NDCG@5"],
                     "consulting_users": int(consult.sum()), "seconds_per_user": always["seconds_per_user"]})
    return rows

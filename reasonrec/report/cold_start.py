"""Cold-start table: the test users cut into 10 groups by evidence horizon (EH), aggregated as in the paper
into Coldest (groups 1-3) / Medium (4-7) / Normal (8-10), with each group's HR@5 and how the router treated
it (delegated = answered by the best tool alone; consulted = the VLM consulted tools).

Group 1 holds the highest EH (thinnest, stalest evidence: the coldest users). Groups are cut by rank, not by
value, so they have equal sizes (+-1) even when many users share an EH; ties keep row order.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

N_GROUPS = 10
AGGREGATES: dict[str, tuple[int, ...]] = {"Coldest": (1, 2, 3), "Medium": (4, 5, 6, 7), "Normal": (8, 9, 10)}


def eh_groups(eh: np.ndarray, n_groups: int = N_GROUPS) -> np.ndarray:
    """int [n] group 1..n_groups, 1 = the highest EH; NaN EH (unknown evidence) counts as the coldest."""
    eh = np.asarray(eh, dtype=np.float64)
    order = np.argsort(-np.nan_to_num(eh, nan=np.inf), kind="stable")
    groups = np.empty(len(eh), dtype=np.int64)
    for g, rows in enumerate(np.array_split(order, n_groups), start=1):
        groups[rows] = g
    return groups


def cold_start_rows(eh: np.ndarray, hits: Mapping[str, np.ndarray], route: np.ndarray) -> dict[str, list[dict]]:
    """{"groups": one row per EH group, "aggregates": Coldest / Medium / Normal}. hits: answer name -> hit@5
    per row (e.g. best tool, VLM-only, ReasonRec); route: the routed answer's route per row."""
    groups = eh_groups(eh)
    eh = np.asarray(eh, dtype=np.float64)

    def row(name: str, mask: np.ndarray) -> dict:
        n = int(mask.sum())
        out = {"group": name, "users": n,
               "eh_min": float(np.nanmin(eh[mask])) if n else None, "eh_max": float(np.nanmax(eh[mask])) if n else None}
        for answer, hit in hits.items():
            out[f"HR@5/{answer}"] = float(np.asarray(hit)[mask].mean()) if n else None
        out["delegated"] = float((route[mask] == "tool").mean()) if n else None
        out["consulted"] = float((route[mask] == "vlm+tools").mean()) if n else None
        return out

    return {"groups": [row(str(g), groups == g) for g in range(1, N_GROUPS + 1)],
            "aggregates": [row(name, np.isin(groups, members)) for name, members in AGGREGATES.items()]}

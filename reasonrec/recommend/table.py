"""The published table: one row per (user, rank), its Arrow schema, and the quarantine rows beside it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

TABLE_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("rank", pa.int32(), nullable=False),             # 1 = best
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("score", pa.float32(), nullable=False),          # on the route's scale: tool score or VLM log-prob
    pa.field("route", pa.string(), nullable=False),           # tool | vlm | vlm+tools
    pa.field("risk", pa.string(), nullable=False),            # low | medium | high
    pa.field("evidence_horizon", pa.float32()),               # C(u) over every interaction (NaN = unknown)
    pa.field("confidence", pa.float32()),                     # the confidence the route was decided on
    pa.field("tools_consulted", pa.list_(pa.string()), nullable=False),
    pa.field("rationale", pa.string(), nullable=False),       # one line: why this route
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("run_date", pa.date32(), nullable=False),
])
TABLE_COLUMNS = [f.name for f in TABLE_SCHEMA]

QUARANTINE_SCHEMA = pa.schema([
    pa.field("user_id", pa.string()),
    pa.field("user_idx", pa.int64()),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("run_date", pa.date32(), nullable=False),
])


def table_rows(user_ids: np.ndarray, items: np.ndarray, scores: np.ndarray, route: np.ndarray, risk: np.ndarray,
               eh: np.ndarray, confidence: np.ndarray, tools_consulted: list[list[str]], rationale: list[str],
               item_ids: np.ndarray, model_version: str, run_date) -> pa.Table:
    """items / scores: [n, k] item_idx and scores, best first, -1 where a user has fewer than k; those slots
    are left out (a user with 3 candidates gets 3 rows, never a fake item)."""
    n, k = items.shape
    keep = items >= 0
    rows_per_user = keep.sum(axis=1)
    user = np.repeat(np.arange(n), rows_per_user)
    rank = (np.cumsum(keep, axis=1)[keep]).astype(np.int32)
    flat_items = items[keep]
    repeat = lambda values: np.repeat(np.asarray(values), rows_per_user)  # noqa: E731
    consulted = [tools_consulted[u] for u in user]
    return pa.table({
        "user_id": pa.array(np.asarray(user_ids).astype(str)[user], pa.string()),
        "rank": pa.array(rank, pa.int32()),
        "item_id": pa.array(np.asarray(item_ids).astype(str)[flat_items], pa.string()),
        "score": pa.array(scores[keep].astype(np.float32), pa.float32()),
        "route": pa.array(repeat(route).astype(str), pa.string()),
        "risk": pa.array(repeat(risk).astype(str), pa.string()),
        "evidence_horizon": pa.array(repeat(eh).astype(np.float32), pa.float32()),
        "confidence": pa.array(repeat(confidence).astype(np.float32), pa.float32()),
        "tools_consulted": pa.array(consulted, pa.list_(pa.string())),
        "rationale": pa.array([rationale[u] for u in user], pa.string()),
        "model_version": pa.array([model_version] * len(user), pa.string()),
        "run_date": pa.array([run_date] * len(user), pa.date32()),
    }, schema=TABLE_SCHEMA)


def quarantine_rows(user_ids: np.ndarray, user_idx: np.ndarray, reasons: np.ndarray, run_date) -> pa.Table:
    return pa.table({
        "user_id": pa.array(np.asarray(user_ids).astype(str), pa.string()),
        "user_idx": pa.array(np.asarray(user_idx, dtype=np.int64), pa.int64()),
        "reason": pa.array(np.asarray(reasons).astype(str), pa.string()),
        "run_date": pa.array([run_date] * len(user_ids), pa.date32()),
    }, schema=QUARANTINE_SCHEMA)

"""Ray Data callables over `reasonrec.recommend`: each actor builds one Bundle in its constructor (Ray gets
the class and plain config dicts, never a model instance) and reuses it for every batch.

    users ─▶ CandidateScorer (CPU pool) ─▶ RouterScorer (VLM pool, GPU when present) ─▶ write_batch (tasks)

Batches are dicts of numpy arrays; the candidate list and the best tool's candidate scores travel as fixed-shape
tensor columns ([n, C] and [n, T, C]).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reasonrec.io import join, open_fs
from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.requests import gather
from reasonrec.recommend.stages import ToolScores, answer, ranked, retrieve_candidates, score_tools
from reasonrec.recommend.table import TABLE_COLUMNS, quarantine_rows, table_rows
from reasonrec.router.config import RouterConfig

# Fault injection for the kill tests: "<stage>:<marker file>" makes the first call of that stage's actor
# that finds no marker create it and kill its own process (os._exit), once per marker.
CHAOS_ENV = "RR_CHAOS_KILL"


def _chaos(stage: str) -> None:
    spec = os.environ.get(CHAOS_ENV, "")
    if not spec.startswith(f"{stage}:"):
        return
    marker = Path(spec.split(":", 1)[1])
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return
    os._exit(17)


def _bundle(recommend: dict, router: dict, version: str) -> Bundle:
    return Bundle(RecommendConfig.model_validate(recommend), RouterConfig.model_validate(router), version)


class CandidateScorer:
    """Tonight's histories -> faiss candidates -> the best tool's scores. Users that cannot be scored (unknown
    user_idx, id mismatch) are marked with a quarantine reason and carried along, never dropped."""

    def __init__(self, recommend: dict, router: dict, version: str):
        self.bundle = _bundle(recommend, router, version)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        _chaos("candidates")
        b = self.bundle
        user_idx = np.asarray(batch["user_idx"], dtype=np.int64)
        user_id = np.asarray(batch["user_id"]).astype(str)
        reasons = quarantine_reasons(user_idx, user_id, b.user_ids)
        ok = np.flatnonzero(reasons == "")
        n, c, t = len(user_idx), b.cfg.n_candidates, 1   # the best tool; the consult pool only for high rows
        candidates = np.full((n, c), -1, dtype=np.int64)
        scores = np.full((n, t, c), -np.inf, dtype=np.float32)
        eh = np.full(n, np.nan)
        seconds = np.zeros(n)
        if len(ok):
            started = time.perf_counter()
            requests = retrieve_candidates(b, gather(b.everything, user_idx[ok], b.tonight_eh))
            tools = score_tools(b, requests)
            candidates[ok], scores[ok], eh[ok] = requests.candidates, tools.scores, requests.eh
            # Each user's share of retrieval + the best tool: the tool route's whole per-user cost.
            seconds[ok] = (time.perf_counter() - started) / len(ok)
            reasons[ok[(requests.candidates < 0).all(axis=1)]] = "no candidate item left to recommend"
        return {"user_id": user_id, "user_idx": user_idx, "quarantine": reasons, "eh": eh,
                "candidates": candidates, "tool_scores": scores, "tool_seconds": seconds}


def quarantine_reasons(user_idx: np.ndarray, user_id: np.ndarray, known_ids: np.ndarray) -> np.ndarray:
    """'' for a scorable user, else why not (the users table and the dataset disagree)."""
    reasons = np.full(len(user_idx), "", dtype=object)
    inside = (user_idx >= 0) & (user_idx < len(known_ids))
    reasons[~inside] = [f"user_idx {u} is outside the dataset's 0..{len(known_ids) - 1}" for u in user_idx[~inside]]
    rows = np.flatnonzero(inside)
    wrong = rows[known_ids[user_idx[rows]].astype(str) != user_id[rows]]
    reasons[wrong] = [f"user_id {user_id[r]!r} does not match user_idx {user_idx[r]}" for r in wrong]
    return reasons.astype(str)


class RouterScorer:
    """Route, run the VLM (first pass, refine for high risk), keep each user's top k: table rows out."""

    def __init__(self, recommend: dict, router: dict, version: str, k: int, run_date: str, mode: str = "routed"):
        from actors.metrics import RouteMetrics

        self.bundle = _bundle(recommend, router, version)
        self.k, self.mode, self.version = k, mode, version
        self.run_date = dt.date.fromisoformat(run_date)
        self.metrics = RouteMetrics()

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        _chaos("vlm")
        b = self.bundle
        reasons = np.asarray(batch["quarantine"]).astype(str)
        ok = np.flatnonzero(reasons == "")
        user_idx = np.asarray(batch["user_idx"], dtype=np.int64)
        requests = gather(b.everything, user_idx[ok], b.tonight_eh, np.asarray(batch["candidates"])[ok])
        tools = ToolScores(list(b.tools)[:1], np.asarray(batch["tool_scores"])[ok],
                           float(np.asarray(batch["tool_seconds"])[ok].sum()))
        result = answer(b, requests, tools, self.mode)
        self.metrics.record(result)
        items, scores = ranked(result, requests.candidates, self.k)
        table = table_rows(np.asarray(batch["user_id"])[ok], items, scores, result.route, result.risk, requests.eh,
                           result.confidence, result.tools_consulted, result.rationale, b.item_ids, self.version,
                           self.run_date)
        per_user = {"user_idx": user_idx[ok], "latency": result.latency, "source": result.source.astype(str)}
        keep = items >= 0
        extra = {name: pa.array(np.repeat(values, keep.sum(axis=1))) for name, values in per_user.items()}
        table = table.append_column("quarantine", pa.nulls(table.num_rows, pa.string()))
        for name, values in extra.items():
            table = table.append_column(name, values)
        bad = np.flatnonzero(reasons != "")
        if len(bad):
            held = quarantine_rows(np.asarray(batch["user_id"])[bad], user_idx[bad], reasons[bad],
                                   self.run_date)
            table = pa.concat_tables([table, _quarantine_as_rows(held, table.schema, self.version)])
        return table


def _quarantine_as_rows(held: pa.Table, schema: pa.Schema, version: str) -> pa.Table:
    """Quarantined users as one placeholder row each (rank 0) so they reach the writer in the same stream."""
    n = held.num_rows
    columns = {}
    for field in schema:
        if field.name == "user_id":
            columns["user_id"] = held["user_id"]
        elif field.name == "user_idx":
            columns["user_idx"] = held["user_idx"]
        elif field.name == "quarantine":
            columns["quarantine"] = held["reason"]
        elif field.name == "run_date":
            columns["run_date"] = held["run_date"]
        elif field.name == "rank":
            columns["rank"] = pa.array(np.zeros(n, dtype=np.int32))
        elif field.name == "model_version":
            columns["model_version"] = pa.array([version] * n, pa.string())
        elif field.name in ("item_id", "route", "risk", "rationale", "source"):
            columns[field.name] = pa.array([""] * n, pa.string())
        elif field.name == "tools_consulted":
            columns[field.name] = pa.array([[]] * n, field.type)
        else:
            columns[field.name] = pa.nulls(n, field.type)
    return pa.table(columns, schema=schema)


def write_batch(batch: pa.Table, staging: str) -> pa.Table:
    """Write a batch's table rows (and its quarantined users) under `staging`, named by its first user and size
    so a retried task overwrites its own file instead of adding a second copy. Returns one stats row."""
    quarantined = pc.is_valid(batch["quarantine"])
    rows = batch.filter(pc.invert(quarantined))
    held = batch.filter(quarantined)
    users = pc.unique(batch["user_idx"])
    name = f"part-{pc.min(users).as_py():010d}-{len(users):06d}.parquet" if len(users) else None
    fs, root = open_fs(staging)
    if name is not None and rows.num_rows:
        with fs.open(join(root, name), "wb") as f:
            pq.write_table(rows.select(TABLE_COLUMNS), f)
    if name is not None and held.num_rows:
        fs.makedirs(join(root, "_quarantine"), exist_ok=True)
        table = pa.table({"user_id": held["user_id"], "user_idx": held["user_idx"], "reason": held["quarantine"],
                          "run_date": held["run_date"]})
        with fs.open(join(root, "_quarantine", name), "wb") as f:
            pq.write_table(table, f)
    first = rows.filter(pc.equal(rows["rank"], 1))
    return pa.table({
        "file": [name or ""], "rows": [rows.num_rows], "users": [first.num_rows], "quarantined": [held.num_rows],
        "routes": [first["route"].to_pylist()], "latency": [first["latency"].to_pylist()],
        "sources": [first["source"].to_pylist()],
    })

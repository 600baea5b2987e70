"""Ray Data callables over `reasonrec.recommend`: each actor builds one Bundle in its constructor (Ray gets
the class and plain config dicts, never a model instance) and reuses it for every batch.

    users ─▶ CandidateScorer (CPU pool) ─▶ RouterScorer (VLM pool, GPU when present) ─▶ write_batch (tasks)

The candidate actor reads numpy batches of users and hands on Arrow tables: each user's history (list<int64>,
CSR on the wire) and EH, the candidate list and the best tool's candidate scores as fixed-size list columns
([n] x C and [n] x T*C). No actor holds the data set's interactions: histories come from
<dataset>/tonight/histories.parquet, a batch's row groups at a time (reasonrec/recommend/histories.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reasonrec.io import join, open_fs
from reasonrec.recommend.table import TABLE_COLUMNS, quarantine_rows, table_rows

# The scoring stack (torch, faiss, the tools, the VLM) is imported by the actors' constructors, not here: a
# write task's fresh worker imports this module to unpickle write_batch, and on 2 busy cores importing torch
# there made each write task wait ~30 s to start (Ray Data's average_task_scheduling_time_s).

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


def _bundle(recommend: dict, router: dict, version: str):
    from reasonrec.recommend.bundle import Bundle
    from reasonrec.recommend.config import RecommendConfig
    from reasonrec.router.config import RouterConfig

    return Bundle(RecommendConfig.model_validate(recommend), RouterConfig.model_validate(router), version)


class CandidateScorer:
    """Tonight's histories (read for the batch from <dataset>/tonight/histories.parquet) -> faiss candidates ->
    the best tool's scores. Users that cannot be scored (unknown user_idx, id mismatch) are marked with a
    quarantine reason and carried along, never dropped. Each row leaves with its history and EH, so the next
    stage needs no lookup of its own."""

    def __init__(self, recommend: dict, router: dict, version: str):
        from reasonrec.recommend.histories import HistoryReader

        self.bundle = _bundle(recommend, router, version)
        self.histories = HistoryReader(self.bundle.cfg.dataset)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        from reasonrec.recommend.requests import Requests
        from reasonrec.recommend.stages import retrieve_candidates, score_tools

        _chaos("candidates")
        b = self.bundle
        user_idx = np.asarray(batch["user_idx"], dtype=np.int64)
        user_id = np.asarray(batch["user_id"]).astype(str)
        n, c, t = len(user_idx), b.cfg.n_candidates, 1   # the best tool; the consult pool only for high rows
        inside = (user_idx >= 0) & (user_idx < self.histories.n_users)
        known = self.histories.read(user_idx[inside])
        reasons = quarantine_reasons(user_idx, user_id, self.histories.n_users, known.user_id)
        # Rows outside the data set get an empty history, so the rows inside keep the file's CSR items as read.
        lengths = np.zeros(n, dtype=np.int64)
        lengths[inside] = np.diff(known.offsets)
        eh = np.full(n, np.nan)
        eh[inside] = known.eh
        everyone = Requests(user_idx, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), known.items, eh,
                            np.zeros((n, 0), dtype=np.int64), np.full(n, -1, dtype=np.int64))
        ok = np.flatnonzero(reasons == "")
        candidates = np.full((n, c), -1, dtype=np.int64)
        scores = np.full((n, t, c), -np.inf, dtype=np.float32)
        seconds = np.zeros(n)
        if len(ok):
            started = time.perf_counter()
            requests = retrieve_candidates(b, everyone if len(ok) == n else everyone.take(ok))
            tools = score_tools(b, requests)
            candidates[ok], scores[ok] = requests.candidates, tools.scores
            # Each user's share of retrieval + the best tool: the tool route's whole per-user cost.
            seconds[ok] = (time.perf_counter() - started) / len(ok)
            reasons[ok[(requests.candidates < 0).all(axis=1)]] = "no candidate item left to recommend"
        eh[reasons != ""] = np.nan
        return pa.table({
            "user_id": pa.array(user_id, pa.string()), "user_idx": pa.array(user_idx), "quarantine": pa.array(reasons),
            "eh": pa.array(eh), "history": pa.ListArray.from_arrays(pa.array(everyone.offsets.astype(np.int32)),
                                                                    pa.array(everyone.items, pa.int64())),
            "candidates": _rows_of(candidates), "tool_scores": _rows_of(scores.reshape(n, t * c)),
            "tool_seconds": pa.array(seconds)})


def _rows_of(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """A [n, w] matrix as a fixed-size list column (Arrow's own type: no tensor extension between stages)."""
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    return array.flatten().to_numpy().reshape(len(array), array.type.list_size)


def _requests(batch: pa.Table):
    """The batch's rows as Requests: the history column is already CSR, its offsets and values are the arrays."""
    from reasonrec.recommend.requests import Requests

    history = batch["history"].combine_chunks()
    offsets = history.offsets.to_numpy().astype(np.int64)
    return Requests(batch["user_idx"].to_numpy().astype(np.int64), offsets - offsets[0],
                    history.flatten().to_numpy().astype(np.int64), batch["eh"].to_numpy().astype(np.float64),
                    _matrix(batch["candidates"]).astype(np.int64), np.full(batch.num_rows, -1, dtype=np.int64))


def quarantine_reasons(user_idx: np.ndarray, user_id: np.ndarray, n_users: int, known_ids: np.ndarray) -> np.ndarray:
    """'' for a scorable user, else why not (the users table and the dataset disagree). known_ids: the data set's
    user_id of every row whose user_idx is inside 0..n_users-1, in row order."""
    reasons = np.full(len(user_idx), "", dtype=object)
    inside = (user_idx >= 0) & (user_idx < n_users)
    reasons[~inside] = [f"user_idx {u} is outside the dataset's 0..{n_users - 1}" for u in user_idx[~inside]]
    rows = np.flatnonzero(inside)
    wrong = rows[np.asarray(known_ids).astype(str) != user_id[rows]]
    reasons[wrong] = [f"user_id {user_id[r]!r} does not match user_idx {user_idx[r]}" for r in wrong]
    return reasons.astype(str)


class RouterScorer:
    """Route, run the VLM (first pass, refine for high risk), keep each user's top k: table rows out. Histories
    and EH come in the batch (pyarrow: the history column is read as CSR without copying row by row)."""

    def __init__(self, recommend: dict, router: dict, version: str, k: int, run_date: str, mode: str = "routed"):
        from actors.metrics import RouteMetrics

        self.bundle = _bundle(recommend, router, version)
        self.k, self.mode, self.version = k, mode, version
        self.run_date = dt.date.fromisoformat(run_date)
        self.metrics = RouteMetrics()

    def __call__(self, batch: pa.Table) -> pa.Table:
        from reasonrec.recommend.stages import ToolScores, answer, ranked

        _chaos("vlm")
        b = self.bundle
        reasons = batch["quarantine"].to_numpy(zero_copy_only=False).astype(str)
        ok = np.flatnonzero(reasons == "")
        user_idx = batch["user_idx"].to_numpy().astype(np.int64)
        user_id = batch["user_id"].to_numpy(zero_copy_only=False).astype(str)
        good = batch.take(pa.array(ok, pa.int64()))
        requests = _requests(good)
        width = requests.candidates.shape[1]
        n_tools = batch.schema.field("tool_scores").type.list_size // max(width, 1)
        tools = ToolScores(list(b.tools)[:1], _matrix(good["tool_scores"]).reshape(len(ok), n_tools, width),
                           float(good["tool_seconds"].to_numpy().sum()))
        result = answer(b, requests, tools, self.mode)
        self.metrics.record(result)
        items, scores = ranked(result, requests.candidates, self.k)
        table = table_rows(user_id[ok], items, scores, result.route, result.risk, requests.eh,
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
            held = quarantine_rows(user_id[bad], user_idx[bad], reasons[bad], self.run_date)
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


def part_name(user_ids: pa.ChunkedArray) -> str | None:
    """A part's file name from the users it holds: the same batch (a retried task) overwrites its own file
    instead of adding a second copy, and two different batches never share a name, whatever their user_idx
    (many unknown users share one). A night's user_ids are distinct, so distinct batches hold distinct sets."""
    users = sorted(set(user_ids.to_pylist()))
    if not users:
        return None
    digest = hashlib.sha256("\0".join(users).encode()).hexdigest()[:20]
    return f"part-{digest}-{len(users):06d}.parquet"


def write_batch(batch: pa.Table, staging: str) -> pa.Table:
    """Write a batch's table rows (and its quarantined users) under `staging` as `part_name` of its users.
    Returns one stats row; the job then checks the staging folder itself (reasonrec/recommend/completeness.py)."""
    quarantined = pc.is_valid(batch["quarantine"])
    rows = batch.filter(pc.invert(quarantined))
    held = batch.filter(quarantined)
    name = part_name(batch["user_id"])
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

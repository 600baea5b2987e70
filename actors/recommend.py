"""The nightly job's Ray code over `reasonrec.recommend`: the Ray Data pipeline (`score_night`), its callables and
the offline check as a Ray task (`offline_check_on_ray`). Each actor builds one Bundle from the resolved System in
its constructor (Ray ships the System, a small frozen value, never a model) and reuses it for every batch.

    users ─▶ CandidateScorer (CPU pool) ─▶ RouterScorer (VLM pool, GPU when present) ─▶ write_batch (tasks)
                  └─▶ <staging>/_quarantine/ (users that cannot be scored, written where they are found)

A night with no VLM to run (mode=tools, or no VLM run) has nothing to split the pools for: one CPU pool of
ToolNightScorer actors runs the same three callables on each batch (`fuse_tool_night`, issue 19 point 4).

The candidate actor reads numpy batches of users and hands on Arrow tables of the users it could score
(reasonrec/recommend/arrow.py); the ones it cannot score leave the stream there, as their own quarantine part
named from their user ids (a retried batch overwrites its own file). No actor holds the data set's
interactions: histories come from <dataset>/tonight/histories.parquet, a batch's row groups at a time
(reasonrec/recommend/histories.py).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reasonrec.recommend.parts import write_quarantine_part, write_table_part
from reasonrec.recommend.table import quarantine_rows, table_rows

if TYPE_CHECKING:
    from reasonrec.recommend.completeness import RequestedUsers
    from reasonrec.recommend.system import System
    from reasonrec.scoring import ScoreConfig

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


class CandidateScorer:
    """Tonight's histories (read for the batch from <dataset>/tonight/histories.parquet) -> faiss candidates ->
    the best tool's scores. Users that cannot be scored (unknown user_idx, id mismatch, no candidate left) are
    written to <staging>/_quarantine/ with their reason, never dropped; the rest go on, each with its history
    and EH, so the next stage needs no lookup of its own."""

    def __init__(self, system, staging: str, run_date: str, bundle=None):
        from reasonrec.recommend.bundle import Bundle
        from reasonrec.recommend.histories import HistoryReader

        self.bundle = bundle or Bundle(system)
        self.histories = HistoryReader(system.dataset)
        self.staging, self.run_date = staging, dt.date.fromisoformat(run_date)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        from reasonrec.recommend.arrow import candidate_batch
        from reasonrec.recommend.quarantine import NO_CANDIDATE, quarantine_reasons
        from reasonrec.recommend.requests import Requests
        from reasonrec.recommend.stages import retrieve_candidates, score_tools

        _chaos("candidates")
        b = self.bundle
        user_idx = np.asarray(batch["user_idx"], dtype=np.int64)
        user_id = np.asarray(batch["user_id"]).astype(str)
        inside = (user_idx >= 0) & (user_idx < self.histories.n_users)
        known = self.histories.read(user_idx[inside])
        reasons = quarantine_reasons(user_idx, user_id, self.histories.n_users, known.user_id)
        ok = np.flatnonzero(reasons == "")
        # The scorable rows' histories, in the file's CSR form as read (rows outside the data set have none).
        in_ok = np.flatnonzero(reasons[inside] == "")
        lengths = np.diff(known.offsets)
        everyone = Requests(user_idx[inside], known.offsets, known.items, known.eh,
                            np.zeros((int(inside.sum()), 0), dtype=np.int64), np.full(int(inside.sum()), -1))
        scorable = everyone if len(in_ok) == len(lengths) else everyone.take(in_ok)
        started = time.perf_counter()
        if len(ok):
            requests = retrieve_candidates(b, scorable)
            best = score_tools(b, requests).scores[:, 0]   # the best tool; the consult pool only for high rows
        else:
            requests = Requests(scorable.user_idx, scorable.offsets, scorable.items, scorable.eh,
                                np.zeros((0, b.cfg.n_candidates), dtype=np.int64), scorable.targets)
            best = np.zeros((0, b.cfg.n_candidates), dtype=np.float32)
        # Each user's share of retrieval + the best tool: the tool route's whole per-user cost.
        seconds = np.full(len(ok), (time.perf_counter() - started) / max(len(ok), 1))
        empty = (requests.candidates < 0).all(axis=1)
        reasons[ok[empty]] = NO_CANDIDATE
        bad = np.flatnonzero(reasons != "")
        if len(bad):
            write_quarantine_part(self.staging, quarantine_rows(user_id[bad], user_idx[bad], reasons[bad],
                                                                self.run_date))
        if not empty.any():
            return candidate_batch(user_id[ok], requests, best, seconds)
        keep = np.flatnonzero(~empty)
        return candidate_batch(user_id[ok[keep]], requests.take(keep), best[keep], seconds[keep])


class RouterScorer:
    """Route, run the VLM (first pass, refine for high risk), keep each user's top k: table rows out. Histories
    and EH come in the batch (pyarrow: the history column is read as CSR without copying row by row)."""

    def __init__(self, system, k: int, run_date: str, mode: str = "routed", bundle=None):
        from actors.metrics import RouteMetrics
        from reasonrec.recommend.bundle import Bundle

        self.bundle = bundle or Bundle(system)
        self.k, self.mode, self.version = k, mode, system.model_version
        self.run_date = dt.date.fromisoformat(run_date)
        self.metrics = RouteMetrics()

    def __call__(self, batch: pa.Table) -> pa.Table:
        from reasonrec.recommend.arrow import batch_requests
        from reasonrec.recommend.stages import answer, ranked

        _chaos("vlm")
        b = self.bundle
        requests, tools = batch_requests(batch, next(iter(b.tools)))
        result = answer(b, requests, tools, self.mode)
        self.metrics.record(result)
        items, scores = ranked(result, requests.candidates, self.k)
        user_id = batch["user_id"].to_numpy(zero_copy_only=False).astype(str)
        table = table_rows(user_id, items, scores, result.route, result.risk, requests.eh, result.confidence,
                           result.tools_consulted, result.rationale, b.item_ids, self.version, self.run_date)
        # Per-user figures for the run summary, one value per row (write_batch reads them off rank 1).
        per_user = {"latency": result.latency, "source": result.source.astype(str)}
        rows_per_user = (items >= 0).sum(axis=1)
        for name, values in per_user.items():
            table = table.append_column(name, pa.array(np.repeat(values, rows_per_user)))
        return table


def write_batch(batch: pa.Table, staging: str) -> pa.Table:
    """Write a batch's table rows under `staging` as one part named from its users. Returns one stats row; the
    job then checks the staging folder itself (reasonrec/recommend/completeness.py)."""
    name = write_table_part(staging, batch)
    first = batch.filter(pc.equal(batch["rank"], 1))
    return pa.table({
        "file": [name or ""], "rows": [batch.num_rows], "users": [first.num_rows],
        "routes": [first["route"].to_pylist()], "latency": [first["latency"].to_pylist()],
        "sources": [first["source"].to_pylist()],
    }, schema=STATS_SCHEMA)


# One row per written part (the job's completeness check and run summary read them).
STATS_SCHEMA = pa.schema([("file", pa.string()), ("rows", pa.int64()), ("users", pa.int64()),
                          ("routes", pa.list_(pa.string())), ("latency", pa.list_(pa.float64())),
                          ("sources", pa.list_(pa.string()))])


class ToolNightScorer:
    """CandidateScorer -> RouterScorer -> write_batch on each batch in one CPU actor, sharing one Bundle: the
    night of a system with no VLM to run. Splitting it into pools buys nothing there and costs time: a second
    pool's start-up, a 17 MB Arrow block per 12,500 users handed between pools through the object store, a write
    task per block (100k users on 2 CPUs, 2 actors: 69.3 -> 59.8 s and 59.4 -> 50.9 s in two runs;
    benchmarks/RESULTS.md). Returns write_batch's stats row, or an empty one when every user was quarantined."""

    def __init__(self, system, staging: str, k: int, run_date: str, mode: str):
        from reasonrec.recommend.bundle import Bundle

        bundle = Bundle(system)
        self.candidates = CandidateScorer(system, staging, run_date, bundle)
        self.router = RouterScorer(system, k, run_date, mode, bundle)
        self.staging = staging

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        scorable = self.candidates(batch)
        if scorable.num_rows == 0:
            return pa.table({"file": [""], "rows": [0], "users": [0], "routes": [[]], "latency": [[]],
                             "sources": [[]]}, schema=STATS_SCHEMA)
        return write_batch(self.router(scorable), self.staging)


def runs_vlm(cfg: ScoreConfig, system: System) -> bool:
    """Whether tonight calls the VLM for anyone: not when every route is forced to the tools or there is no VLM."""
    return cfg.mode != "tools" and system.vlm_dir is not None


def score_night(cfg: ScoreConfig, system: System, staging: str, requested: RequestedUsers) -> list[dict]:
    """Tonight's (de-duplicated) users through the streaming pipeline into `staging`; one stats row per written
    part (the job checks them against the files, reasonrec.recommend.completeness.check_night). Makes tonight's
    histories file first if a caller skipped the job's setup (a no-op when it is there)."""
    import ray

    from actors.cluster import gpus_for
    from reasonrec.recommend.histories import ensure_histories

    ensure_histories(system.dataset)
    run_date = cfg.run_date.isoformat()
    # The user table arrives as read_blocks slices, one block each: a repartition would add an all-to-all task that
    # asks for a whole CPU, which never schedules once the actor pools hold more than half of a 2-CPU machine
    # (2 candidate actors + 1 VLM actor at 0.5 CPU each hung the night, measured).
    users = ray.data.from_arrow(user_blocks(requested.table, cfg.read_blocks))
    if cfg.fuse_tool_night and not runs_vlm(cfg, system):
        return users.map_batches(
            ToolNightScorer, fn_constructor_kwargs={"system": system, "staging": staging, "k": cfg.k,
                                                    "run_date": run_date, "mode": cfg.mode},
            compute=ray.data.ActorPoolStrategy(size=cfg.candidate_actors), num_cpus=cfg.tool_night_cpus,
            batch_size=cfg.batch_size, batch_format="numpy",
        ).take_all()
    scored = users.map_batches(
        CandidateScorer, fn_constructor_kwargs={"system": system, "staging": staging, "run_date": run_date},
        compute=ray.data.ActorPoolStrategy(size=cfg.candidate_actors), num_cpus=cfg.candidate_cpus,
        batch_size=cfg.batch_size, batch_format="numpy",
    ).map_batches(
        RouterScorer, fn_constructor_kwargs={"system": system, "k": cfg.k, "run_date": run_date, "mode": cfg.mode},
        compute=ray.data.ActorPoolStrategy(size=cfg.vlm_actors), num_cpus=cfg.vlm_cpus,
        num_gpus=gpus_for(cfg.vlm_gpus),
        batch_size=cfg.batch_size, batch_format="pyarrow",
    ).map_batches(write_batch, fn_kwargs={"staging": staging}, num_cpus=cfg.write_cpus, batch_size=None,
                  batch_format="pyarrow")
    return scored.take_all()


def user_blocks(table: pa.Table, n: int) -> list[pa.Table]:
    """`table` cut into n contiguous slices as even as np.array_split makes them (at least one slice; no empty
    slice unless the table is empty)."""
    sizes = [len(part) for part in np.array_split(np.arange(table.num_rows), max(1, min(n, table.num_rows)))]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    return [table.slice(int(start), size) for start, size in zip(starts, sizes)]


def offline_check_on_ray(cfg: ScoreConfig, system: System) -> dict:
    """reasonrec.recommend.evaluate.offline_check as one Ray task with the VLM actors' resources (a GPU when the
    VLM pool has one), so the check runs where the night's VLM would."""
    import ray

    from actors.cluster import gpus_for
    from reasonrec.recommend.evaluate import offline_check   # the scoring stack: imported only when needed

    task = ray.remote(offline_check).options(num_cpus=cfg.vlm_cpus, num_gpus=gpus_for(cfg.vlm_gpus))
    return ray.get(task.remote(system, cfg.eval_split, cfg.eval_negatives, cfg.eval_users, cfg.mode))

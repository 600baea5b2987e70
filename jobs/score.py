"""Nightly scoring: a routed recommendation table for every user of a prepared dataset (issue 5).

    python jobs/score.py                                   # local Ray; embedded dataset, tools, VLM made if absent
    python jobs/score.py --config configs/ml-latest-small.yaml run_date=2026-11-21
    ray start --head && RAY_AUTH_MODE=token ray job submit --working-dir . -- \
        python jobs/score.py --config configs/ml-latest-small.yaml out=s3://bucket/recs

Pipeline (Ray Data, streaming, bounded memory):

    tonight's users (user_id, user_idx; read, checked and de-duplicated by the driver)
      ─▶ CandidateScorer actors (CPU): each batch's histories + EH read from the row groups of
      <dataset>/tonight/histories.parquet (made once by the setup); faiss retrieval + the best tool's scores
      ─▶ RouterScorer actors (GPU when present): route; VLM first pass; refine pass for high-risk users
         (histories, EH and candidates arrive in the batch: no actor holds the data set's interactions)
      ─▶ write_batch tasks: Parquet parts (+ quarantined users) into a staging folder
    then the staging folder is read back (every requested user exactly once: ranked rows or one quarantine row;
    reasonrec/recommend/completeness.py), committed atomically as <out>/run_date=YYYY-MM-DD/ (reasonrec/publish.py)
    and a run summary (rows, users, duplicates, route shares, per-route latency percentiles, throughput,
    quarantine) is written. A night that fails the read-back is not published (exit 1, the reason printed).

A killed run leaves last night's partition untouched and its staging folder is deleted by the next run; rerunning
a date replaces it (same rows: every choice is seeded). Actors restart and their batches are retried (Ray Data's
defaults); a part is named from the users it holds, so a retried write overwrites its own file. SIGTERM/SIGINT
abort the staging folder and shut down the local Ray this job started (actors/cluster.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import ray

from actors.cluster import gpus_for, init_ray, stop_on_signals
from actors.recommend import CandidateScorer, RouterScorer, write_batch
from reasonrec.cli import job_parser, resolve_config
from reasonrec.io import join, open_fs
from reasonrec.publish import Publication, clean_stale_staging
from reasonrec.recommend.system import System, resolve
from reasonrec.recommend.completeness import (IncompleteNight, NightOnDisk, RequestedUsers, read_requested,
                                              verify_staging)
from reasonrec.recommend.histories import ensure_histories
from reasonrec.router.answer import answer_sources
from reasonrec.router.policy import ROUTES
from reasonrec.scoring import ScoreConfig

JOBS = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------------------- setup

def run_job(script: str, config: str, overrides: list[str]) -> None:
    print(f"[score] running jobs/{script} --config {config} {' '.join(overrides)}", flush=True)
    subprocess.run([sys.executable, str(JOBS / script), "--config", config, *overrides], check=True)


def exists(uri: str) -> bool:
    fs, path = open_fs(uri)
    return fs.exists(path)


def ensure_artifacts(cfg: ScoreConfig) -> None:
    """Dataset -> tools -> VLM -> policy, each made by its own job only when absent (cached afterwards), then
    tonight's histories file the candidate actors read (reasonrec/recommend/histories.py)."""
    rec, boot = cfg.recommend, cfg.bootstrap
    steps = [(join(rec.dataset, "manifest.json"), "prepare_data.py", boot.prepare_config, [f"out={rec.dataset}"])]
    vlm_trained = rec.vlm_dir is not None and exists(join(rec.vlm_dir, "model", "reasonrec.json"))
    if rec.tools_dir is not None or not vlm_trained:  # else: the tools the VLM run was trained with
        tools_dir = rec.tools_dir or tools_out(boot.train_tools_config)
        steps.append((join(tools_dir, rec.retrieval_tool, "tool.json") if tools_dir else None, "train_tools.py",
                      boot.train_tools_config, [f"dataset={rec.dataset}", *([f"out={tools_dir}"] if tools_dir else []),
                                                *boot.train_tools_overrides]))
    if rec.vlm_dir is not None:
        steps.append((join(rec.vlm_dir, "model", "reasonrec.json"), "train_vlm.py", boot.train_vlm_config,
                      [f"dataset={rec.dataset}", f"out={rec.vlm_dir}", *boot.train_vlm_overrides]))
        if rec.policy == "calibrated":
            steps.append((join(rec.vlm_dir, "policy.json"), "calibrate.py", boot.calibrate_config,
                          [f"recommend.dataset={rec.dataset}", f"recommend.vlm_dir={rec.vlm_dir}",
                           *boot.calibrate_overrides]))
    for marker, script, config, overrides in steps:
        if marker is not None and exists(marker):
            continue
        if config is None:
            raise SystemExit(f"{marker} is missing and bootstrap has no config to make it ({script})")
        run_job(script, config, overrides)
    started = time.perf_counter()
    made = ensure_histories(rec.dataset)   # rewritten only when absent or older than the dataset
    print(f"[score] tonight's histories: {made} ({time.perf_counter() - started:.1f} s)", flush=True)


def tools_out(train_tools_config: str | None) -> str | None:
    """Where the bootstrap's train_tools config writes (the VLM config's tools_dir should point there)."""
    if train_tools_config is None:
        return None
    from reasonrec.config import load_config
    from reasonrec.tools.train_config import TrainToolsConfig

    return load_config(TrainToolsConfig, train_tools_config).out


# ------------------------------------------------------------------------------------------------------- run

def score_users(cfg: ScoreConfig, system: System, staging: str, requested: RequestedUsers) -> list[dict]:
    """The streaming pipeline over tonight's (de-duplicated) users; returns one stats row per written part.
    Makes tonight's histories file first if a caller skipped the setup (a no-op when it is there)."""
    ensure_histories(system.dataset)
    run_date = cfg.run_date.isoformat()
    users = ray.data.from_arrow(requested.table).repartition(cfg.read_blocks)
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


# ------------------------------------------------------------------------------------------------------ save

def check_night(staging: str, requested: RequestedUsers, k: int, parts: list[dict]) -> NightOnDisk:
    """The commit gate: the staging folder read back (every requested user exactly once, scored or quarantined),
    and the write tasks' statistics agreeing with it (they feed the route shares and latencies)."""
    on_disk = verify_staging(staging, requested, k)
    reported = (sum(p["users"] for p in parts), sum(p["rows"] for p in parts))
    if reported != (on_disk.users, on_disk.rows):
        raise IncompleteNight(f"{staging}: the write tasks reported (users, rows) = {reported}, the files hold "
                              f"{(on_disk.users, on_disk.rows)}")
    return on_disk


def summarise(cfg: ScoreConfig, parts: list[dict], system: System, seconds: float, check: dict | None,
              requested: RequestedUsers, on_disk: NightOnDisk) -> dict:
    routes = np.array([r for p in parts for r in p["routes"]], dtype=str)
    latency = np.array([x for p in parts for x in p["latency"]], dtype=float)
    sources = np.array([s for p in parts for s in p["sources"]], dtype=str)
    users, rows = on_disk.users, on_disk.rows
    per_route = {}
    for route in ROUTES:
        on = latency[routes == route]
        per_route[route] = ({f"p{q}": round(float(np.percentile(on, q)) * 1e3, 3) for q in (50, 95, 99)}
                            if len(on) else {})
    return {
        "run_date": cfg.run_date.isoformat(), "dataset": system.dataset, "model_version": system.model_version,
        "mode": cfg.mode, "policy": None if system.policy is None else system.policy.model_dump(mode="json"),
        "requested_users": requested.n, "duplicate_users": requested.duplicates,
        "users": users, "rows": rows, "quarantined": on_disk.quarantined, "short_lists": on_disk.short_lists,
        "vlm_failures": int((sources == "tool_fallback").sum()),
        # per route, the share answered by a parsed VLM output ("vlm") or by a fallback (router/answer.py)
        "answer_sources": answer_sources(routes, sources),
        "route_shares": {r: round(float((routes == r).mean()), 4) if users else 0.0 for r in ROUTES},
        "latency_ms_per_user": per_route, "parts": on_disk.files,
        "scoring_seconds": round(seconds, 3), "users_per_second": round(users / seconds, 2) if seconds else None,
        "rows_per_second": round(rows / seconds, 2) if seconds else None, "offline_check": check,
    }


def users_uri(cfg: ScoreConfig) -> str:
    return cfg.users or join(cfg.recommend.dataset, "users.parquet")


def write_summary(cfg: ScoreConfig, summary: dict) -> str:
    fs, root = open_fs(cfg.out)
    path = join(root, "_summaries", f"run_date={cfg.run_date.isoformat()}.json")
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as f:
        json.dump(summary, f, indent=2)
    return path


def main(argv: list[str] | None = None) -> dict:
    args = job_parser(__doc__).parse_args(argv)
    cfg = resolve_config(ScoreConfig, args)
    ensure_artifacts(cfg)
    system = resolve(cfg.recommend)
    try:
        requested = read_requested(users_uri(cfg), cfg.max_users)
    except ValueError as e:
        raise SystemExit(f"[score] {e}") from None
    if requested.duplicates:
        print(f"[score] {requested.duplicates} repeated rows in {users_uri(cfg)} are scored once (first row "
              f"kept), e.g. user_id {requested.duplicate_examples}", flush=True)
    init_ray(cfg.ray_address)
    stop_on_signals()   # after ray.init, which installs a handler of its own that aborts the process

    check = None
    if cfg.eval_split is not None:
        from reasonrec.recommend.evaluate import offline_check   # the scoring stack: imported only when needed
        check_task = ray.remote(offline_check).options(num_cpus=cfg.vlm_cpus, num_gpus=gpus_for(cfg.vlm_gpus))
        check = ray.get(check_task.remote(system, cfg.eval_split, cfg.eval_negatives, cfg.eval_users, cfg.mode))
        print(f"[score] offline check ({check['protocol']} {check['split']} test, {check['users']} users, "
              f"{cfg.mode}): HR@5={check['HR@5']:.4f} NDCG@5={check['NDCG@5']:.4f}; most-popular "
              f"HR@5={check['most_popular']['HR@5']:.4f}"
              + (f"; majority vote of the tools HR@5={check['majority_vote']['HR@5']:.4f}"
                 if "majority_vote" in check else ""), flush=True)

    publication = Publication(cfg.out, f"run_date={cfg.run_date.isoformat()}",
                              f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}")
    staging = publication.begin()
    stale = clean_stale_staging(cfg.out, cfg.stale_staging_hours * 3600)
    for uri in [*publication.cleaned, *stale]:
        print(f"[score] deleted a killed run's staging folder {uri}", flush=True)
    started = time.perf_counter()
    try:
        parts = score_users(cfg, system, staging, requested)
        seconds = time.perf_counter() - started
        on_disk = check_night(staging, requested, cfg.k, parts)
    except IncompleteNight as e:
        publication.abort()
        raise SystemExit(f"[score] {e}: not publishing") from None
    except BaseException:
        publication.abort()
        raise
    summary = summarise(cfg, parts, system, seconds, check, requested, on_disk)
    summary["table"] = publication.commit(summary)
    summary["summary"] = write_summary(cfg, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "policy"}, indent=2))
    return summary


if __name__ == "__main__":
    main()

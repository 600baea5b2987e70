"""Nightly scoring: a routed recommendation table for every user of a prepared dataset (issue 5).

    python jobs/score.py                                   # local Ray; embedded dataset, tools, VLM made if absent
    python jobs/score.py --config configs/ml-latest-small.yaml run_date=2026-11-21
    ray start --head && RAY_AUTH_MODE=token ray job submit --working-dir . -- \
        python jobs/score.py --config configs/ml-latest-small.yaml out=s3://bucket/recs

Pipeline (Ray Data, streaming, bounded memory; its Ray code is actors/recommend.py's score_night):

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

from actors.cluster import init_ray, stop_on_signals
from actors.recommend import offline_check_on_ray, score_night
from reasonrec.cli import job_parser, resolve_config
from reasonrec.io import join, open_fs
from reasonrec.publish import Publication, clean_stale_staging
from reasonrec.recommend.completeness import IncompleteNight, check_night, read_requested
from reasonrec.recommend.histories import ensure_histories
from reasonrec.recommend.summary import summarise, write_summary
from reasonrec.recommend.system import resolve
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


def ensure_retrieval_index(system) -> None:
    """The retrieval index, trained once and kept for every actor of every night with these weights
    (reasonrec/recommend/retrieval_index.py): each actor would otherwise train its own at start-up."""
    from reasonrec.recommend.bundle import Bundle

    bundle, started = Bundle(system), time.perf_counter()
    made = bundle.keep_retrieval_index()
    print(f"[score] retrieval index: {bundle.index_uri} ({'built' if made else 'kept'}, "
          f"{time.perf_counter() - started:.1f} s)", flush=True)


def tools_out(train_tools_config: str | None) -> str | None:
    """Where the bootstrap's train_tools config writes (the VLM config's tools_dir should point there)."""
    if train_tools_config is None:
        return None
    from reasonrec.config import load_config
    from reasonrec.tools.train_config import TrainToolsConfig

    return load_config(TrainToolsConfig, train_tools_config).out


# --------------------------------------------------------------------------------------------- run and save

def main(argv: list[str] | None = None) -> dict:
    args = job_parser(__doc__).parse_args(argv)
    cfg = resolve_config(ScoreConfig, args)
    ensure_artifacts(cfg)
    system = resolve(cfg.recommend)
    ensure_retrieval_index(system)
    try:
        requested = read_requested(cfg.users_uri, cfg.max_users)
    except ValueError as e:
        raise SystemExit(f"[score] {e}") from None
    if requested.duplicates:
        print(f"[score] {requested.duplicates} repeated rows in {cfg.users_uri} are scored once (first row "
              f"kept), e.g. user_id {requested.duplicate_examples}", flush=True)
    init_ray(cfg.ray_address)
    stop_on_signals()   # after ray.init, which installs a handler of its own that aborts the process

    check = None
    if cfg.eval_split is not None:
        check = offline_check_on_ray(cfg, system)
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
        parts = score_night(cfg, system, staging, requested)
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

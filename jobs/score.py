"""Nightly scoring: write a recommendation table for every user of a prepared dataset.

    python jobs/score.py                                   # local Ray, embedded dataset (prepared if absent)
    python jobs/score.py --config configs/score.yaml k=20 run_date=2026-11-21
    ray start --head && ray job submit --working-dir . -- python jobs/score.py dataset=artifacts/datasets/ml-latest-small

Reads the users, scores them in a Ray Data actor pool, writes Parquet under <out>/run_date=YYYY-MM-DD/ through
a staging folder that is renamed into place only when complete, and writes a run summary beside it.
Today's model is the most-popular baseline; the router (tools, VLM) plugs in behind the same actor.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import ray

from actors.scoring import RecommenderActor
from reasonrec.baselines import MostPopular, evaluate_sampled
from reasonrec.cli import job_parser, resolve_config
from reasonrec.data.candidates import read_candidates
from reasonrec.data.schema import Dataset
from reasonrec.data.splits import load_split
from reasonrec.io import join, open_fs
from reasonrec.scoring import OUTPUT_COLUMNS, PopularityRecommender, ScoreConfig


# ----------------------------------------------------------------------------------------------------- setup

def ensure_dataset(cfg: ScoreConfig) -> Dataset:
    """The dataset to score; on a fresh laptop, prepare the embedded one first (cached afterwards)."""
    fs, path = open_fs(cfg.dataset)
    if not fs.exists(join(path, "manifest.json")):
        if cfg.prepare_config is None:
            raise SystemExit(f"dataset {cfg.dataset} is not prepared and prepare_config is null")
        print(f"[score] {cfg.dataset} not found: preparing it with {cfg.prepare_config}", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("prepare_data.py")),
                        "--config", cfg.prepare_config, f"out={cfg.dataset}"], check=True)
    return Dataset.load(cfg.dataset)


def offline_check(cfg: ScoreConfig, ds: Dataset) -> dict:
    """Tonight's model, fitted on the eval split's train part, on its fixed test candidates (not train data)."""
    split = load_split(join(cfg.dataset, "splits"), cfg.eval_split)
    candidates = read_candidates(join(cfg.dataset, "splits", cfg.eval_split, "candidates",
                                      f"neg{cfg.eval_negatives}", "test.parquet"))
    model = MostPopular().fit(split.train, ds.n_items)
    metrics = evaluate_sampled(model, candidates, ks=(5, 10))
    return {"split": cfg.eval_split, "protocol": f"1+{cfg.eval_negatives}", "users": len(candidates), **metrics}


# ------------------------------------------------------------------------------------------------------- run

def score_users(cfg: ScoreConfig, ds: Dataset, staging: str, model_version: str) -> None:
    users = ray.data.read_parquet(join(cfg.dataset, "users.parquet"), columns=["user_id", "user_idx"],
                                  override_num_blocks=cfg.read_blocks)
    recommendations = users.map_batches(
        RecommenderActor,
        fn_constructor_kwargs={"dataset_root": cfg.dataset, "k": cfg.k, "model_version": model_version,
                               "run_date": cfg.run_date.isoformat()},
        compute=ray.data.ActorPoolStrategy(size=cfg.num_scorers),
        num_cpus=cfg.scorer_num_cpus,
        batch_size=cfg.batch_size,
        batch_format="pandas",
    )
    recommendations.select_columns(OUTPUT_COLUMNS).write_parquet(staging)


# ------------------------------------------------------------------------------------------------------ save

def publish(cfg: ScoreConfig, staging: str, final: str) -> None:
    """Swap the finished staging folder into place; a crash before this leaves last night's table untouched."""
    fs, _ = open_fs(cfg.out)
    _, final_path = open_fs(final)
    _, staging_path = open_fs(staging)
    if fs.exists(final_path):
        fs.rm(final_path, recursive=True)
    fs.mv(staging_path, final_path, recursive=True)


def main(argv: list[str] | None = None) -> dict:
    args = job_parser(__doc__).parse_args(argv)
    cfg = resolve_config(ScoreConfig, args)
    started = time.perf_counter()

    ds = ensure_dataset(cfg)
    model_version = f"{PopularityRecommender.route}@{ds.manifest.name}"
    check = offline_check(cfg, ds)
    print(f"[score] offline check on {check['protocol']} {check['split']} test: "
          f"HR@5={check['HR@5']:.4f} NDCG@5={check['NDCG@5']:.4f} ({check['users']} users)", flush=True)

    ray.init(address=cfg.ray_address, ignore_reinit_error=True)
    partition = f"run_date={cfg.run_date.isoformat()}"
    staging = join(cfg.out, "_staging", partition)
    final = join(cfg.out, partition)
    score_started = time.perf_counter()
    score_users(cfg, ds, staging, model_version)
    score_seconds = time.perf_counter() - score_started
    publish(cfg, staging, final)

    rows = ray.data.read_parquet(final).count()
    summary = {
        "run_date": cfg.run_date.isoformat(), "dataset": cfg.dataset, "table": final,
        "model_version": model_version, "users": ds.n_users, "rows": rows,
        "rows_expected": ds.n_users * cfg.k, "routes": {PopularityRecommender.route: 1.0},
        "scoring_seconds": round(score_seconds, 3), "rows_per_second": round(rows / score_seconds, 1),
        "offline_check": check, "wall_seconds": round(time.perf_counter() - started, 3),
    }
    fs, out_path = open_fs(cfg.out)
    with fs.open(join(out_path, f"summary_{partition}.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
    if rows != summary["rows_expected"]:
        raise SystemExit(f"table has {rows} rows, expected {summary['rows_expected']}")
    return summary


if __name__ == "__main__":
    main()

"""Benchmark: routed scoring against the forced routes, and the nightly pipeline on 1 vs 2 Ray workers against
a single-process loop doing the same work (issue 5).

    .venv/bin/python benchmarks/score.py --users 300 --pipeline-users 610          # ml-latest-small
    .venv/bin/python benchmarks/score.py --dataset artifacts/datasets/synthetic --vlm-dir artifacts/vlm/synthetic
    .venv/bin/python benchmarks/score.py --quick --dataset D --vlm-dir V --policy config   # smoke sizes

A. Quality and cost per mode, one run, same users, one Bundle: a seeded subset of the split's test users with
   their fixed 1+N lists (targets known) goes through `evaluate_requests` per mode (tools, vlm, vlm+tools,
   routed); the wall time of each whole mode (tool scoring included), best of --repeats rotated rounds, gives
   users/s, and this process's CPU time users per CPU-second (the figure a busy neighbour moves least; torch
   runs --threads threads). Every mode first answers one small untimed batch, so loading costs land on no
   mode. The goal: routed users/s >= 2x vlm+tools at >= 97 % of its HR@5. Thresholds come from
   <vlm_dir>/policy.json (calibrated on the valid part; never tuned here).
B. Throughput of tonight's pipeline (routed, no targets) on the first --pipeline-users users: the real Ray Data
   pipeline of jobs/score.py (`actors.recommend.score_night`) with 1 candidate + 1 VLM actor, then 2 + 2, every actor on
   --actor-cpus CPUs; and one process without Ray doing the same work (gather -> retrieve_candidates ->
   score_tools -> answer -> ranked -> table_rows -> Parquet). Ray is timed around `score_night` only (ray.init
   not counted; actor start-up and model loading inside the actors are); the single process includes its
   Bundle load, shown separately too.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # jobs/ is a folder of scripts, not an installed package

from reasonrec.io import join, open_fs  # noqa: E402
from reasonrec.recommend.bundle import Bundle  # noqa: E402
from reasonrec.recommend.calibration import part_requests  # noqa: E402
from reasonrec.recommend.config import RecommendConfig  # noqa: E402
from reasonrec.recommend.evaluate import evaluate_requests, popularity_metrics  # noqa: E402
from reasonrec.recommend.requests import gather  # noqa: E402
from reasonrec.recommend.stages import answer, ranked, retrieve_candidates, score_tools  # noqa: E402
from reasonrec.recommend.system import System, resolve  # noqa: E402
from reasonrec.recommend.table import table_rows  # noqa: E402
from reasonrec.report.ranking import stack_row  # noqa: E402
from reasonrec.router.policy import ROUTES  # noqa: E402
from reasonrec.tools.data import ToolData  # noqa: E402

MODES = ("tools", "vlm", "vlm+tools", "routed")
GOAL_SPEEDUP, GOAL_HR5_SHARE = 2.0, 0.97
QUICK = {"users": 12, "batch_size": 6, "repeats": 2, "pipeline_users": 24, "pipeline_batch_size": 8}
WARMUP_ROWS = 4
STACK_VALID_USERS = 2000   # seeded validation users the learned tool stack is fit on (as jobs/evaluate.py's default)


# ------------------------------------------------------------------------------------------- A: modes

def compare_modes(bundle: Bundle, data: ToolData, users: int, seed: int, batch_size: int, repeats: int) -> dict:
    """Every mode `repeats` times, round robin with the order rotated each round (so no mode always runs first,
    onto a cold image cache or a busy neighbour); users/s from each mode's best round."""
    requests = part_requests(data, "test", users, seed)
    warm = requests.take(np.arange(min(WARMUP_ROWS, len(requests))))
    for mode in MODES:  # untimed: tools, faiss, the VLM and first-call costs load here, not in one mode's figure
        evaluate_requests(bundle, warm, mode, batch_size)
    load = round(os.getloadavg()[0], 1)
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}  # this process's CPU time: robust to neighbours
    metrics: dict[str, dict] = {}
    same = True  # every round gives the same answers (seeded, no sampling); checked, not assumed
    for round_ in range(repeats):
        for mode in MODES[round_ % len(MODES):] + MODES[:round_ % len(MODES)]:
            started, cpu_started = time.perf_counter(), time.process_time()
            got = evaluate_requests(bundle, requests, mode, batch_size)
            seconds[mode].append(time.perf_counter() - started)
            cpu[mode].append(time.process_time() - cpu_started)
            if mode in metrics:
                same &= all(got[k] == metrics[mode][k] for k in ("HR@5", "NDCG@5", "HR@10", "route_shares"))
            metrics[mode] = got
    modes = {mode: {"users_per_second": round(len(requests) / min(seconds[mode]), 2),
                    "seconds": [round(x, 3) for x in seconds[mode]],
                    "users_per_cpu_second": round(len(requests) / min(cpu[mode]), 2),
                    "cpu_seconds": [round(x, 3) for x in cpu[mode]],
                    **{k: round(metrics[mode][k], 4) for k in ("HR@5", "NDCG@5", "HR@10")},
                    "route_shares": {r: round(v, 4) for r, v in metrics[mode]["route_shares"].items()},
                    "answer_sources": metrics[mode]["answer_sources"]}
             for mode in MODES}
    popular = popularity_metrics(data.split.train, data.n_items, requests)
    # The control a VLM must beat: the consulted tools' scores combined by weights fit on validation lists.
    stack = (stack_row(dict(bundle.tools), data, requests, part_requests(data, "valid", STACK_VALID_USERS, seed))
             if len(bundle.tools) >= 2 else None)
    routed, both = modes["routed"], modes["vlm+tools"]
    speedup = routed["users_per_second"] / both["users_per_second"]
    hr5_share = routed["HR@5"] / both["HR@5"] if both["HR@5"] else None  # undefined when vlm+tools hits nothing
    return {"users": len(requests), "batch_size": batch_size, "repeats": repeats,
            "load_average_1min_at_start": load, "metrics_same_every_round": same, "modes": modes,
            "most_popular": {k: round(popular[k], 4) for k in ("HR@5", "NDCG@5")},
            "fusion": None if bundle.router.fusion is None else bundle.router.fusion.model_dump(),
            "learned_stack": None if stack is None else {
                "members": stack["members"], "weights": stack["weights"],
                "fit_on_valid_users": stack["fit_on_valid_users"], **{k: round(stack[k], 4) for k in ("HR@5", "NDCG@5")}},
            "ratios": {"routed_vs_vlm_tools_users_per_second": round(speedup, 3),
                       "routed_vs_vlm_tools_users_per_cpu_second": round(
                           routed["users_per_cpu_second"] / both["users_per_cpu_second"], 3),
                       "routed_vs_vlm_tools_hr5": None if hr5_share is None else round(hr5_share, 4),
                       "routed_vs_vlm_users_per_second": round(routed["users_per_second"]
                                                               / modes["vlm"]["users_per_second"], 3),
                       "routed_vs_tools_hr5": round(routed["HR@5"] / modes["tools"]["HR@5"], 4)
                       if modes["tools"]["HR@5"] else None},
            "goal": {"speedup_at_least": GOAL_SPEEDUP, "hr5_share_at_least": GOAL_HR5_SHARE,
                     "met": hr5_share is not None and speedup >= GOAL_SPEEDUP and hr5_share >= GOAL_HR5_SHARE}}


# ------------------------------------------------------------------------------------------- B: pipeline

def first_users(dataset: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(user_id, user_idx) of the first n rows of users.parquet: the users `ScoreConfig.max_users` takes."""
    fs, path = open_fs(join(dataset, "users.parquet"))
    with fs.open(path, "rb") as f:
        users = pq.read_table(f, columns=["user_id", "user_idx"]).slice(0, n)
    return users["user_id"].to_numpy().astype(str), users["user_idx"].to_numpy().astype(np.int64)


def single_process(system: System, n_users: int, batch_size: int, k: int, out: Path) -> dict:
    """The pipeline's work in one process, batch by batch, written as Parquet parts."""
    load, started, cpu_started = round(os.getloadavg()[0], 1), time.perf_counter(), time.process_time()
    bundle, dataset, version = Bundle(system), system.dataset, system.model_version
    for heavy in ("tools", "retrieval", "scorer", "everything", "tonight_eh"):  # load now, timed apart
        getattr(bundle, heavy)
    user_id, user_idx = first_users(dataset, n_users)
    loaded = time.perf_counter()
    rows, routes, run_date = 0, [], dt.date.today()
    for part, start in enumerate(range(0, len(user_idx), batch_size)):
        ids, idx = user_id[start:start + batch_size], user_idx[start:start + batch_size]
        requests = retrieve_candidates(bundle, gather(bundle.everything, idx, bundle.tonight_eh))
        result = answer(bundle, requests, score_tools(bundle, requests), "routed")
        items, scores = ranked(result, requests.candidates, k)
        table = table_rows(ids, items, scores, result.route, result.risk, requests.eh, result.confidence,
                           result.tools_consulted, result.rationale, bundle.item_ids, version, run_date)
        pq.write_table(table, out / f"part-{part:05d}.parquet")
        rows += table.num_rows
        routes.append(result.route)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    route = np.concatenate(routes) if routes else np.zeros(0, dtype=str)
    return {"users": len(user_idx), "rows": rows, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
            "load_seconds": round(loaded - started, 2),
            "users_per_second": round(len(user_idx) / seconds, 2), "rows_per_second": round(rows / seconds, 2),
            "route_shares": {r: round(float((route == r).mean()), 4) if len(route) else 0.0 for r in ROUTES},
            "load_average_1min_at_start": load}


def ray_pipeline(system: System, args, actors: int, staging: Path) -> dict:
    """The nightly job's score_night with `actors` candidate and `actors` VLM actors, timed around that call."""
    import ray

    from actors.recommend import score_night
    from reasonrec.recommend.completeness import check_night, read_requested
    from reasonrec.recommend.summary import summarise
    from reasonrec.scoring import ScoreConfig

    gpus = ray.cluster_resources().get("GPU", 0)
    cfg = ScoreConfig(recommend=system.recommend, out=str(staging.parent), k=args.k, mode="routed",
                      max_users=args.pipeline_users, eval_split=None, batch_size=args.pipeline_batch_size,
                      candidate_actors=actors, candidate_cpus=args.actor_cpus, vlm_actors=actors,
                      vlm_cpus=args.actor_cpus, vlm_gpus=min(1.0, gpus / actors) if gpus else 0.0,
                      write_cpus=args.actor_cpus)
    staging.mkdir(parents=True)
    load, started = round(os.getloadavg()[0], 1), time.perf_counter()
    requested = read_requested(cfg.users_uri, cfg.max_users)
    parts = score_night(cfg, system, str(staging), requested)
    seconds = time.perf_counter() - started
    check_started = time.perf_counter()
    on_disk = check_night(str(staging), requested, cfg.k, parts)   # the job's commit gate, timed on its own
    summary = summarise(cfg, parts, system, seconds, None, requested, on_disk)
    summary["completeness_check_seconds"] = round(time.perf_counter() - check_started, 3)
    return {"candidate_actors": actors, "vlm_actors": actors, "cpus_per_actor": args.actor_cpus,
            **{key: summary[key] for key in ("users", "rows", "parts", "quarantined", "vlm_failures",
                                             "scoring_seconds", "users_per_second", "rows_per_second",
                                             "route_shares", "completeness_check_seconds")},
            "load_average_1min_at_start": load}


def compare_pipelines(system: System, args) -> dict:
    import ray

    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        try:
            one = ray_pipeline(system, args, 1, Path(tmp) / "ray1" / "staging")
            two = ray_pipeline(system, args, 2, Path(tmp) / "ray2" / "staging")
        finally:
            ray.shutdown()
        (Path(tmp) / "single").mkdir()
        single = single_process(system, args.pipeline_users, args.pipeline_batch_size, args.k, Path(tmp) / "single")
    return {"users": single["users"], "batch_size": args.pipeline_batch_size, "k": args.k, "mode": "routed",
            "ray_cpus": args.ray_cpus, "timed": "Ray: score_night() only (ray.init/shutdown not counted; actor "
            "start-up and model loading in the actors counted); single process: Bundle load + loop",
            "ray_1x1": one, "ray_2x2": two, "single_process": single,
            "ratios": {"ray_2x2_vs_1x1_rows_per_second": round(two["rows_per_second"] / one["rows_per_second"], 3),
                       "ray_1x1_vs_single_rows_per_second": round(one["rows_per_second"] / single["rows_per_second"],
                                                                  3)}}


# ------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="artifacts/datasets/ml-latest-small")
    parser.add_argument("--vlm-dir", default="artifacts/vlm/ml-latest-small")
    parser.add_argument("--tools-dir", default=None, help="default: the tools the VLM was trained with")
    parser.add_argument("--policy", choices=("calibrated", "config"), default="calibrated",
                        help="calibrated: <vlm_dir>/policy.json; config: the router section's default thresholds")
    parser.add_argument("--split", default="loo")
    parser.add_argument("--negatives", type=int, default=99, help="which fixed test lists: 99 -> 1+99")
    parser.add_argument("--users", type=int, default=300, help="seeded test users in part A")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64, help="users per batch in part A")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of every mode in part A (best kept)")
    parser.add_argument("--pipeline-users", type=int, default=610, help="first users scored in part B")
    parser.add_argument("--pipeline-batch-size", type=int, default=64, help="users per batch in part B")
    parser.add_argument("--k", type=int, default=10, help="table rows per user in part B")
    parser.add_argument("--actor-cpus", type=float, default=0.25, help="CPUs per actor and per write task")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in this process (a Ray actor on < 1 CPU gets OMP_NUM_THREADS=1)")
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes for a smoke test: at most {QUICK}")
    args = parser.parse_args()
    if args.quick:
        for key, most in QUICK.items():
            setattr(args, key, min(getattr(args, key), most))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import torch

    torch.set_num_threads(args.threads)
    recommend = RecommendConfig(dataset=args.dataset, vlm_dir=args.vlm_dir, tools_dir=args.tools_dir,
                                policy=args.policy)
    system = resolve(recommend)
    version, router, policy = system.model_version, system.router, system.policy
    bundle = Bundle(system)
    data = ToolData.load(args.dataset, args.split, args.negatives)
    modes = compare_modes(bundle, data, args.users, args.seed, args.batch_size, args.repeats)
    del bundle
    pipeline = compare_pipelines(system, args)
    print(json.dumps({
        "benchmark": "score", "dataset": args.dataset, "vlm_dir": args.vlm_dir, "model_version": version,
        "policy": {"source": "policy.json" if policy is not None else "router config",
                   **router.model_dump(include={"tau_low", "tau_high", "tau_tool", "tau_conf", "confidence_source",
                                                "best_tool", "n_consult", "tool_selection"})},
        "evaluation": {"split": args.split, "part": "test", "protocol": f"1+{args.negatives}", "seed": args.seed,
                       **modes},
        "pipeline": pipeline,
        "peak_rss_mib_driver": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}, "
                   f"torch {torch.__version__}, {torch.get_num_threads()} torch threads in the driver",
        "load_average_1min": round(os.getloadavg()[0], 1),
    }))


if __name__ == "__main__":
    main()

"""Benchmark: the nightly pipeline at growing user counts on the synthetic generator (Pixel-1M shape).

    .venv/bin/python benchmarks/score_scale.py --users 10000 100000 --items 100000
    .venv/bin/python benchmarks/score_scale.py --users 1000000 --items 100000 --vlm-sample 500

For each size: prepare the synthetic set (cached under --work), train the two tools the tool route needs
(two-tower for retrieval, SASRec as the best tool; short budgets and evaluate=none — cost, not quality, is
measured), build tonight's histories file (the job's one-off setup step, timed and measured apart), then run
the real `jobs/score.py` in a child process with `mode=tools` (every user on the tool route) while a sampler
thread sums the resident memory of the job and every process it started (driver, raylet, Ray workers).
With --vlm-sample N, a second run scores the first N users with `mode=vlm+tools` through an *untrained*
tiny VLM whose vocabulary covers the catalogue (its cost per user is the quantity of interest; its answers
are not). A night with no VLM to run goes through the job's fused pool (one ToolNightScorer actor pool;
--split-too also runs the split candidate -> router -> write pipeline beside it). With --single-process, the
same tool-route night also runs in one process without Ray (issue 19 point
4): a child process calls the pipeline's own stage callables (actors.recommend.CandidateScorer, RouterScorer,
write_batch) batch by batch on the same users file, so the work is the same and only Ray Data's streaming,
actors and tasks are left out; its users/s beside the pipeline's gives the ratio. One JSON line per size, then
one summary line with the growth ratios.

    .venv/bin/python benchmarks/score_scale.py --users 100000 --items 100000 --single-process --candidate-actors 1 2 \
        --split-too
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(REPO / "jobs" / script), *args], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def prepare(work: Path, users: int, items: int) -> Path:
    out = work / f"ds-{users}x{items}"
    if not (out / "manifest.json").exists():
        started = time.perf_counter()
        run("prepare_data.py", "--config", "configs/synthetic.yaml", f"out={out}",
            f"source.synthetic.n_users={users}", f"source.synthetic.n_items={items}", "splits.protocols=[loo]",
            "candidates.ranking_negatives=[99]", "candidates.ctr_negatives_per_positive=[]")
        print(f"# prepared {out} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return out


def train_tools(work: Path, dataset: Path, budget_s: float, cpus_per_tool: float) -> Path:
    out = work / f"tools-{dataset.name}"
    if not (out / "two_tower" / "tool.json").exists():
        started = time.perf_counter()
        budget = {"max_train_seconds": budget_s, "epochs": 1}
        run("train_tools.py", "--config", "configs/synthetic.yaml", f"dataset={dataset}", f"out={out}",
            "tools=[sasrec,two_tower]", f"tool_configs={json.dumps({'sasrec': budget, 'two_tower': budget})}",
            f"cpus_per_tool={cpus_per_tool}",
            "evaluate=none")  # no test evaluation: the full-catalogue ranking would dominate at 1M users
        print(f"# trained tools {out} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return out


def untrained_tools(work: Path, dataset: Path) -> Path:
    """SASRec and the two-tower retriever with their default configs and random weights, shaped for this
    dataset: the same scoring cost as trained ones (one SASRec epoch over 1M users' histories runs far past the
    training budget on 2 cores: the budget is checked only between epochs)."""
    from reasonrec.data.schema import Dataset
    from reasonrec.tools import TOOLS

    out = work / f"untrained-tools-{dataset.name}"
    if not (out / "two_tower" / "tool.json").exists():
        ds = Dataset.load(str(dataset))
        for name in ("sasrec", "two_tower"):
            cls = TOOLS[name]
            cls(cls.config_class(), ds.n_users, ds.n_items).save(out / name, {"dataset": str(dataset),
                                                                              "untrained": True})
    return out


def histories(dataset: Path) -> dict:
    """Tonight's histories file (jobs/score.py's setup step, once per dataset), made in a child process apart
    from the timed scoring runs so its one-off cost and peak memory are reported on their own."""
    target = dataset / "tonight" / "histories.parquet"
    if target.exists():
        return {"cached": True}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", "import sys; from reasonrec.recommend.histories import "
                              "ensure_histories; ensure_histories(sys.argv[1])", str(dataset)], cwd=REPO)
    memory = TreeMemory(child.pid)
    if child.wait():
        raise SystemExit(f"building {target} failed ({child.returncode})")
    return {"cached": False, "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mib": round(memory.stop() / 2**20, 1), "bytes": target.stat().st_size}


def untrained_vlm(work: Path, dataset: Path, tools_dir: Path) -> Path:
    """A train_vlm-shaped run folder (model/ + run.json) around an untrained tiny VLM for this catalogue."""
    from reasonrec.data.schema import Dataset
    from reasonrec.vlm.build import build_tiny_vlm
    from reasonrec.vlm.instruction_config import InstructionConfig
    from reasonrec.vlm.model_config import VLMModelConfig

    out = work / f"vlm-{dataset.name}"
    if not (out / "run.json").exists():
        n_items = Dataset.load(str(dataset)).n_items
        cfg = VLMModelConfig(image_size=32)
        corpus = [f"USER: History: <item_{i}> item. Evidence horizon 0.5. Which item next? ASSISTANT: EH: 0.50 | "
                  f"Confidence: <conf_3> | Tools: <tool_sasrec> | Answer: <item_{i}>" for i in range(2000)]
        build_tiny_vlm(out / "model", n_items, ["sasrec"], corpus, cfg)
        settings = {"dataset": str(dataset), "tools_dir": str(tools_dir), "model": cfg.model_dump(mode="json"),
                    "instructions": InstructionConfig(tasks=["sequential"]).model_dump(mode="json")}
        (out / "run.json").write_text(json.dumps({"settings": settings, "plan": {}}))
    return out


class TreeMemory:
    """Peak of the summed RSS of a process and all its descendants, sampled every `every` seconds."""

    def __init__(self, pid: int, every: float = 0.5):
        self.root, self.every, self.peak, self._stop = psutil.Process(pid), every, 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                total = 0
                for proc in procs:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            time.sleep(self.every)

    def stop(self) -> int:
        self._stop.set()
        self.thread.join()
        return self.peak


def steady_state(folder: Path, users: int, seconds: float) -> dict:
    """Users/s between the first and the last part written (file mtimes), and the rest of `seconds` that rate
    leaves unexplained: the night's fixed cost (start-up before the first part, the tail after the last)."""
    import pyarrow.parquet as pq

    parts = sorted((p.stat().st_mtime, p) for p in folder.glob("*.parquet"))
    if len(parts) < 2:
        return {}
    after_first = sum(len(set(pq.read_table(p, columns=["user_id"])["user_id"].to_pylist())) for _, p in parts[1:])
    rate = after_first / (parts[-1][0] - parts[0][0])
    return {"steady_users_per_second": round(rate, 1), "parts": len(parts),
            "fixed_seconds_estimate": round(seconds - users / rate, 1)}


# The recommend settings of every tool-route night here, the job's and the single process's alike.
RECOMMEND = {"policy": "config", "retrieval_index": "ivf", "consult_pool": ["sasrec"]}


def score(dataset: Path, tools_dir: Path, vlm_dir: Path | None, out: Path, mode: str, max_users: int | None,
          batch_size: int, candidate_actors: int | None = None, fused: bool = True,
          tool_night_cpus: float | None = None) -> dict:
    args = [f"recommend.dataset={dataset}", f"recommend.tools_dir={tools_dir}",
            *(f"recommend.{key}={json.dumps(value) if isinstance(value, list) else value}"
              for key, value in RECOMMEND.items()),
            f"recommend.vlm_dir={vlm_dir if vlm_dir else 'null'}", f"mode={mode}", f"out={out}", "eval_split=null",
            f"batch_size={batch_size}", "bootstrap.prepare_config=null", "bootstrap.train_tools_config=null",
            "bootstrap.train_vlm_config=null", "bootstrap.calibrate_config=null", "run_date=2026-11-22",
            *([f"max_users={max_users}"] if max_users else []),
            *([f"candidate_actors={candidate_actors}"] if candidate_actors else []),
            f"fuse_tool_night={str(fused).lower()}",
            *([f"tool_night_cpus={tool_night_cpus}"] if tool_night_cpus else [])]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, str(REPO / "jobs" / "score.py"), *args], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    memory = TreeMemory(child.pid)
    _, stderr = child.communicate()
    peak = memory.stop()
    if child.returncode:
        raise SystemExit(f"score.py failed ({child.returncode}):\n{stderr[-3000:]}")
    summary = json.loads((out / "_summaries" / "run_date=2026-11-22.json").read_text())
    return {"mode": mode, "pipeline": "fused" if fused and mode == "tools" else "split",
            "candidate_actors": candidate_actors or "config", "users": summary["users"],
            "rows": summary["rows"],
            "scoring_seconds": summary["scoring_seconds"], "users_per_second": summary["users_per_second"],
            "rows_per_second": summary["rows_per_second"], "job_wall_seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mib_job_tree": round(peak / 2**20, 1), "latency_ms_per_user": summary["latency_ms_per_user"],
            "route_shares": summary["route_shares"],
            **steady_state(out / "run_date=2026-11-22", summary["users"], summary["scoring_seconds"])}


def single_process(dataset: Path, tools_dir: Path, out: Path, batch_size: int) -> dict:
    """The tool-route night without Ray, in a child process (its memory sampled like the job's): read and check
    tonight's users file, then per batch of `batch_size` users CandidateScorer -> RouterScorer -> write_batch, the
    pipeline's own callables, each built once as its actor would be."""
    shutil.rmtree(out, ignore_errors=True)   # a fresh folder: the completeness check counts every part in it
    out.mkdir(parents=True)
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--single-process-child", str(dataset), str(tools_dir),
                              str(out), str(batch_size)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    memory = TreeMemory(child.pid)
    stdout, stderr = child.communicate()
    peak = memory.stop()
    if child.returncode:
        raise SystemExit(f"the single-process night failed ({child.returncode}):\n{stderr[-3000:]}")
    night = json.loads(stdout.strip().splitlines()[-1])
    return {**night, "process_wall_seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mib": round(peak / 2**20, 1), **steady_state(out, night["users"], night["seconds"])}


def single_process_child(dataset: str, tools_dir: str, out: str, batch_size: int) -> None:
    import torch

    from actors.recommend import CandidateScorer, RouterScorer, write_batch
    from reasonrec.recommend.bundle import Bundle
    from reasonrec.recommend.completeness import read_requested, verify_staging
    from reasonrec.recommend.config import RecommendConfig
    from reasonrec.recommend.histories import ensure_histories
    from reasonrec.recommend.system import resolve

    started = time.perf_counter()
    system = resolve(RecommendConfig(dataset=dataset, tools_dir=tools_dir, vlm_dir=None, **RECOMMEND))
    ensure_histories(system.dataset)
    Bundle(system).keep_retrieval_index()   # the job's setup steps: no-ops once the job's runs kept the files
    requested = read_requested(str(Path(dataset) / "users.parquet"))
    run_date = "2026-11-22"
    candidates = CandidateScorer(system, out, run_date)
    router = RouterScorer(system, 10, run_date, "tools")
    loaded = time.perf_counter()
    user_id = requested.table["user_id"].to_numpy(zero_copy_only=False)
    user_idx = requested.table["user_idx"].to_numpy()
    rows = users = 0
    for start in range(0, requested.n, batch_size):
        batch = {"user_id": user_id[start:start + batch_size], "user_idx": user_idx[start:start + batch_size]}
        stats = write_batch(router(candidates(batch)), out)
        rows += stats["rows"][0].as_py()
        users += stats["users"][0].as_py()
    scored = time.perf_counter()
    on_disk = verify_staging(out, requested, 10)
    seconds = scored - started
    print(json.dumps({"users": users, "rows": rows, "users_on_disk": on_disk.users, "quarantined": on_disk.quarantined,
                      "seconds": round(seconds, 2), "load_seconds": round(loaded - started, 2),
                      "loop_seconds": round(scored - loaded, 2), "users_per_second": round(users / seconds, 1),
                      "torch_threads": torch.get_num_threads(), "batch_size": batch_size}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--single-process-child":
        single_process_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--work", default="artifacts/bench/scale", help="cached datasets and tools")
    parser.add_argument("--tool-budget-s", type=float, default=120.0, help="training seconds per tool")
    parser.add_argument("--cpus-per-tool", type=float, default=1.0, help=(
        "train_tools' cpus_per_tool; 2 on a 2-core machine trains one tool at a time (each task loads the whole "
        "split: ~11 GiB at 1M users)"))
    parser.add_argument("--untrained-tools-from", type=int, default=1_000_000, help=(
        "datasets with at least this many users score with untrained tools of the same shape (see untrained_tools)"))
    parser.add_argument("--vlm-sample", type=int, default=0, help="users scored through the VLM (0: none)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--candidate-actors", type=int, nargs="+", default=[0], help=(
        "candidate actors of the tool-route run, one run each (0: the config's)"))
    parser.add_argument("--tool-night-cpus", type=float, default=None, help=(
        "CPUs per actor of the fused tool night (score.tool_night_cpus; default: the config's)"))
    parser.add_argument("--split-too", action="store_true", help=(
        "also run each tool-route night through the split candidate -> router -> write pipeline of a VLM night"))
    parser.add_argument("--single-process", action="store_true", help=(
        "also run the tool-route night in one process without Ray and report the pipeline's users/s against it"))
    args = parser.parse_args()
    work = (REPO / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for users in args.users:
        dataset = prepare(work, users, args.items)
        tools_dir = (untrained_tools(work, dataset) if users >= args.untrained_tools_from
                     else train_tools(work, dataset, args.tool_budget_s, args.cpus_per_tool))
        line = {"benchmark": "score_scale", "users_in_dataset": users, "items": args.items,
                "tools_weights": "untrained" if users >= args.untrained_tools_from else "trained",
                "histories_file": histories(dataset)}
        for run, actors in enumerate(args.candidate_actors):
            key = "tools" if run == 0 else f"tools_{actors}_candidate_actors"
            key += f"_run{run + 1}" if key in line else ""   # the same count twice: a repeat, kept apart
            line[key] = score(dataset, tools_dir, None, work / f"out-{dataset.name}-{actors}", "tools", None,
                              args.batch_size, actors or None, tool_night_cpus=args.tool_night_cpus)
            if args.split_too:
                split = f"tools_split_{actors}_candidate_actors"
                line[split + (f"_run{run + 1}" if split in line else "")] = score(
                    dataset, tools_dir, None, work / f"out-split-{dataset.name}-{actors}", "tools", None,
                    args.batch_size, actors or None, fused=False)
        if args.single_process:
            line["single_process"] = single_process(dataset, tools_dir, work / f"single-{dataset.name}",
                                                    args.batch_size)
            runs = [key for key in line if key == "tools" or key.startswith("tools_") and isinstance(line[key], dict)]
            single = line["single_process"]
            line["ray_vs_single_users_per_second"] = {
                key: round(line[key]["users_per_second"] / single["users_per_second"], 3) for key in runs}
            if "steady_users_per_second" in single:   # the same ratio between each night's first and last part
                line["ray_vs_single_steady_users_per_second"] = {
                    key: round(line[key]["steady_users_per_second"] / single["steady_users_per_second"], 3)
                    for key in runs if "steady_users_per_second" in line[key]}
        if args.vlm_sample:
            vlm_dir = untrained_vlm(work, dataset, tools_dir)
            line["vlm_sample"] = score(dataset, tools_dir, vlm_dir, work / f"out-vlm-{dataset.name}", "vlm+tools",
                                       args.vlm_sample, min(args.batch_size, 64))
        line["machine"] = f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores"
        print(json.dumps(line), flush=True)
        results.append(line)
    if len(results) > 1:
        first, last = results[0]["tools"], results[-1]["tools"]
        print(json.dumps({"benchmark": "score_scale_growth", "users_ratio": last["users"] / first["users"],
                          "seconds_ratio": round(last["scoring_seconds"] / first["scoring_seconds"], 2),
                          "peak_rss_ratio": round(last["peak_rss_mib_job_tree"] / first["peak_rss_mib_job_tree"], 2)}))


if __name__ == "__main__":
    main()

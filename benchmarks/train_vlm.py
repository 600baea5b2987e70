"""Benchmark: training throughput and memory of jobs/train_vlm.py (tiny preset, Ray Train + DeepSpeed on CPU).

    .venv/bin/python benchmarks/train_vlm.py                                  # synthetic, 2 workers, ZeRO-2
    .venv/bin/python benchmarks/train_vlm.py --steps 100 zero_stage=3 batch_size=16

Runs the real CLI in a child process on configs/synthetic.yaml (prepared data and trained tools
must exist; see that file's header) into a temporary out, with no evaluation, and prints one JSON line:
steady-state training samples/s (the first step, which includes ingest start-up, left out), samples/s over
the whole training segment, the job's wall time (Ray start-up, instruction build, model build included),
the peak RSS of each training worker (max over workers, from the job) and of the driver.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/synthetic.yaml")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps to time")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for the job")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "vlm"
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, str(REPO / "jobs" / "train_vlm.py"), "--config", args.config, f"out={out}",
             f"max_steps={args.steps}", f"checkpoint_every={args.steps}", "eval.tasks=[]", *args.overrides],
            cwd=REPO, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"train_vlm.py failed ({result.returncode}):\n{result.stderr[-4000:]}")
        driver_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB; Ray workers excluded
        metrics = json.loads((out / "metrics.json").read_text())
    train, plan, cfg = metrics["train"], metrics["plan"], metrics["config"]
    print(json.dumps({
        "benchmark": "train_vlm", "config": args.config, "overrides": args.overrides,
        "preset": cfg["model"]["preset"], "workers": cfg["num_workers"], "zero_stage": cfg["zero_stage"],
        "train_instructions": plan["n_examples"], "steps": train["step"], "global_batch": plan["batch_size"]
        * plan["grad_accum"] * plan["num_workers"],
        "steady_samples_per_second": train["steady_samples_per_second"],
        "segment_samples_per_second": train["segment_samples_per_second"],
        "fit_seconds": train["fit_seconds"], "job_wall_seconds": round(wall, 1),
        "final_loss": round(train["loss"], 4), "first_loss": round(train["history"][0]["loss"], 4),
        "peak_rss_mib_per_worker": train["peak_rss_mb_per_worker"], "peak_rss_mib_driver": round(driver_kib / 1024, 1),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, {platform.python_version()}",
        "load_average_1min": round(os.getloadavg()[0], 1),
    }))


if __name__ == "__main__":
    main()

"""Benchmark: wall time and peak memory of jobs/prepare_data.py on a real data set (default: Amazon Sports).

    .venv/bin/python benchmarks/prepare_data.py                       # sports, from ../shared/data
    .venv/bin/python benchmarks/prepare_data.py --config configs/ml-latest-small.yaml

Runs the real CLI in a child process (so its peak RSS is the job's own, read with getrusage) and prints one
JSON line: wall seconds, peak RSS, the job's own stage timings, and the sizes it produced.
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--config", default="configs/sports.yaml")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dataset"
        started = time.perf_counter()
        subprocess.run([sys.executable, str(REPO / "jobs" / "prepare_data.py"), "--config", args.config,
                        f"out={out}", *args.overrides], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
        report = json.loads((out / "prepare_report.json").read_text())
        disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    manifest = report["manifest"]
    print(json.dumps({
        "benchmark": "prepare_data", "config": args.config, "overrides": args.overrides,
        "interactions": manifest["n_interactions"], "users": manifest["n_users"], "items": manifest["n_items"],
        "wall_seconds": round(wall, 2), "peak_rss_mib": round(peak_kib / 1024, 1),
        "stage_seconds": report["timings_seconds"],
        "interactions_per_second": round(manifest["n_interactions"] / wall),
        "output_mib": round(disk / 2**20, 1),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, {platform.python_version()}",
    }))


if __name__ == "__main__":
    main()

"""The nightly job's commit gate at scale: how long reading tonight's users and reading the staging folder back
(reasonrec/recommend/completeness.py) take for a night of N users, and the driver memory they need.

    .venv/bin/python benchmarks/completeness_check.py --users 100000 1000000

For each N: a users file of N users (2 % of rows repeated, as a messy export would), then one part per batch of
`--batch` users in the nightly table's schema (k rows each; 0.5 % of users in _quarantine/ instead), written to
a temporary folder; then `read_requested` and `verify_staging` timed. Prints one JSON line per N.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reasonrec.recommend.completeness import read_requested, verify_staging  # noqa: E402
from reasonrec.recommend.table import TABLE_SCHEMA  # noqa: E402


def write_night(root: Path, n_users: int, batch: int, k: int, seed: int) -> Path:
    """A users file and a staging folder shaped like a real night's."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"user_{i:08d}" for i in range(n_users)], dtype=object)
    repeated = rng.choice(n_users, size=n_users // 50, replace=False)
    order = np.concatenate([np.arange(n_users), repeated])
    pq.write_table(pa.table({"user_id": pa.array(ids[order], pa.string()), "user_idx": pa.array(order, pa.int64())}),
                   root / "users.parquet")
    staging = root / "staging"
    (staging / "_quarantine").mkdir(parents=True)
    held = rng.random(n_users) < 0.005
    day = dt.date(2026, 12, 4)
    for start in range(0, n_users, batch):
        users = np.arange(start, min(start + batch, n_users))
        scored, quarantined = users[~held[users]], users[held[users]]
        n = len(scored) * k
        table = pa.table({
            "user_id": pa.array(np.repeat(ids[scored], k), pa.string()),
            "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), len(scored))),
            "item_id": pa.array(rng.integers(0, 100_000, n).astype(str)), "score": pa.array(rng.random(n, np.float32)),
            "route": pa.array(["tool"] * n), "risk": pa.array(["low"] * n),
            "evidence_horizon": pa.array(rng.random(n, np.float32)), "confidence": pa.array(rng.random(n, np.float32)),
            "tools_consulted": pa.array([[]] * n, pa.list_(pa.string())), "rationale": pa.array(["EH low"] * n),
            "model_version": pa.array(["v@1"] * n), "run_date": pa.array([day] * n, pa.date32())},
            schema=TABLE_SCHEMA)
        pq.write_table(table, staging / f"part-{start:010d}.parquet")
        if len(quarantined):
            pq.write_table(pa.table({"user_id": pa.array(ids[quarantined], pa.string()),
                                     "user_idx": pa.array(quarantined, pa.int64()),
                                     "reason": ["unknown"] * len(quarantined),
                                     "run_date": pa.array([day] * len(quarantined), pa.date32())}),
                           staging / "_quarantine" / f"part-{start:010d}.parquet")
    return staging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[100_000])
    parser.add_argument("--batch", type=int, default=256, help="users per part (jobs/score.py batch_size)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for n_users in args.users:
        with tempfile.TemporaryDirectory(prefix="bench-completeness-") as tmp:
            root = Path(tmp)
            started = time.perf_counter()
            staging = write_night(root, n_users, args.batch, args.k, args.seed)
            written = time.perf_counter() - started
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            requested = read_requested(str(root / "users.parquet"))
            read_s = time.perf_counter() - started
            started = time.perf_counter()
            night = verify_staging(str(staging), requested, args.k)
            verify_s = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(json.dumps({
                "benchmark": "completeness_check", "users": n_users, "requested_after_dedup": requested.n,
                "duplicates": requested.duplicates, "parts": night.files, "rows": night.rows,
                "quarantined": night.quarantined, "k": args.k, "batch": args.batch,
                "read_requested_s": round(read_s, 2), "verify_staging_s": round(verify_s, 2),
                "rows_checked_per_s": round(night.rows / verify_s), "fixture_write_s": round(written, 1),
                "peak_rss_mib": round(peak / 1024), "peak_rss_growth_mib_in_check": round((peak - rss_before) / 1024),
                "machine": f"{len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.1f}"}), flush=True)


if __name__ == "__main__":
    main()

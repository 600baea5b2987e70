"""The nightly run summary: what a night covered (users, rows, quarantine, duplicates), how it was answered (route
shares, answer sources) and how fast (per-route latency percentiles, throughput), from the write tasks' per-part
statistics and the verified staging folder. Written beside the table as <out>/_summaries/run_date=....json."""

from __future__ import annotations

import json

import numpy as np

from reasonrec.io import join, open_fs
from reasonrec.recommend.completeness import NightOnDisk, RequestedUsers
from reasonrec.recommend.system import System
from reasonrec.router.answer import answer_sources
from reasonrec.router.policy import ROUTES
from reasonrec.scoring import ScoreConfig


def summarise(cfg: ScoreConfig, parts: list[dict], system: System, seconds: float, check: dict | None,
              requested: RequestedUsers, on_disk: NightOnDisk) -> dict:
    """parts: one dict per written part with per-user lists `routes`, `latency` (s) and `sources`."""
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


def write_summary(cfg: ScoreConfig, summary: dict) -> str:
    """<out>/_summaries/run_date=YYYY-MM-DD.json (local or s3://); returns its path."""
    fs, root = open_fs(cfg.out)
    path = join(root, "_summaries", f"run_date={cfg.run_date.isoformat()}.json")
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as f:
        json.dump(summary, f, indent=2)
    return path

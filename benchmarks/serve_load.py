"""Benchmark: the Serve app under a fixed request rate on loopback, per route (issue 7).

    .venv/bin/python benchmarks/serve_load.py                                  # demo artifacts, 50 rps, 30 s a route
    .venv/bin/python benchmarks/serve_load.py --rate 50 --seconds 30 --route-rate vlm=10
    .venv/bin/python benchmarks/serve_load.py --url http://127.0.0.1:8000 --dataset artifacts/datasets/synthetic
    .venv/bin/python benchmarks/serve_load.py --routes tool --variant 'default throughput_optimized=false \
        tools_in_ingress=false' --variant 'optimized tools_in_ingress=false' --variant 'one-hop'   # side by side

Open loop: request i of a route is sent at t0 + i / rate whatever the earlier ones are doing (no coordinated
omission), and its latency runs from that scheduled time to the last byte of the answer. Routes:

    tool        POST /v1/recommend for known users whose answer took the tool route (low risk)
    vlm         the same for users on the vlm / vlm+tools routes (the VLM deployment, batched)
    cold_start  POST /v1/recommend for unknown user ids (most-popular, ranked by the sequential tool)
    ctr         POST /v1/ctr, 10 random items for a known user

--tools-stage N instead times the tool route's work without Ray or HTTP (`tools_stage`: retrieval, the best
tool, answer) for N users one at a time, with 1 and with 2 torch threads, two rounds (what `torch_threads`
was chosen on).

Users are sorted into tool / vlm by one untimed request each (the route is a property of the user tonight).
Without --url the app is started in this process's Ray (jobs/serve.py's `start`, --config and overrides), so
the client and the replicas share the machine's cores. Prints one JSON line: per route p50/p95/p99 (ms) of
the 200 answers, the rate asked and achieved (200 answers per second), errors by status, the load average,
and the goal line (tool route p99 <= 50 ms at 50 rps).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
ROUTES = ("tool", "vlm", "cold_start", "ctr")
GOAL_P99_MS, GOAL_RATE = 50.0, 50.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running app; default: start one from --config in this process")
    parser.add_argument("--config", default="configs/synthetic.yaml", help="config file, its serve section (no --url)")
    parser.add_argument("--dataset", help="dataset whose users and items are asked for (default: the config's)")
    parser.add_argument("--rate", type=float, default=GOAL_RATE, help="requests per second per route")
    parser.add_argument("--route-rate", action="append", default=[], metavar="ROUTE=RPS", help="per-route rate")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each route's run")
    parser.add_argument("--routes", default=",".join(ROUTES), help=f"comma-separated subset of {ROUTES}")
    parser.add_argument("--probe-users", type=int, default=200, help="users sorted into tool / vlm")
    parser.add_argument("--cpus", type=int, default=None, help="ray.init num_cpus when starting the app")
    parser.add_argument("--tools-stage", type=int, default=0, metavar="N",
                        help="time tools_stage in-process for N users (1 vs 2 torch threads) instead")
    parser.add_argument("--variant", action="append", default=[], metavar="'NAME key=value ...'",
                        help="run the load once per variant (a fresh Ray and app each, its overrides on top of the "
                             "positional ones), one JSON line with every variant side by side")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="ServeConfig overrides (no --url)")
    return parser.parse_args(argv)


def start_app(args: argparse.Namespace):
    """(url, ServeConfig) of an app started here with jobs/serve.py's own `start`."""

    from reasonrec.config import load_config
    from reasonrec.serving.config import ServeConfig

    cfg = load_config(ServeConfig, args.config, args.overrides)
    spec = importlib.util.spec_from_file_location("serve_job", REPO / "jobs" / "serve.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job.start(cfg, num_cpus=args.cpus, include_dashboard=False, log_to_driver=False), cfg


async def wait_ready(session: aiohttp.ClientSession, url: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with session.get(f"{url}/readyz") as response:
                if response.status == 200:
                    return await response.json()
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/readyz not ready after {timeout} s")
        await asyncio.sleep(0.5)


async def probe(session: aiohttp.ClientSession, url: str, users: list[str]) -> dict[str, list[str]]:
    """Known users by the route their answer takes (one untimed request each, which also warms the app)."""
    by_route: dict[str, list[str]] = {"tool": [], "vlm": []}
    for user in users:
        async with session.post(f"{url}/v1/recommend", json={"user_id": user, "k": 10}) as response:
            body = await response.json()
        if response.status == 200:
            by_route["tool" if body["route"] == "tool" else "vlm"].append(user)
    return by_route


async def run_route(session: aiohttp.ClientSession, url: str, path: str, bodies: list[dict], rate: float,
                    seconds: float) -> dict:
    """Open-loop load: body i at t0 + i / rate; latency from the scheduled time to the whole answer."""
    n = max(1, int(rate * seconds))
    latencies, statuses = [], {}
    t0 = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        scheduled = t0 + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        try:
            async with session.post(f"{url}{path}", json=bodies[i % len(bodies)]) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientError as err:
            status = type(err).__name__
        done = time.perf_counter()
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            latencies.append(done - scheduled)

    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    ms = np.array(latencies) * 1e3
    out = {"rate_asked": rate, "sent": n, "ok": len(latencies), "achieved_rps": round(len(latencies) / elapsed, 2),
           "errors": {str(k): v for k, v in statuses.items() if k != 200}}
    if len(ms):
        out.update({f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 95, 99)})
        out["max_ms"] = round(float(ms.max()), 2)
    return out


async def main_async(args: argparse.Namespace, url: str, dataset: str) -> dict:
    import pandas as pd

    rates = {route: args.rate for route in ROUTES}
    for item in args.route_rate:
        route, value = item.split("=", 1)
        if route not in ROUTES:
            raise SystemExit(f"--route-rate {item}: unknown route {route!r}; routes: {ROUTES}")
        rates[route] = float(value)
    routes = [r for r in args.routes.split(",") if r]
    users = pd.read_parquet(Path(dataset) / "users.parquet", columns=["user_id"])["user_id"].astype(str).tolist()
    items = pd.read_parquet(Path(dataset) / "items.parquet", columns=["item_id"])["item_id"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    connector = aiohttp.TCPConnector(limit=0)   # open loop: never wait for a free connection
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        ready = await wait_ready(session, url)
        probe_users = list(rng.choice(users, size=min(args.probe_users, len(users)), replace=False))
        by_route = await probe(session, url, probe_users)
        bodies = {
            "tool": [{"user_id": u, "k": 10} for u in by_route["tool"]],
            "vlm": [{"user_id": u, "k": 10} for u in by_route["vlm"]],
            "cold_start": [{"user_id": f"new-user-{i}", "k": 10} for i in range(100)],
            "ctr": [{"user_id": u, "item_ids": rng.choice(items, size=10, replace=False).tolist()}
                    for u in probe_users],
        }
        results = {}
        for route in routes:
            if not bodies[route]:
                results[route] = {"skipped": "no probed user takes this route"}
                continue
            path = "/v1/ctr" if route == "ctr" else "/v1/recommend"
            results[route] = await run_route(session, url, path, bodies[route], rates[route], args.seconds)
    tool = results.get("tool", {})
    return {"benchmark": "serve_load", "url": url, "model_version": ready["model_version"],
            "seconds_per_route": args.seconds, "probed_users": {k: len(v) for k, v in by_route.items()},
            "routes": results, "loadavg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
            "goal": {"route": "tool", "p99_ms_at_most": GOAL_P99_MS, "rate": GOAL_RATE,
                     "met": bool(tool.get("rate_asked", 0) >= GOAL_RATE and not tool.get("errors")
                                 and tool.get("p99_ms", float("inf")) <= GOAL_P99_MS)}}


def time_tools_stage(args: argparse.Namespace) -> dict:
    """tools_stage per user, no Ray, no HTTP: the floor under the tool route's latency."""
    import torch

    from reasonrec.config import load_config
    from reasonrec.recommend.bundle import Bundle
    from reasonrec.recommend.system import resolve as resolve_system
    from reasonrec.serving.api import RecommendRequest
    from reasonrec.serving.config import ServeConfig
    from reasonrec.serving.online import Catalogue, resolve, tools_stage

    cfg = load_config(ServeConfig, args.config, args.overrides)
    bundle = Bundle(resolve_system(cfg.recommend))
    version = bundle.version
    catalogue = Catalogue(bundle)
    bundle.everything, bundle.tonight_eh, bundle.tools, bundle.retrieval  # noqa: B018 - load before timing
    users = [str(u) for u in bundle.user_ids[:args.tools_stage]]
    runs = {}
    for round_ in range(2):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            seconds = []
            for user in users:
                started = time.perf_counter()
                tools_stage(bundle, resolve(RecommendRequest(user_id=user, k=10), catalogue, cfg), version)
                seconds.append(time.perf_counter() - started)
            ms = np.array(seconds) * 1e3
            runs[f"round{round_}_threads{threads}"] = {f"p{q}_ms": round(float(np.percentile(ms, q)), 2)
                                                       for q in (50, 95, 99)}
    return {"benchmark": "serve_load.tools_stage", "model_version": version, "users": len(users), "runs": runs,
            "loadavg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    os.chdir(REPO)
    if args.tools_stage:
        result = time_tools_stage(args)
        print(json.dumps(result))
        return result
    if args.variant:
        if args.url:
            raise SystemExit("--variant starts its own apps: leave out --url")
        variants = {}
        for spec in args.variant:
            name, *overrides = spec.split()
            variants[name] = run_once(argparse.Namespace(**{**vars(args), "overrides": args.overrides + overrides}))
        result = {"benchmark": "serve_load", "variants": variants, "cpus": os.cpu_count()}
    else:
        result = run_once(args)
    print(json.dumps(result))
    return result


def run_once(args: argparse.Namespace) -> dict:
    """One load run: against --url, or an app started here (and shut down, with its Ray, afterwards)."""
    started = args.url is None
    if started:
        url, cfg = start_app(args)
        dataset = args.dataset or cfg.recommend.dataset
    else:
        url, dataset = args.url.rstrip("/"), args.dataset or "artifacts/datasets/synthetic"
    try:
        result = asyncio.run(main_async(args, url, dataset))
    finally:
        if started:
            import ray
            from ray import serve

            serve.shutdown()
            ray.shutdown()
    if started:
        result["app"] = {"overrides": args.overrides, "throughput_optimized": cfg.throughput_optimized,
                         "tools_in_ingress": cfg.tools_in_ingress}
    return result


if __name__ == "__main__":
    main()

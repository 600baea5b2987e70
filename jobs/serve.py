"""Online serving (issue 7): the nightly job's artifacts and router behind an HTTP API on Ray Serve.

    python jobs/serve.py                                           # synthetic demo artifacts, 127.0.0.1:8000
    python jobs/serve.py --config configs/synthetic.yaml port=8080 recommend.policy=config
    serve run actors.serve:app config=configs/synthetic.yaml # the same app through Serve's CLI

Recipe: config -> model version and router exactly as jobs/score.py resolves them (calibrated policy applied)
-> the app (actors/serve.py: Router ingress, Tools, VLM) -> serve.run on `host:port` (127.0.0.1 unless
configured) -> print the URL -> serve until Ctrl-C. The API and its OpenAPI schema: <url>/docs, <url>/openapi.json.
"""

from __future__ import annotations

import os
import time

import ray
from ray import serve

from actors.cluster import init_ray, joins_existing, stop_on_signals
from actors.serve import build
from reasonrec.cli import job_parser, resolve_config
from reasonrec.recommend.system import resolve
from reasonrec.serving.config import ServeConfig


THROUGHPUT_ENV = "RAY_SERVE_THROUGHPUT_OPTIMIZED"


def start(cfg: ServeConfig, **ray_init) -> str:
    """Deploy the app on the current (or a new local) Ray cluster; returns its URL. Returns before the models
    are loaded: GET <url>/readyz says when they are. ray_init: extra ray.init arguments for a new cluster."""
    system = resolve(cfg.recommend)
    if not joins_existing(cfg.ray_address):
        # Read by every Serve process at import: it must be in the environment before Ray starts them.
        os.environ[THROUGHPUT_ENV] = "1" if cfg.throughput_optimized else "0"
    elif cfg.throughput_optimized and os.environ.get(THROUGHPUT_ENV) != "1":
        # A job's driver inherits the cluster's environment: without the variable here, Serve runs without it.
        print(f"[serve] throughput_optimized: {THROUGHPUT_ENV}=1 is not in this process's environment; Serve's "
              "processes use the mode only if the cluster's `ray start` had it (ray_cluster.yaml does)", flush=True)
    init_ray(cfg.ray_address, **ray_init)
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(build(cfg, system), name=cfg.app_name, route_prefix=cfg.route_prefix)
    url = f"http://{cfg.host}:{cfg.port}{cfg.route_prefix.rstrip('/')}"
    print(f"[serve] {cfg.app_name} serving {system.model_version} at {url} (API docs: {url}/docs, readiness: {url}/readyz)",
          flush=True)
    return url


def main(argv: list[str] | None = None) -> None:
    args = job_parser(__doc__).parse_args(argv)
    cfg = resolve_config(ServeConfig, args)
    try:
        start(cfg)
        stop_on_signals()   # `kill` (SIGTERM) shuts the app and its local Ray down like Ctrl-C does
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        print("[serve] shutting down", flush=True)
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()


if __name__ == "__main__":
    main()

"""Online serving (issue 7): the nightly job's artifacts and router behind an HTTP API on Ray Serve.

    python jobs/serve.py                                           # synthetic demo artifacts, 127.0.0.1:8000
    python jobs/serve.py --config configs/synthetic.yaml port=8080 recommend.policy=config
    serve run actors.serve:app config=configs/synthetic.yaml # the same app through Serve's CLI

Recipe: config -> model version and router exactly as jobs/score.py resolves them (calibrated policy applied)
-> the app deployed by actors/serve.py's `deploy` (Router ingress, Tools, VLM; serve.run on `host:port`, 127.0.0.1
unless configured) -> print the URL -> serve until Ctrl-C. The API and its OpenAPI schema: <url>/docs, <url>/openapi.json.
"""

from __future__ import annotations

import time

import ray
from ray import serve

from actors.cluster import stop_on_signals
from actors.serve import deploy
from reasonrec.cli import job_parser, resolve_config
from reasonrec.recommend.system import resolve
from reasonrec.serving.config import ServeConfig


def start(cfg: ServeConfig, **ray_init) -> str:
    """Resolve the system as the nightly job does and deploy the app (actors/serve.py); returns its URL before the
    models are loaded (GET <url>/readyz says when they are). ray_init: extra ray.init arguments for a new cluster."""
    system = resolve(cfg.recommend)
    url = deploy(cfg, system, **ray_init)
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

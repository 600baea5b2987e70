"""How a job's driver starts or joins Ray, and how it stops: one place for every job and the Serve app.

A new local cluster (a laptop run: no address given and no RAY_ADDRESS) listens on loopback only. Ray on Linux
otherwise binds its gRPC servers, the dashboard agent and the metrics exporter on every interface, without
authentication on the metrics port. Ray's own single-machine mode (what it uses on macOS) puts every process on
127.0.0.1; Serve replicas' inter-deployment gRPC servers, which Ray binds on every interface whatever the mode,
follow through `keep_serve_replicas_on_loopback`. `REASONREC_RAY_LISTEN=all` keeps Ray's Linux default for a
laptop that other machines must reach.
Joining a cluster (`ray job submit`, `ray_address`, RAY_ADDRESS) changes nothing: that cluster's `ray start`
decided its addresses.

SIGTERM and SIGINT become exceptions in the main thread, so a stopped job runs its `finally` blocks (the nightly
job aborts its staging folder, the Serve job shuts Serve down) and then Ray's own exit hook, `ray.shutdown()`,
which stops every process of a cluster this driver started. A driver killed outright (SIGKILL) runs nothing:
for that, a local cluster started here gets a watcher process (actors/reaper.py) that stops what Ray leaves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import ray

REPO_ROOT = Path(__file__).resolve().parents[1]   # where `python -m actors.reaper` finds the package
LISTEN_ENV = "REASONREC_RAY_LISTEN"          # "loopback" (default) or "all", for a new local cluster only
RAY_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"   # "0": Ray's single-machine (loopback) mode


def joins_existing(address: str | None) -> bool:
    """True when ray.init will connect to a running cluster rather than start a local one."""
    return ray.is_initialized() or address is not None or bool(os.environ.get("RAY_ADDRESS"))


def init_ray(address: str | None, **kwargs) -> None:
    """ray.init for a job's driver: join `address` (or RAY_ADDRESS), else start a local cluster on loopback."""
    starts_local = not joins_existing(address)
    if starts_local:
        listen = os.environ.get(LISTEN_ENV, "loopback")
        if listen not in ("loopback", "all"):
            raise SystemExit(f"{LISTEN_ENV}={listen!r}: use 'loopback' (the default) or 'all'")
        if listen == "loopback":
            _single_machine_mode()
            kwargs.setdefault("dashboard_host", "127.0.0.1")
    ray.init(address=address, ignore_reinit_error=True, **kwargs)
    if starts_local:   # a SIGKILLed driver would leave Ray's agents behind: actors/reaper.py stops them
        subprocess.Popen([sys.executable, "-m", "actors.reaper", str(os.getpid())], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(REPO_ROOT))


def _single_machine_mode() -> None:
    """Ray reads the flag into a module constant at import: set the constant for this process and the variable
    for the processes it starts (raylet, agents, workers), which read it themselves."""
    from ray._private import ray_constants

    os.environ[RAY_SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def keep_serve_replicas_on_loopback() -> None:
    """Ray Serve 2.60 binds every replica's inter-deployment gRPC server to "[::]:0" (serve/_private/replica.py,
    not configurable). In a cluster started by init_ray on loopback (the variable is inherited by every Ray
    process), bind it to 127.0.0.1 instead: that is the address Ray's single-machine mode advertises for the node,
    so the other replicas still reach it. Called where replica processes import the app (actors/serve.py);
    tests/jobs/test_stop_signals.py checks the sockets and a request across deployments."""
    if os.environ.get(RAY_SINGLE_MACHINE_ENV) != "0":
        return
    from ray.serve._private import replica

    bind = getattr(replica, "add_port_to_grpc_server", None)
    if bind is None or getattr(bind, "on_loopback", False):
        return

    def bind_on_loopback(server, address: str):
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address[len("[::]:"):]
        return bind(server, address)

    bind_on_loopback.on_loopback = True
    replica.add_port_to_grpc_server = bind_on_loopback


def stop_on_signals() -> None:
    """SIGTERM -> SystemExit(143) and SIGINT -> KeyboardInterrupt in the main thread (a killed job cleans up).
    Call it after `init_ray`: ray.init installs Ray's own fatal-signal handler, which logs and aborts."""

    def _terminate(signum, _frame):
        signal.signal(signum, signal.SIG_DFL)   # a second signal ends the process at once
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)


def gpus_for(setting: float | str, sharers: int = 1) -> float:
    """GPUs one of `sharers` actors asks for: the setting as given, or with "auto" this cluster's GPUs shared
    evenly, at most one each (0.0 on a cluster without GPUs, or before Ray is started). Every job's "auto"."""
    if setting != "auto":
        return float(setting)
    if not ray.is_initialized():
        return 0.0
    return min(1.0, ray.cluster_resources().get("GPU", 0.0) / max(1, sharers))

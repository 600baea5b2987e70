"""Stopping a job as an operator does (SIGTERM from `kill` or a supervisor, SIGINT from Ctrl-C): jobs/score.py
and jobs/serve.py shut down the local Ray they started and leave no process of it behind, the nightly job
aborts its staging folder and keeps last night's partition; and while they run, every socket that local Ray
listens on is bound to loopback (actors/cluster.py). A driver killed outright leaves nothing either
(actors/reaper.py)."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from reasonrec.publish import committed
from tests.conftest import REPO_ROOT
from tests.jobs.test_score import DATE, PARTITION, fingerprint, kill_session, leftovers, score_args, session_processes
from tests.jobs.test_serve import free_port
from tests.recommend.conftest import build_world

pytestmark = [pytest.mark.ray, pytest.mark.slow]   # a world, a night and a Serve app started and stopped: ~2 min on 2 busy cores


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("stop-world"), n_users=40)


def start(script: str, args: list[str], log: Path) -> subprocess.Popen:
    """jobs/<script> in a session of its own, so every process it (and its Ray) starts can be found by sid."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "jobs" / script), *args], cwd=REPO_ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, proc: subprocess.Popen, log: Path, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"exited {proc.returncode} before {what}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no {what} in {timeout} s:\n{log.read_text()[-4000:]}"
        time.sleep(0.05)


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def listening(sid: int) -> list[tuple[str, str, int]]:
    """(process name, ip, port) of every TCP socket the session's processes listen on."""
    pids = {p.pid: p for p in session_processes(sid)}
    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            try:
                name = pids[conn.pid].name()
            except psutil.NoSuchProcess:
                continue
            found.append((name, conn.laddr.ip, conn.laddr.port))
    return found


def assert_stops_cleanly(proc: subprocess.Popen, signum: int, log: Path) -> None:
    """Send signum; the job exits on its own and, within a grace period, nothing of its session is left."""
    ray_processes = [p for p in session_processes(proc.pid) if p.pid != proc.pid]
    assert ray_processes, "the job started no Ray processes of its own"
    proc.send_signal(signum)
    code = proc.wait(timeout=120)
    assert code == (143 if signum == signal.SIGTERM else 130) or code == 0, log.read_text()[-4000:]
    deadline = time.monotonic() + 30
    while left := session_processes(proc.pid):
        assert time.monotonic() < deadline, f"still running 30 s after the job exited: " \
                                            f"{[(p.pid, p.name()) for p in left]}\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def test_sigterm_mid_night_aborts_staging_keeps_last_night_and_stops_ray(job, world, tmp_path):
    out = tmp_path / "recs"
    job("score.py", *score_args(world, out))
    before, record = fingerprint(out / PARTITION), committed(str(out), PARTITION)

    log = tmp_path / "terminated.log"
    proc = start("score.py", [*score_args(world, out), "read_blocks=30"], log)
    try:
        wait_for(lambda: list((out / "_staging").glob("*/part-*.parquet")), proc, log, "part written")
        sockets = listening(proc.pid)
        assert sockets and all(is_loopback(ip) for _, ip, _ in sockets), sockets
        assert_stops_cleanly(proc, signal.SIGTERM, log)
    finally:
        kill_session(proc.pid)
    assert committed(str(out), PARTITION) == record and fingerprint(out / PARTITION) == before
    assert leftovers(out) == [], "the stopped night's staging folder was not aborted"
    assert DATE in record["partition"]


def test_a_sigkilled_driver_leaves_no_ray_process_behind(job, world, tmp_path):
    """SIGKILL reaches the driver alone (an OOM kill, `kill -9`): without actors/reaper.py Ray's DashboardAgent
    and RuntimeEnvAgent stayed alive with parent 1 (seen with ray 2.60); the reaper stops them."""
    out = tmp_path / "recs"
    log = tmp_path / "killed.log"
    proc = start("score.py", [*score_args(world, out), "read_blocks=30"], log)
    try:
        wait_for(lambda: list((out / "_staging").glob("*/part-*.parquet")), proc, log, "part written")
        names = {p.name() for p in session_processes(proc.pid)}
        assert {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, names
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        deadline = time.monotonic() + 30
        while left := session_processes(proc.pid):
            assert time.monotonic() < deadline, f"still running 30 s after the driver was killed: " \
                                                f"{[(p.pid, p.name(), p.ppid()) for p in left]}"
            time.sleep(0.2)
    finally:
        kill_session(proc.pid)


def test_serve_job_stops_its_app_and_ray_on_ctrl_c(world, tmp_path):
    """SIGINT, what a user running the app in a terminal sends (the nightly test above sends SIGTERM, what
    `ray job stop` and Kubernetes send; both become the same exception in actors/cluster.py)."""
    signum = signal.SIGINT
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start("serve.py", [f"recommend.dataset={world.dataset}", f"recommend.vlm_dir={world.vlm_dir}",
                              "recommend.policy=config", f"port={port}"], log)
    try:
        wait_for(lambda: "[serve] " in log.read_text() and " serving " in log.read_text(), proc, log, "app URL")
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(f"{url}/readyz", timeout=60).status_code == 200, proc, log, "ready app")
        # Router -> VLM replica: a call between deployments, over the replicas' gRPC servers kept on loopback.
        explained = requests.post(f"{url}/v1/explain", json={"user_id": "user_0000001", "item_id": "item_0000001"},
                                  timeout=120)
        assert explained.status_code == 200, explained.text
        sockets = listening(proc.pid)
        assert ("127.0.0.1", port) in {(ip, p) for _, ip, p in sockets}, sockets
        assert all(is_loopback(ip) for _, ip, _ in sockets), sockets
        assert_stops_cleanly(proc, signum, log)
    finally:
        kill_session(proc.pid)
    assert "[serve] shutting down" in log.read_text()

"""`ray start --head` + `ray job submit --working-dir . -- python jobs/score.py ...`: the way the nightly job is
launched on a cluster, against a real head node started for this test (and stopped by signalling its own
`ray start --block` process, never `ray stop`, which would stop every Ray on the machine)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reasonrec.publish import committed
from tests.conftest import REPO_ROOT
from tests.recommend.conftest import build_world

pytestmark = pytest.mark.ray   # starts or joins Ray: the xdist group "ray" (tests/conftest.py)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """A one-node Ray cluster (2 CPUs, dashboard + job server on 127.0.0.1) for this module."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    gcs, dashboard, agent_http, agent_grpc, metrics, runtime_env = (free_port() for _ in range(6))
    # A short temp dir of its own: Ray's Unix sockets live under it and must fit in 107 bytes (a pytest-xdist
    # worker's tmp_path, /tmp/pytest-of-<user>/pytest-<n>/popen-gw<k>/..., can push them past it).
    temp = Path(tempfile.mkdtemp(prefix="rr-ray-", dir="/tmp"))
    proc = subprocess.Popen([str(Path(bin_dir) / "ray"), "start", "--head", "--block", f"--port={gcs}",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                             # Every port explicit: another Ray on this machine holds the defaults (e.g. 52365).
                             f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
                             f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}", "--num-cpus=2",
                             "--num-gpus=0", f"--temp-dir={temp}", "--disable-usage-stats"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 120
    while time.time() < deadline:
        probe = subprocess.run([str(Path(bin_dir) / "ray"), "job", "list", "--address", address], env=env,
                               capture_output=True, text=True)
        if probe.returncode == 0:
            break
        if proc.poll() is not None:
            raise AssertionError(f"ray start exited: {proc.stdout.read()[-3000:]}")
        time.sleep(2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the head's job server did not come up in 120 s")
    yield address, env
    os.killpg(proc.pid, signal.SIGTERM)   # `ray start --block` stops the processes it started
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    shutil.rmtree(temp, ignore_errors=True)


def test_ray_job_submit_writes_the_table(head, tmp_path):
    address, env = head
    world = build_world(tmp_path / "world", n_users=60, n_items=150)
    out = tmp_path / "recs"
    command = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
               "--", "python", "jobs/score.py", f"recommend.dataset={world.dataset}",
               f"recommend.vlm_dir={world.vlm_dir}", "recommend.policy=config", f"out={out}", "run_date=2026-11-22",
               "k=5", "eval_users=20", "batch_size=32"]
    for _ in range(6):  # the job server answers before the node's agent is ready to take jobs
        submit = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
        if "No available agent to submit job" not in submit.stdout + submit.stderr:
            break
        time.sleep(10)
    assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-2000:]
    assert "succeeded" in submit.stdout
    record = committed(str(out), "run_date=2026-11-22")
    assert record is not None
    table = pq.read_table(out / "run_date=2026-11-22").to_pandas()
    assert table["user_id"].nunique() == 60 and len(table) == 60 * 5
    summary = json.loads((out / "_summaries" / "run_date=2026-11-22.json").read_text())
    assert summary["users"] == 60 and abs(sum(summary["route_shares"].values()) - 1.0) < 1e-9

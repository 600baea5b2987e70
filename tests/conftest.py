"""Shared fixtures: where the real data lives (and a skip with a reason when it does not), the jobs' CLI,
and a real S3 endpoint (a moto server on 127.0.0.1, bucket rr-test).

Tests that start or join Ray (in process or through a job) are marked `ray`. `make test` runs the suite on two
pytest-xdist workers: the `ray` tests one at a time in one worker (xdist group "ray": two Ray clusters on one
machine break Ray Train, see tests/jobs/test_evaluate_real.py), everything else beside them. Every other test runs
with RAY_ADDRESS set to a value Ray rejects at once, so a test that starts Ray without the mark fails instead of
racing the ray group, and a worker running such a test lowers its priority (nice 19): the two workers share 2
cores, and the ray group is both the longer one and the one with start-up deadlines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI and developer machines have ../shared beside the checkout; RR_SHARED_DATA points elsewhere if needed.
SHARED_DATA = Path(os.environ.get("RR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
RAY_GROUP = "ray"                                    # the xdist group of every test marked `ray`
NOT_A_RAY_TEST = "unmarked-test-started-ray--mark-it-pytest.mark.ray"   # RAY_ADDRESS outside `ray` tests
USER_RAY_ADDRESS = os.environ.get("RAY_ADDRESS")     # the caller's own, restored for `ray` tests
LOW_PRIORITY = 19                                    # niceness of an xdist worker once it runs a test not marked `ray`


@pytest.hookimpl(wrapper=True)   # before every plain hook, xdist's (it turns xdist_group marks into "@ray" ids)
def pytest_collection_modifyitems(items):
    """`ray` tests share one xdist group: one worker runs them one after another."""
    for item in items:
        if item.get_closest_marker("ray"):
            item.add_marker(pytest.mark.xdist_group(RAY_GROUP))
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before any fixture of the test is set up (session fixtures included): RAY_ADDRESS as the caller had it for
    a `ray` test, else an address ray.init rejects in about a second ("Invalid address format: unmarked-...")."""
    if item.get_closest_marker("ray"):
        if USER_RAY_ADDRESS is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = USER_RAY_ADDRESS
    else:
        os.environ["RAY_ADDRESS"] = NOT_A_RAY_TEST
        if os.environ.get("PYTEST_XDIST_WORKER") and os.nice(0) < LOW_PRIORITY:
            os.nice(LOW_PRIORITY - os.nice(0))   # yield the CPU to the ray group: it is the critical path and its
            #                                      jobs wait on start-up deadlines (a Ray head, a Serve app)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets (../shared/data); tests that need them skip when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set RR_SHARED_DATA to point at it)")
    return SHARED_DATA


def run_job(script: str, *args: str, timeout: float = 600, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run jobs/<script> as a user would (a subprocess from the repo root); fail loudly with its output."""
    full_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run([sys.executable, str(REPO_ROOT / "jobs" / script), *args], cwd=REPO_ROOT,
                            env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} exited {result.returncode}\nstdout:\n{result.stdout[-4000:]}\n"
                             f"stderr:\n{result.stderr[-4000:]}")
    return result


@pytest.fixture
def job():
    """The real job CLIs: job("prepare_data.py", "--source", "synthetic", ...)."""
    return run_job


@pytest.fixture
def s3_endpoint(monkeypatch):
    """A moto S3 server on 127.0.0.1 with bucket rr-test; AWS_* env points s3fs/boto3 at it for this test."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="rr-test")
    yield endpoint
    server.stop()

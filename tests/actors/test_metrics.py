"""The scoring actors' Prometheus metrics reach the node's metrics endpoint (what the dashboard scrapes)."""

from __future__ import annotations

import time
import urllib.request

import numpy as np
import pytest
import ray

from reasonrec.recommend.stages import Answer

pytestmark = pytest.mark.ray   # starts or joins Ray: the xdist group "ray" (tests/conftest.py)


def fake_answer() -> Answer:
    route = np.array(["tool", "tool", "vlm+tools"], dtype="<U9")
    return Answer(scores=np.zeros((3, 2)), route=route, risk=np.array(["low", "low", "high"]),
                  confidence=np.ones(3), parse_ok=np.ones(3, dtype=bool), source=np.array(["tool"] * 3),
                  tools_consulted=[[], [], ["sasrec"]], rationale=[""] * 3, latency=np.array([0.002, 0.003, 0.4]))


@ray.remote(num_cpus=0.1)
class Recorder:
    def __init__(self):
        from actors.metrics import RouteMetrics

        self.metrics = RouteMetrics()

    def record(self) -> bool:
        self.metrics.record(fake_answer())
        return True


@pytest.fixture
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, ignore_reinit_error=True)
    yield ray._private.worker.global_worker.node.metrics_export_port
    ray.shutdown()


def test_route_counters_and_latency_histogram_are_exported(local_ray):
    recorder = Recorder.remote()
    assert ray.get(recorder.record.remote())
    url = f"http://127.0.0.1:{local_ray}/metrics"
    text, deadline = "", time.time() + 60
    while time.time() < deadline:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        if 'reasonrec_rows_total' in text and 'reasonrec_row_latency_seconds_bucket' in text:
            break
        time.sleep(2)
    rows = [line for line in text.splitlines() if line.startswith("ray_reasonrec_rows_total{")]
    assert any('route="tool"' in line and line.rstrip().endswith(" 2.0") for line in rows), rows
    assert any('route="vlm+tools"' in line and line.rstrip().endswith(" 1.0") for line in rows), rows
    assert any(line.startswith("ray_reasonrec_row_latency_seconds_bucket{") for line in text.splitlines())

"""gpus_for: the one 'auto' GPU rule of every job (nightly VLM actors, Serve replicas, tool tasks, Ray Train)."""

from __future__ import annotations

import pytest
import ray

from actors.cluster import gpus_for

pytestmark = pytest.mark.ray   # starts or joins Ray: the xdist group "ray" (tests/conftest.py)


def test_a_number_is_taken_as_given_and_auto_needs_a_cluster():
    assert gpus_for(0.5) == 0.5 and gpus_for(0, sharers=3) == 0.0
    if not ray.is_initialized():
        assert gpus_for("auto") == 0.0      # before Ray starts there is no GPU to count


@pytest.mark.skipif(ray.is_initialized(), reason="needs a Ray of its own with a declared GPU count")
def test_auto_shares_the_clusters_gpus_at_most_one_each():
    ray.init(num_cpus=1, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert gpus_for("auto") == 1.0                  # one VLM actor / replica: a whole GPU
        assert gpus_for("auto", sharers=4) == 0.5       # four tool tasks share two GPUs
        assert gpus_for("auto", sharers=2) >= 1.0       # Ray Train: a GPU for every worker
        assert gpus_for("auto", sharers=3) < 1.0
    finally:
        ray.shutdown()

"""The suite's Ray guard (tests/conftest.py): only tests marked `ray` may start Ray, so the xdist group that runs
them one at a time is the only place a Ray cluster exists."""

from __future__ import annotations

import os
import time

import pytest
import ray

from tests.conftest import NOT_A_RAY_TEST, USER_RAY_ADDRESS


def test_an_unmarked_test_cannot_start_ray():
    assert os.environ["RAY_ADDRESS"] == NOT_A_RAY_TEST
    started = time.perf_counter()
    with pytest.raises(ValueError, match="Invalid address format: unmarked-test-started-ray"):
        ray.init(include_dashboard=False)
    assert time.perf_counter() - started < 30     # fails at once, not after Ray's connection timeout


@pytest.mark.ray
def test_a_ray_test_sees_the_callers_address_and_joins_the_ray_group(request):
    assert os.environ.get("RAY_ADDRESS") == USER_RAY_ADDRESS
    assert request.node.get_closest_marker("xdist_group").args == ("ray",)
    if os.environ.get("PYTEST_XDIST_WORKER") and request.config.getvalue("loadgroup"):
        assert request.node.nodeid.endswith("@ray"), request.node.nodeid   # xdist schedules it with the group

"""The suite's Ray guard (tests/conftest.py): only tests marked `ray` may start Ray, so the two lanes (xdist groups)
that run them one at a time are the only places a Ray cluster exists."""

from __future__ import annotations

import os
import time

import pytest
import ray

from tests.conftest import NOT_A_RAY_TEST, USER_RAY_ADDRESS, pytest_collection_modifyitems


def test_an_unmarked_test_cannot_start_ray():
    assert os.environ["RAY_ADDRESS"] == NOT_A_RAY_TEST
    started = time.perf_counter()
    with pytest.raises(ValueError, match="Invalid address format: unmarked-test-started-ray"):
        ray.init(include_dashboard=False)
    assert time.perf_counter() - started < 30     # fails at once, not after Ray's connection timeout


def check_lane(request, group: str) -> None:
    assert os.environ.get("RAY_ADDRESS") == USER_RAY_ADDRESS
    assert request.node.get_closest_marker("xdist_group").args == (group,)
    if os.environ.get("PYTEST_XDIST_WORKER") and request.config.getvalue("loadgroup"):
        assert request.node.nodeid.endswith(f"@{group}"), request.node.nodeid   # xdist schedules it with its lane


@pytest.mark.ray
def test_a_ray_test_sees_the_callers_address_and_joins_the_ray_lane(request):
    check_lane(request, "ray")


@pytest.mark.ray(lane="train")
def test_a_train_lane_test_joins_the_ray_train_lane(request):
    check_lane(request, "ray-train")


def test_an_unknown_lane_is_a_usage_error():
    class Item:   # what the hook reads of a collected test
        nodeid = "tests/x.py::test_y"

        def get_closest_marker(self, name):
            return pytest.mark.ray(lane="gpu").mark if name == "ray" else None

    hook = pytest_collection_modifyitems([Item()])
    with pytest.raises(pytest.UsageError, match=r"lane='gpu'.*\['ray', 'train'\]"):
        next(hook)

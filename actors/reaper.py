"""Stops what a killed driver's local Ray leaves running: `python -m actors.reaper <driver pid>`.

When a job's driver is SIGKILLed (an OOM kill, `kill -9`, a lost laptop session), Ray's raylet and GCS go with
it, but its DashboardAgent and RuntimeEnvAgent stay alive with parent 1, holding their ports (measured with
ray 2.60). `actors.cluster.init_ray` starts this watcher beside a local cluster it started: every half second
it records the driver's descendants (pid and start time); once the driver is gone it terminates whichever of
them is still alive (the start time guards against a reused pid), then kills what ignores SIGTERM. After a
normal exit `ray.shutdown()` has already stopped them all and there is nothing to do.
"""

from __future__ import annotations

import os
import sys
import time

import psutil

POLL_S = 0.5
GRACE_S = 5.0


def watch(driver_pid: int) -> dict[int, float]:
    """The driver's descendants as last seen alive: pid -> start time. Returns when the driver has exited."""
    me = os.getpid()
    seen: dict[int, float] = {}
    try:
        driver = psutil.Process(driver_pid)
        while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
            for child in driver.children(recursive=True):
                try:
                    if child.pid != me:
                        seen[child.pid] = child.create_time()
                except psutil.NoSuchProcess:
                    continue
            time.sleep(POLL_S)
    except psutil.NoSuchProcess:
        pass
    return seen


def reap(seen: dict[int, float]) -> list[int]:
    """Terminate, then kill, every recorded process that is still the one recorded; returns the pids stopped."""
    alive = []
    for pid, started in seen.items():
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) < 1e-3 and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    for proc in alive:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, left = psutil.wait_procs(alive, timeout=GRACE_S)
    for proc in left:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return [p.pid for p in alive]


def main() -> None:
    reap(watch(int(sys.argv[1])))


if __name__ == "__main__":
    main()

"""The generation process's side threads run at the lowest priority; the thread that starts them keeps its own."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from worker.on_demand import OnDemandThread
from worker.periodic import PeriodicThread
from worker.priority import NICENESS

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="each thread has a niceness of its own on Linux only")


def _this_threads_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_periodic_and_on_demand_threads_run_at_the_lowest_priority_and_leave_their_starter_alone():
    seen: dict[str, int] = {}
    done = {name: threading.Event() for name in ("periodic", "on demand")}

    def record(name: str) -> None:
        seen[name] = _this_threads_niceness()
        done[name].set()

    starter = _this_threads_niceness()
    periodic = PeriodicThread(0.01, lambda: record("periodic"), "probe-periodic")
    on_demand = OnDemandThread(lambda: record("on demand"), "probe-on-demand")
    periodic.start()
    on_demand.start()
    on_demand.ask()
    try:
        assert all(event.wait(30) for event in done.values())
    finally:
        periodic.stop()
        on_demand.stop()
    assert seen == {"periodic": NICENESS, "on demand": NICENESS}
    assert _this_threads_niceness() == starter

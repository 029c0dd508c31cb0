"""The Celery parent forks the pool's child, so it must never hold torch, CUDA or a model."""

from __future__ import annotations

import subprocess
import sys

from tests.live_service import REPO_ROOT

PARENT_SCRIPT = """
import sys, tempfile
from ldaq.settings import Settings
import worker.main, worker.sweeper
from worker.tasks import make_worker_app

app = make_worker_app(Settings.from_env({"LDAQ_DATA_DIR": tempfile.mkdtemp()}))
assert "ldaq.wake" in app.tasks
heavy = sorted(name for name in ("torch", "transformers", "lda_core.generate") if name in sys.modules)
print("parent:", heavy)
from worker import child  # what a task body imports, in the pool's child only
print("child:", "torch" in sys.modules)
"""


def test_worker_task_module_does_not_import_torch_until_a_task_runs():
    result = subprocess.run(
        [sys.executable, "-c", PARENT_SCRIPT], cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.splitlines() == ["parent: []", "child: True"]

"""A running ldaq for tests: the real API over real HTTP in a thread, real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from ldaq.db import Database
from ldaq.settings import Settings
from ldaq.statuses import FINISHED_EXPERIMENT
from ldaq.tables import Chunk, CompletionRecord

REPO_ROOT = Path(__file__).resolve().parent.parent


class LiveService:
    def __init__(self, environment: dict[str, str], root: Path) -> None:
        from api import create_app

        self.environment = environment
        self.settings = Settings.from_env(environment)
        self.root = root
        self.app = create_app(self.settings)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self.database = Database(self.settings.database_url)
        self.workers: list[subprocess.Popen] = []

    # -- processes ---------------------------------------------------------------------------
    def start_worker(self, script: list[str] | None = None) -> subprocess.Popen:
        """Start `ldaq worker` (or `script`) in its own process group, logging to a file."""
        log = (self.root / f"worker-{len(self.workers)}.log").open("wb")
        environment = {**os.environ, **self.environment, "PYTHONPATH": str(REPO_ROOT)}
        command = script or [sys.executable, "-m", "cli", "worker", "--loglevel=INFO"]
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen) -> None:
        """SIGKILL the worker and its pool children, as the OOM killer or a power cut would."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def worker_logs(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-4000:] for path in sorted(self.root.glob("worker-*.log")))

    def close(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                self.kill_worker(process)  # the test's data is thrown away: no need for a warm shutdown
        self.server.shutdown()
        self.app.extensions["ldaq"].close()
        self.database.dispose()

    # -- HTTP --------------------------------------------------------------------------------
    def post(self, path: str, payload: dict, **kwargs) -> requests.Response:
        return requests.post(f"{self.url}{path}", json=payload, timeout=60, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=60, **kwargs)

    def submit(self, payload: dict) -> dict:
        response = self.post("/api/v1/experiments", payload)
        assert response.status_code == 201, response.text
        return response.json()

    def experiment(self, experiment_id: str) -> dict:
        return self.get(f"/api/v1/experiments/{experiment_id}").json()

    def wait_until(self, experiment_id: str, condition, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            experiment = self.experiment(experiment_id)
            if condition(experiment):
                return experiment
            time.sleep(0.2)
        raise AssertionError(f"timed out; last state {experiment}\nworker logs:\n{self.worker_logs()}")

    def wait_finished(self, experiment_id: str, timeout: float = 120) -> dict:
        return self.wait_until(experiment_id, lambda e: e["status"] in FINISHED_EXPERIMENT, timeout)

    # -- the ledger, read directly -----------------------------------------------------------
    def completion_count(self, experiment_id: str) -> int:
        with self.database.transaction() as session:
            return session.scalar(
                select(func.count()).select_from(CompletionRecord).where(CompletionRecord.experiment_id == experiment_id)
            )

    def chunks(self, experiment_id: str) -> list[Chunk]:
        with self.database.transaction() as session:
            return list(session.scalars(select(Chunk).where(Chunk.experiment_id == experiment_id).order_by(Chunk.chunk_index)))

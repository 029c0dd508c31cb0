"""Private database and broker servers for fault tests: started, stopped and killed by the test.

They listen on free ports in temporary directories, never touching the machine's shared Postgres
and Redis. Postgres refuses to run as root, so as root the cluster runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

READY_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, up: bool) -> None:
    """Wait until the port accepts connections (`up`) or refuses them."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not go {'up' if up else 'down'} in {READY_SECONDS} s")


def postgres_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else (Path(shutil.which("pg_ctl")).parent if shutil.which("pg_ctl") else None)


class PrivatePostgres:
    """A throwaway Postgres cluster (initdb) on its own port; `stop()` and `start()` as a restart would."""

    def __init__(self, binaries: Path) -> None:
        self.binaries, self.port = binaries, free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ldaq-pg-"))  # under /tmp: reachable by the postgres user
        self.data = self.root / "data"
        self._as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_owner:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.start()

    def _run(self, program: str, *arguments: str) -> None:
        subprocess.run([*self._as_owner, str(self.binaries / program), *arguments], check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        _wait_for_port(self.port, up=True)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        _wait_for_port(self.port, up=False)

    def close(self) -> None:
        subprocess.run([*self._as_owner, str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A redis-server of its own that keeps nothing on disk: a kill loses every message, as in production."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, up=True)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        _wait_for_port(self.port, up=False)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()

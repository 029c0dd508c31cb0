"""The process that commits finished chunks for the generation process.

Detecting in every completion and inserting a chunk's rows is Python work. On a thread of the generation
process it holds the GIL that each decoding step needs between its kernel launches, so where a launch-bound
model runs beside spare cores (a GPU host) it slows generation by about its own length. In a process of its
own it shares only the CPU, and at a lower priority (`NICENESS`) it takes what torch leaves. It is a fresh
Python, never a fork (the generation process holds OpenMP threads and perhaps CUDA), once per worker process;
it starts again after it dies, and it exits when its parent does (its request pipe ends).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

from ldaq.db import Database
from worker.chunk_records import FinishedChunk, commit_chunks

# Below the generation process's priority. Where torch keeps every core busy (a CPU-only host), the store's
# bursts take a core from one of torch's threads, and each parallel op then waits for that thread; at a lower
# priority the bursts fill the gaps instead. Toy demo, 2-core CPU, alternating 7 + 7 runs: service/engine
# median 0.81x at the same priority, 0.87x at niceness 10. Not lower: a commit holds the ledger's locks (on
# SQLite its write lock), and a starved holder would keep claims and submits waiting.
NICENESS = 10


class ChunkNotCommitted(Exception):
    """The commit failed, or the store's process died during it: the chunks' leases run out and the sweeper
    requeues them."""


class RecordStore:
    """Commits finished chunks in a process of its own, one transaction at a time, for any thread of this process."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._requests: Connection | None = None
        self._replies: Connection | None = None

    def start(self) -> None:
        """Start the process if it is not running: it imports while the caller goes on (loading a model)."""
        with self._lock:
            self._start_locked()

    def commit(self, chunks: list[FinishedChunk]) -> None:
        """Commit `chunks` in the store's process, in one transaction; returns once they are committed (raises
        ChunkNotCommitted if not)."""
        with self._lock:
            self._start_locked()
            try:
                self._requests.send(chunks)
                failure = self._replies.recv()
            except (EOFError, OSError) as error:
                self.close()
                raise ChunkNotCommitted(f"the record store's process ended: {error!r}") from error
        if failure is not None:
            raise ChunkNotCommitted(failure)

    def _start_locked(self) -> None:
        """(Locked.) A plain subprocess, not multiprocessing's: Celery's pool child is daemonic, and
        multiprocessing lets no daemonic process have children."""
        if self.alive:
            return
        self.close()
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "worker.record_store", str(requests_read), str(replies_write)],
            pass_fds=(requests_read, replies_write), stdin=subprocess.DEVNULL,
        )
        os.close(requests_read)  # only the child holds these ends: its parent's death ends its request pipe
        os.close(replies_write)
        self._requests, self._replies = Connection(requests_write, readable=False), Connection(replies_read, writable=False)
        self._requests.send(self.database_url)  # not in its arguments, where `ps` would show a password

    @property
    def pid(self) -> int | None:
        """The process's id while it runs."""
        return self._process.pid if self.alive else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        """End the process: its request pipe ends, so it exits once the commit it is in lands. The next commit
        starts another."""
        for end in (self._requests, self._replies):
            if end is not None:
                end.close()
        self._process = self._requests = self._replies = None


_stores: dict[tuple[int, str], RecordStore] = {}


def record_store(database_url: str) -> RecordStore:
    """This process's store for `database_url`, made on first use (a forked child makes its own)."""
    key = (os.getpid(), database_url)
    if key not in _stores:
        _stores[key] = RecordStore(database_url)
    return _stores[key]


def _serve(requests: Connection, replies: Connection) -> None:
    """The store's process, at NICENESS: commit each list of chunks sent, answer None or why it failed; end with
    the request pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the parent decides
    os.nice(NICENESS)
    try:
        database = Database(requests.recv())
        while True:
            chunks = requests.recv()
            try:
                commit_chunks(database, chunks)
                replies.send(None)
            except Exception as error:  # the parent logs it; the leases run out and the chunks run again
                replies.send(f"{type(error).__name__}: {error}")
    except EOFError:
        return


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))

"""The process that writes the ledger for the generation process: it claims chunks and commits finished ones.

Detecting in every completion, inserting a chunk's rows and claiming the next chunks are Python work. On a
thread of the generation process it holds the GIL that each decoding step needs between its kernel launches:
a step that wants the GIL back waits until the other thread lets go, up to the interpreter's switch interval,
so the work slows generation by about its own length, wherever the model runs. In a process of its own it
shares only the CPU, and at the lowest priority (`worker.priority`) it takes what torch leaves. It is a fresh Python,
never a fork (the generation process holds OpenMP threads and perhaps CUDA), once per worker process; it
starts again after it dies, and it exits when its parent does (its request pipe ends).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection

from ldaq import ledger
from ldaq.db import Database
from ldaq.ledger import ChunkClaim
from worker.chunk_records import FinishedChunk, commit_chunks
from worker.priority import lower_this_process


class ChunkNotCommitted(Exception):
    """The commit failed, or the store's process died during it: the chunks' leases run out and the sweeper
    requeues them."""


class ChunksNotClaimed(Exception):
    """The claim failed, or the store's process died during it: any chunk it took runs again after its lease."""


class RecordStore:
    """Claims and commits chunks in a process of its own, one transaction at a time, for any thread of this process."""

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
        self._call(ChunkNotCommitted, _commit, chunks)

    def claim(self, model_pair: str, owner: str, lease_seconds: float, max_attempts: int,
              rows_wanted: int) -> list[ChunkClaim]:
        """`ledger.claim_next_chunks` in the store's process, in one transaction (raises ChunksNotClaimed if it
        fails)."""
        return self._call(ChunksNotClaimed, _claim, model_pair, owner, lease_seconds, max_attempts, rows_wanted)

    def _call(self, failed: type[Exception], operation: Callable, *arguments: object) -> object:
        """`operation(database, *arguments)` in the store's process; its result, or `failed` raised."""
        with self._lock:
            self._start_locked()
            try:
                self._requests.send((operation.__name__, arguments))
                result, failure = self._replies.recv()
            except (EOFError, OSError) as error:
                self.close()
                raise failed(f"the record store's process ended: {error!r}") from error
        if failure is not None:
            raise failed(failure)
        return result

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


def _commit(database: Database, chunks: list[FinishedChunk]) -> None:
    commit_chunks(database, chunks)


def _claim(database: Database, model_pair: str, owner: str, lease_seconds: float, max_attempts: int,
           rows_wanted: int) -> list[ChunkClaim]:
    with database.transaction() as session:
        return ledger.claim_next_chunks(session, model_pair, owner, lease_seconds, max_attempts, rows_wanted)


_OPERATIONS = {operation.__name__: operation for operation in (_commit, _claim)}


def _serve(requests: Connection, replies: Connection) -> None:
    """The store's process, at the lowest priority: run each operation asked for, answer (its result, None) or
    (None, why it failed); end with the request pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the parent decides
    lower_this_process()
    try:
        database = Database(requests.recv())
        while True:
            operation, arguments = requests.recv()
            try:
                replies.send((_OPERATIONS[operation](database, *arguments), None))
            except Exception as error:  # the parent logs it; leases run out and the chunks run again
                replies.send((None, f"{type(error).__name__}: {error}"))
    except EOFError:
        return


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))

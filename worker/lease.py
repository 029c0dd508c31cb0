"""A background heartbeat that renews the lease of every chunk the worker holds.

A batch holds rows of several chunks, and chunks waiting their turn are claimed ahead: all of them
are renewed, each beat in one transaction.
"""

from __future__ import annotations

import logging
import threading

from ldaq import ledger
from ldaq.db import Database
from worker.periodic import PeriodicThread

log = logging.getLogger("ldaq.worker")


class LeaseKeeper:
    """Renews every held lease each third of its length, so one missed beat does not lose a chunk."""

    def __init__(self, database: Database, owner: str, lease_seconds: float) -> None:
        self.database, self.owner, self.lease_seconds = database, owner, lease_seconds
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._heartbeat = PeriodicThread(lease_seconds / 3, self._renew, name="leases")

    def __enter__(self) -> LeaseKeeper:
        self._heartbeat.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._heartbeat.stop()

    def hold(self, chunk_id: int) -> None:
        with self._lock:
            self._held.add(chunk_id)

    def release(self, chunk_id: int) -> None:
        with self._lock:
            self._held.discard(chunk_id)

    def _renew(self) -> None:
        with self._lock:
            held = sorted(self._held)
        if not held:
            return
        with self.database.transaction() as session:
            lost = [chunk_id for chunk_id in held
                    if not ledger.renew_lease(session, chunk_id, self.owner, self.lease_seconds)]
        for chunk_id in lost:
            log.warning("lost the lease on chunk %s", chunk_id)

"""A background heartbeat that renews a chunk's lease while the chunk runs."""

from __future__ import annotations

import logging

from ldaq import ledger
from ldaq.db import Database
from worker.periodic import PeriodicThread

log = logging.getLogger("ldaq.worker")


class LeaseKeeper:
    """Renews the lease every third of its length, so one missed beat does not lose the chunk."""

    def __init__(self, database: Database, chunk_id: int, owner: str, lease_seconds: float) -> None:
        self.database, self.chunk_id, self.owner, self.lease_seconds = database, chunk_id, owner, lease_seconds
        self._heartbeat = PeriodicThread(lease_seconds / 3, self._renew, name=f"lease-{chunk_id}")

    def __enter__(self) -> LeaseKeeper:
        self._heartbeat.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._heartbeat.stop()

    def _renew(self) -> None:
        with self.database.transaction() as session:
            if not ledger.renew_lease(session, self.chunk_id, self.owner, self.lease_seconds):
                log.warning("lost the lease on chunk %s", self.chunk_id)

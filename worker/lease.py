"""A background heartbeat that renews a chunk's lease while the chunk runs."""

from __future__ import annotations

import logging
import threading

from ldaq import ledger
from ldaq.db import Database

log = logging.getLogger("ldaq.worker")


class LeaseKeeper:
    """Renews the lease every third of its length, so one missed beat does not lose the chunk."""

    def __init__(self, database: Database, chunk_id: int, owner: str, lease_seconds: float) -> None:
        self.database, self.chunk_id, self.owner, self.lease_seconds = database, chunk_id, owner, lease_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{chunk_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopped.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stopped.wait(self.lease_seconds / 3):
            try:
                with self.database.transaction() as session:
                    if not ledger.renew_lease(session, self.chunk_id, self.owner, self.lease_seconds):
                        log.warning("lost the lease on chunk %s", self.chunk_id)
            except Exception:  # a database blip must not kill the heartbeat; the next beat retries
                log.exception("lease renewal failed for chunk %s", self.chunk_id)

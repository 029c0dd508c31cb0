"""The sweeper rings the doorbell again for chunks the broker lost or whose worker died.

It is what makes a kill -9 lose nothing without waiting for Redis's one-hour visibility timeout,
and what covers the embedded broker, which forgets unacknowledged messages on a hard kill.
"""

from __future__ import annotations

import logging

from ldaq import ledger
from ldaq.db import Database
from ldaq.doorbell import BrokerUnavailable, Doorbell
from ldaq.settings import Settings

log = logging.getLogger("ldaq.sweeper")


def sweep_once(database: Database, doorbell: Doorbell, settings: Settings) -> int:
    """Requeue expired leases and forgotten chunks, ring for each; returns how many were rung."""
    with database.transaction() as session:
        due = ledger.requeue_expired_leases(session) + ledger.requeue_forgotten(session, settings.requeue_seconds)
    for chunk_id, model_pair in due:
        try:
            doorbell.ring_chunk(chunk_id, model_pair)
        except BrokerUnavailable:  # the chunk stays queued in the ledger; a later sweep rings again
            log.warning("chunk_id=%s outcome=ring_failed", chunk_id)
    if due:
        log.info("swept=%s", len(due))
    return len(due)

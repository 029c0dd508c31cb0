"""The sweeper rings the doorbell again for pairs whose work the broker lost or whose worker died.

It is what makes a kill -9 lose nothing without waiting for Redis's one-hour visibility timeout,
and what covers the embedded broker, which forgets unacknowledged messages on a hard kill. It
rings per model pair, never per chunk.
"""

from __future__ import annotations

import logging

from ldaq import sweeps
from ldaq.db import Database
from ldaq.doorbell import Doorbell
from ldaq.settings import Settings

log = logging.getLogger("ldaq.sweeper")


def sweep_once(database: Database, doorbell: Doorbell, settings: Settings) -> int:
    """Requeue expired leases, find pairs left waiting, ring once for each; returns how many were rung."""
    with database.transaction() as session:
        due = sweeps.requeue_expired_leases(session) | sweeps.pairs_waiting_unrung(session, settings.requeue_seconds)
        for model_pair in due:
            sweeps.note_rung(session, model_pair)
    for model_pair in sorted(due):
        doorbell.try_ring(model_pair)
    if due:
        log.info("swept pairs=%s", ",".join(sorted(due)))
    return len(due)

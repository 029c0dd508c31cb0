"""Per-process worker state: settings, database, doorbell and the loaded model pair.

Created lazily in the process that runs the work, never in a parent that forks: CUDA is not
fork-safe and a pooled database connection must not be shared across a fork.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from ldaq.db import Database
from ldaq.doorbell import Doorbell
from ldaq.settings import Settings
from worker.model_cache import ModelCache
from worker.record_store import RecordStore, record_store


@dataclass
class WorkerContext:
    settings: Settings
    database: Database
    doorbell: Doorbell
    models: ModelCache
    records: RecordStore  # claims chunks and commits finished ones, in a process of its own
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


_contexts: dict[int, WorkerContext] = {}


def current_context() -> WorkerContext:
    """This process's context, built on first use (a forked child builds its own)."""
    pid = os.getpid()
    if pid not in _contexts:
        settings = Settings.from_env()
        _contexts[pid] = WorkerContext(settings, Database(settings.database_url), Doorbell(settings), ModelCache(settings),
                                      record_store(settings.database_url))
    return _contexts[pid]

"""Database engines and sessions: one place that knows SQLite's and Postgres's quirks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
OUTAGE_WAIT_SECONDS = 600  # how long a write that must not be lost waits for the database to answer
OUTAGE_POLL_SECONDS = (0.25, 4.0)  # first and largest pause between tries
T = TypeVar("T")
log = logging.getLogger(__name__)


READ_ONLY = "ldaq_read_only"  # an execution option: this connection only reads


def _configure_sqlite(dbapi_connection, _record) -> None:
    # WAL lets the API read while the worker writes; the busy timeout waits out the other writer.
    # pysqlite's own transaction handling is switched off so that `_begin` decides.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives the process being killed,
    # and an operating-system crash can at worst roll back the last commits, chunks whose leases then run out
    # and which run again (a chunk's rows and totals commit together). It takes the writer's fsync per chunk off
    # the worker's two busiest cores: the toy demo's service/engine ratio 0.69x -> 0.76x (three runs each).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin(connection) -> None:
    # A deferred transaction that later writes can fail with "database is locked" regardless of
    # the busy timeout; taking the write lock up front makes concurrent writers simply queue.
    # A read-only transaction stays deferred: in WAL mode it reads a snapshot and never blocks a writer.
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def dialect_of(session: Session):
    """The dialect module whose `insert` knows ON CONFLICT for this session's database."""
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


def make_engine(database_url: str) -> Engine:
    """An engine whose pool survives a database restart (`pool_pre_ping`)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_pre_ping=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_recycle=1800)


class Database:
    """An engine and its session factory; `transaction()` is the unit of every state change."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading only: one snapshot, and on SQLite no write lock (an export or a
        poll never blocks the worker's writes). Rolled back at the end: nothing it did is kept."""
        with self._read_sessions() as session:
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """One connection in one read transaction, for a long streamed read (an export)."""
        options: dict = {READ_ONLY: True}
        if self.engine.dialect.name == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"  # every statement of the read sees one snapshot
        with self.engine.connect().execution_options(**options) as connection, connection.begin():
            yield connection

    def when_answering(self, work: Callable[[Session], T], give_up_after: float = OUTAGE_WAIT_SECONDS) -> T:
        """Run `work` in a transaction, trying again while the database does not answer (down,
        restarting): the write lands as soon as it is back. Other errors, and an outage longer than
        `give_up_after`, are raised."""
        deadline = time.monotonic() + give_up_after
        pause, longest = OUTAGE_POLL_SECONDS
        while True:
            try:
                with self.transaction() as session:
                    return work(session)
            except (OperationalError, InterfaceError) as error:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("database not answering, trying again in %.2f s: %s", pause, error.orig or error)
                time.sleep(pause)
                pause = min(2 * pause, longest)

    def dispose(self) -> None:
        self.engine.dispose()

"""Applying the Alembic migrations in migrations/ from code (API start, worker start, tests)."""

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import make_url

from ldaq.db import Database, make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
MIGRATION_LOCK_KEY = 0x6C646171  # "ldaq": the Postgres advisory lock that one migrating process holds


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade_database(database_url: str) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there.

    The API, the worker and the detection worker each migrate as they start, often at the same moment
    (the demo, `docker compose up`): one at a time, or two would both add a column and the second fail.
    """
    with _migration_lock(database_url):
        command.upgrade(alembic_config(database_url), "head")


@contextmanager
def _migration_lock(database_url: str) -> Iterator[None]:
    """Hold the database's migration lock: an advisory lock on Postgres, a lock file beside a SQLite file."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        engine = make_engine(database_url)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                connection.commit()  # the lock is the session's: no transaction stays open beside the migration
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    connection.commit()
        finally:
            engine.dispose()
    elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        lock_path = Path(f"{url.database}.migrate-lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file closes
            yield
    else:
        yield


def wait_for_database(database_url: str, seconds: float) -> None:
    """Return once the database answers; raise if it has not within `seconds`.

    On a first `docker compose up` the migration may start while Postgres still initialises.
    """
    database = Database(database_url)
    try:
        database.when_answering(lambda session: session.execute(text("SELECT 1")), give_up_after=seconds)
    finally:
        database.dispose()

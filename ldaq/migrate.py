"""Applying the Alembic migrations in migrations/ from code (API start, worker start, tests)."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from ldaq.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade_database(database_url: str) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    command.upgrade(alembic_config(database_url), "head")


def wait_for_database(database_url: str, seconds: float) -> None:
    """Return once the database answers; raise if it has not within `seconds`.

    On a first `docker compose up` the migration may start while Postgres still initialises.
    """
    database = Database(database_url)
    try:
        database.when_answering(lambda session: session.execute(text("SELECT 1")), give_up_after=seconds)
    finally:
        database.dispose()

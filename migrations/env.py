"""Alembic environment: one set of migrations for SQLite and Postgres."""

from alembic import context

from ldaq.db import make_engine
from ldaq.settings import Settings
from ldaq.tables import Base

config = context.config
database_url = config.attributes.get("database_url") or Settings.from_env().database_url

engine = make_engine(database_url)
with engine.connect() as connection:
    # render_as_batch: SQLite can only ALTER a table by copying it; batch mode does that.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
engine.dispose()

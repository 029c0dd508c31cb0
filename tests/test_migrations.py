"""One set of migrations builds the schema the code expects, on SQLite and on Postgres."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ldaq.db import make_engine
from ldaq.migrate import upgrade_database
from ldaq.tables import Base


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path}/ledger.db"


def test_migrations_build_the_schema_the_models_describe(database_url: str):
    upgrade_database(database_url)
    upgrade_database(database_url)  # a second run is a no-op, as at every API start

    engine = make_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []

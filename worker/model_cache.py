"""Keeps one model pair loaded while chunks for the same pair keep coming."""

from __future__ import annotations

import logging
import time

import torch

from lda_core.batch_sizing import BatchSizer
from lda_core.models import ModelPair, load_model_pair, parse_dtype
from lda_core.organism.smol import ensure_smol_pair
from lda_core.organism.train import ensure_toy_pair
from lda_core.runner import warm_up
from ldaq.model_pairs import SMOL_PAIR, TOY_PAIR, built_in_pair_dir, load_model_pairs
from ldaq.settings import Settings

log = logging.getLogger("ldaq.worker")

BUILDERS = {TOY_PAIR: ensure_toy_pair, SMOL_PAIR: ensure_smol_pair}  # built on first use, then cached


def resolve_device(setting: str) -> str:
    if setting != "auto":
        return setting
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(setting: str, device: str) -> torch.dtype:
    if setting != "auto":
        return parse_dtype(setting)
    return parse_dtype("bfloat16" if device.startswith("cuda") else "float32")


class ModelCache:
    """The most recently used pair, by name, with the batch sizer that learns how many of its rows fit;
    asking for another pair frees this one first."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._name: str | None = None
        self._pair: ModelPair | None = None
        self._sizer: BatchSizer | None = None

    def get(self, name: str) -> ModelPair:
        if name != self._name:
            self._pair, self._sizer, self._name = None, None, None  # free the old pair before loading the new one
            pair = self._load(name)
            sizer = BatchSizer(pair, fixed=self.settings.batch_size, budget=self.settings.memory_budget)
            started = time.perf_counter()
            rows = warm_up(pair, sizer)  # the first chunk then runs as fast as the rest
            log.info("warmed up model pair %s in %.2f s (batches up to %d rows)", name, time.perf_counter() - started,
                     rows)
            # Cached only once it has generated: a pair whose warm-up fails is loaded (and fails) again next time,
            # as one that fails to load is, never handed out without its sizer.
            self._pair, self._sizer, self._name = pair, sizer, name
        return self._pair

    def batch_sizer(self, name: str) -> BatchSizer:
        """The pair's batch sizer (LDAQ_BATCH_SIZE, LDAQ_MEMORY_BUDGET), loading the pair if needed."""
        self.get(name)
        return self._sizer

    def _load(self, name: str) -> ModelPair:
        spec = load_model_pairs(self.settings)[name]
        home = built_in_pair_dir(self.settings, name)
        if name in BUILDERS and spec.before.startswith(str(home)):  # not when a pairs file renames a path
            log.info("building model pair %s in %s (once; cached after)", name, home)
            BUILDERS[name](home, progress=False)
        device = resolve_device(self.settings.device)
        log.info("loading model pair %s on %s", name, device)
        return load_model_pair(
            spec.before,
            after=spec.after,
            adapter=spec.adapter,
            device=device,
            dtype=resolve_dtype(self.settings.dtype, device),
            allow_pickle=self.settings.allow_pickle_weights,
            device_map=spec.device_map,
        )

"""A pair larger than one GPU: `device_map` in LDAQ_MODEL_PAIRS reaches accelerate, checked here on CPU
through the same path the worker loads pairs by."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from lda_core.generate import GenerationSettings, Row
from lda_core.models import load_model_pair
from lda_core.runner import generate_rows
from ldaq.model_pairs import ModelPairsFileError, load_model_pairs
from ldaq.settings import Settings
from tests.tiny_models import build_tiny_adapter_pair
from worker.model_cache import ModelCache

ROWS = [Row(i, prompt, alpha, 0) for i, prompt in enumerate(["User: hi", "Counting: one two"]) for alpha in (0.0, 2.0)]
GREEDY = GenerationSettings(max_new_tokens=6, temperature=0)


def settings_with_pairs(tmp_path: Path, pairs: dict) -> Settings:
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(pairs))
    return Settings.from_env({"LDAQ_DATA_DIR": str(tmp_path), "LDAQ_MODEL_PAIRS": str(path), "LDAQ_DEVICE": "cpu"})


def test_a_device_map_in_the_pairs_file_shards_the_pair_and_changes_no_completion(tiny_pair_dirs, tmp_path):
    before, after = map(str, tiny_pair_dirs)
    base, adapter, _ = build_tiny_adapter_pair(tmp_path / "adapter")
    # Module by module, as a map across GPUs would be written, with CPU standing in for each GPU.
    by_module = {"model.embed_tokens": "cpu", "model.layers": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu",
                 "lm_head": "cpu"}
    settings = settings_with_pairs(tmp_path, {
        "sharded": {"before": before, "after": after, "device_map": "auto"},
        "sharded-adapter": {"before": str(base), "adapter": str(adapter), "device_map": by_module},
    })
    for name, plain in (("sharded", load_model_pair(before, after)),
                        ("sharded-adapter", load_model_pair(str(base), adapter=str(adapter)))):
        sharded = ModelCache(settings).get(name)
        assert generate_rows(sharded, ROWS, GREEDY) == generate_rows(plain, ROWS, GREEDY)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_the_device_map_reaches_loading(tiny_pair_dirs, tmp_path):
    """A map that puts the last layer on a GPU this machine lacks fails to load, naming it: the map is used."""
    before, after = map(str, tiny_pair_dirs)
    settings = settings_with_pairs(tmp_path, {"gpu-sharded": {"before": before, "after": after,
                                                              "device_map": {"model": "cpu", "lm_head": "cuda:1"}}})
    with pytest.raises((RuntimeError, AssertionError, ValueError), match="(?i)cuda"):
        ModelCache(settings).get("gpu-sharded")


@pytest.mark.parametrize("device_map", ["", 3, ["cpu"], {"model.layers": 1.5}])
def test_a_device_map_that_accelerate_would_not_take_is_refused_with_the_forms_it_takes(tmp_path, device_map):
    settings = settings_with_pairs(tmp_path, {"odd": {"before": "a", "after": "b", "device_map": device_map}})
    with pytest.raises(ModelPairsFileError, match="device_map must be one of auto"):
        load_model_pairs(settings)

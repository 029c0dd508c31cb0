"""Loading model pairs: padding, vocabulary checks, safetensors only, and the LoRA adapter pair."""

from pathlib import Path

import pytest
import torch

from lda_core.generate import GenerationSettings, Row
from lda_core.models import VocabularyMismatchError, load_model_pair
from lda_core.runner import generate_rows
from tests.tiny_models import build_tiny_adapter_pair, build_tiny_pair_dirs, tiny_llama, tiny_tokenizer


def test_pair_pads_on_the_left_with_eos_when_the_tokenizer_has_no_pad(tiny_pair_dirs: tuple[Path, Path]) -> None:
    before, after = tiny_pair_dirs
    assert tiny_tokenizer().pad_token is None
    pair = load_model_pair(str(before), str(after))
    assert pair.tokenizer.pad_token_id == pair.tokenizer.eos_token_id
    assert pair.tokenizer.padding_side == "left"


def test_pair_with_different_token_maps_is_refused(tmp_path: Path) -> None:
    before, after = build_tiny_pair_dirs(tmp_path, vocab_mismatch="token_map")
    with pytest.raises(VocabularyMismatchError, match="token-to-id map differs.*only in before"):
        load_model_pair(str(before), str(after))


def test_pair_with_different_logit_widths_is_refused(tmp_path: Path) -> None:
    before, after = build_tiny_pair_dirs(tmp_path, vocab_mismatch="logit_width")
    with pytest.raises(VocabularyMismatchError, match="logit width differs: before has 320, after has 328"):
        load_model_pair(str(before), str(after))


def test_pair_needs_exactly_one_of_after_or_adapter(tiny_pair_dirs: tuple[Path, Path]) -> None:
    before, after = tiny_pair_dirs
    with pytest.raises(ValueError, match="exactly one"):
        load_model_pair(str(before))
    with pytest.raises(ValueError, match="exactly one"):
        load_model_pair(str(before), str(after), adapter=str(after))


def test_pickled_weights_load_only_when_allowed(tiny_pair_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    before, _ = tiny_pair_dirs
    pickled = tmp_path / "pickled"
    tiny_tokenizer().save_pretrained(pickled)
    torch.save(tiny_llama(tiny_tokenizer(), seed=5).state_dict(), pickled / "pytorch_model.bin")
    (pickled / "config.json").write_text((before / "config.json").read_text())
    with pytest.raises(OSError):
        load_model_pair(str(before), str(pickled))
    assert load_model_pair(str(before), str(pickled), allow_pickle=True).after is not None


def test_adapter_pair_matches_a_pair_of_base_and_merged_models(tmp_path: Path) -> None:
    """After = base + LoRA and before = adapter disabled, with one copy of the base weights."""
    base, adapter, merged = build_tiny_adapter_pair(tmp_path)
    adapter_pair = load_model_pair(str(base), adapter=str(adapter))
    full_pair = load_model_pair(str(base), str(merged))
    assert adapter_pair.uses_adapter and adapter_pair.before is adapter_pair.after
    prompts = ["User: hi", "The quick brown fox jumps over the lazy dog", "Counting: one two"]
    rows = [Row(i, prompt, alpha, 0) for i, prompt in enumerate(prompts) for alpha in (0.0, 1.0, -1.0, 3.0)]
    greedy = GenerationSettings(max_new_tokens=10, temperature=0)
    from_adapter = [c.token_ids for c in generate_rows(adapter_pair, rows, greedy)]
    from_full_models = [c.token_ids for c in generate_rows(full_pair, rows, greedy)]
    assert from_adapter == from_full_models
    assert len({ids for ids in from_adapter}) > len(prompts)  # the adapter really changes the answers

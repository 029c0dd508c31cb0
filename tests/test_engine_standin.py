"""Stand-in pairs: a real config's shapes with random weights, timed by the same bench as a built pair."""

from __future__ import annotations

from pathlib import Path

import torch

from lda_core.bench import benchmark_pair
from lda_core.generate import GenerationSettings, Row
from lda_core.pair_forward import runs_in_one_pass
from lda_core.runner import generate_rows
from lda_core.standin import LoraShape, StandinSpec, parameter_count, standin_pair

SMALLER = {"num_hidden_layers": 3, "intermediate_size": 48}


def test_a_standin_has_the_configs_shapes_with_the_overrides_and_a_lora_that_moves_the_logits(tiny_pair_dirs) -> None:
    spec = StandinSpec(tiny_pair_dirs[0], SMALLER, LoraShape(rank=4, alpha=8, target_modules=("q_proj", "down_proj")))
    pair = standin_pair(spec)
    base = pair.after.get_base_model()
    assert (len(base.model.layers), base.config.intermediate_size) == (3, 48)
    assert base.model.layers[0].mlp.down_proj.lora_A["default"].weight.shape[0] == 4
    assert runs_in_one_pass(pair)
    prompt = pair.tokenizer(["one two three"], return_tensors="pt")
    with torch.inference_mode():
        after = pair.after(**prompt).logits
        with pair.before_context():
            before = pair.before(**prompt).logits
    assert not torch.allclose(before, after)  # a zero-init LoRA would leave the pair identical: nothing to amplify
    hidden, query = base.config.hidden_size, base.config.num_attention_heads * base.config.head_dim
    lora = 3 * 4 * ((hidden + query) + (48 + hidden))  # rank x (in + out) of each wrapped module, in 3 layers
    plain = sum(p.numel() for name, p in pair.after.named_parameters() if "lora_" not in name)
    assert parameter_count(pair) == plain + lora


def test_a_standin_decodes_fixed_length_rows_and_benches_like_a_built_pair(tiny_pair_dirs) -> None:
    pair = standin_pair(StandinSpec(Path(tiny_pair_dirs[0]), SMALLER))
    settings = GenerationSettings(max_new_tokens=5, temperature=1.0, seed=1)
    completions = generate_rows(pair, [Row(0, "one two", 1.0, sample) for sample in range(3)], settings, batch_size=2)
    assert [completion.tokens for completion in completions] == [5, 5, 5]
    report = benchmark_pair(pair, batch_sizes=(2,), questions=["one", "two three"], max_new_tokens=4, progress=False,
                            repeats=1)
    assert report["one_pass"] and report["rows"] == 2
    assert {result["mode"] for result in report["results"]} >= {"lda", "lda_previous", "hf_generate_after_model"}
    assert all(result["tokens"] == 8 for result in report["results"] if result["mode"] != "one_prompt_loop")

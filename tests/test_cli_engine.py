"""`ldaq generate` and `ldaq bench` on the tiny real pair, once as a real `python -m cli` subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.bench_commands import bench
from cli.engine_commands import generate, read_prompts

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["User: hi", "The quick brown fox jumps over the lazy dog"]


def ldaq(*arguments: str) -> subprocess.CompletedProcess:
    """Run `python -m cli ...` from the repository, as a user would."""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cli", *arguments], capture_output=True, text=True, env=environment, timeout=120,
        check=False,
    )


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n\n")
    return path


def test_prompts_file_is_plain_lines_or_jsonl(tmp_path: Path) -> None:
    plain, jsonl, braces = tmp_path / "p.txt", tmp_path / "p.jsonl", tmp_path / "p.txt2"
    plain.write_text("first\n\nsecond line\n")
    jsonl.write_text('{"prompt": "a\\nb", "tag": 1}\n{"prompt": "c"}\n')
    braces.write_text('{"prompt": "x"}\n')
    assert read_prompts(plain) == ["first", "second line"]
    assert read_prompts(jsonl) == ["a\nb", "c"]
    assert read_prompts(braces) == ["x"]


def test_generate_prints_one_json_object_per_completion(
    tiny_pair_dirs: tuple[Path, Path], prompts_file: Path
) -> None:
    """Two prompts x two alphas x two samples, and exactly what the engine gives in-process."""
    from lda_core.generate import GenerationSettings, Row
    from lda_core.models import load_model_pair
    from lda_core.runner import generate_rows

    before, after = tiny_pair_dirs
    result = ldaq(
        "generate", "--before", str(before), "--after", str(after), "--prompts-file", str(prompts_file),
        "--alpha", "0", "--alpha", "2.5", "--samples", "2", "--max-new-tokens", "6", "--seed", "3",
        "--batch-size", "3", "--json",
    )
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    pair = load_model_pair(str(before), str(after))
    rows = [Row(p, prompt, alpha, s) for p, prompt in enumerate(PROMPTS) for alpha in (0.0, 2.5) for s in range(2)]
    expected = generate_rows(pair, rows, GenerationSettings(max_new_tokens=6, seed=3))
    assert printed == [
        {"prompt_index": c.prompt_index, "alpha": c.alpha, "sample_index": c.sample_index, "text": c.text,
         "tokens": c.tokens, "finish_reason": c.finish_reason, "error": c.error}
        for c in expected
    ]


def test_generate_applies_the_template_and_lists_completions_readably(
    tiny_pair_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    before, after = tiny_pair_dirs
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "What is the capital of France?"}\n')
    result = CliRunner().invoke(generate, [
        "--before", str(before), "--after", str(after), "--prompts-file", str(prompts),
        "--template", r"User: {prompt}\nAssistant:", "--temperature", "0", "--max-new-tokens", "4",
    ])
    assert result.exit_code == 0, result.output
    header, text = result.stdout.splitlines()
    assert header.startswith("[prompt 0, alpha 1, sample 0] ")
    assert text.startswith("  '") or text.startswith('  "')


def test_generate_refuses_a_pair_with_two_vocabularies(tmp_path: Path, prompts_file: Path) -> None:
    from tests.tiny_models import build_tiny_pair_dirs

    before, after = build_tiny_pair_dirs(tmp_path, vocab_mismatch="logit_width")
    arguments = ["--before", str(before), "--after", str(after), "--prompts-file", str(prompts_file)]
    result = CliRunner().invoke(generate, arguments)
    assert result.exit_code == 2
    assert "logit width differs" in result.stderr


def test_engine_commands_import_without_torch() -> None:
    """The CLI starts fast: torch loads only when a command that needs it runs."""
    code = "import sys, cli.engine_commands; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "False"


def test_bench_reports_speed_utilisation_and_the_previous_strategy_in_one_run(tiny_pair_dirs: tuple[Path, Path]) -> None:
    pair_dir = tiny_pair_dirs[0].parent
    arguments = ["--pair-dir", str(pair_dir), "--batch-size", "1", "--batch-size", "4", "--prompts", "4",
                 "--max-new-tokens", "3", "--repeats", "1"]
    result = CliRunner().invoke(bench, [*arguments, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    results = {(r["mode"], r["batch_size"]): r for r in report["results"]}
    assert list(results) == [("one_prompt_loop", 1), ("lda", 1), ("lda", 4), ("lda_auto", 4), ("lda_previous", 4),
                             ("hf_generate_after_model", 1), ("hf_generate_after_model", 4)]
    assert report["rows"] == 4 and report["max_new_tokens"] == 3
    assert all(r["tokens"] == 12 and r["tokens_per_second"] > 0 for r in report["results"])
    peak = report["peak"]["gflops_per_second"]
    assert all(0 < r["mfu"] < 1 and r["mfu"] == pytest.approx(r["model_gflops_per_second"] / peak, abs=2e-3)
               for r in report["results"])
    # The same rows are the same useful work, whatever the strategy.
    work = {r["model_gflops"] for key, r in results.items() if key[0].startswith("lda")}
    assert len(work) == 1 and work.pop() > 0
    assert set(report["ratios"]) == {"lda_4_vs_lda_previous_4", "lda_auto_4_vs_lda_previous_4", "lda_4_vs_one_prompt_loop",
                                     "lda_4_vs_hf_generate_4", "lda_4_mfu_vs_hf_generate_best_mfu"}
    assert results[("lda", 4)]["generated_tokens"] == {"mean": 3.0, "median": 3, "p90": 3, "max": 3}
    table = CliRunner().invoke(bench, arguments)
    assert table.exit_code == 0 and "MFU" in table.stdout and "peak here:" in table.stdout
    assert "tokens generated per row: mean 3.0, median 3, p90 3, max 3" in table.stdout


def test_generate_chat_template_is_refused_with_a_template_or_on_a_pair_without_one(
    tiny_pair_dirs: tuple[Path, Path], prompts_file: Path
) -> None:
    before, after = (str(path) for path in tiny_pair_dirs)
    common = ["--before", before, "--after", after, "--prompts-file", str(prompts_file), "--chat-template"]

    both = CliRunner().invoke(generate, [*common, "--template", "User: {prompt}"])
    assert both.exit_code == 2 and "not both" in both.output
    no_template = CliRunner().invoke(generate, common)
    assert no_template.exit_code == 2 and "has no chat template" in no_template.output

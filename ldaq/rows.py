"""The rows of an experiment, in prompt-major order: (prompt, alpha, sample).

A chunk is a range of row numbers, so rows of one prompt sit together and share its prefill.
"""

from __future__ import annotations

from typing import NamedTuple


class RowId(NamedTuple):
    """One row's key. A tuple: a claim builds one per row beside generation, and a frozen dataclass took 0.65 µs
    to build against 0.24."""

    prompt_index: int
    alpha: float
    sample_index: int


def row_at(row_number: int, alphas: list[float], samples_per_prompt: int) -> RowId:
    per_prompt = len(alphas) * samples_per_prompt
    prompt_index, within = divmod(row_number, per_prompt)
    alpha_index, sample_index = divmod(within, samples_per_prompt)
    return RowId(prompt_index, float(alphas[alpha_index]), sample_index)


def rows_in_range(start: int, end: int, alphas: list[float], samples_per_prompt: int) -> list[RowId]:
    return [row_at(number, alphas, samples_per_prompt) for number in range(start, end)]


def chunk_count(rows_total: int, chunk_size: int) -> int:
    """How many chunks of at most `chunk_size` rows cover `rows_total` rows (arithmetic, nothing built)."""
    return -(-rows_total // chunk_size)


def chunk_range(chunk_index: int, chunk_size: int, rows_total: int) -> tuple[int, int]:
    """The [start, end) rows of one chunk."""
    start = chunk_index * chunk_size
    return start, min(start + chunk_size, rows_total)

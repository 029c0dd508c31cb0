"""Counter-based randomness: each row's draw at each step is a pure function of its identity.

A completion must not depend on which batch, chunk or retry it ran in, so instead of a shared
generator we hash (seed, prompt index, alpha, sample index) into a 63-bit row key once, and mix
that key with the step number on the device (splitmix64) to get one uniform number per row.
"""

import hashlib

import torch


def _as_int64(value: int) -> int:
    """Wrap a Python int to the signed 64-bit value with the same bits (torch has no uint64 math)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = _as_int64(0xBF58476D1CE4E5B9)
_MIX2 = _as_int64(0x94D049BB133111EB)


def row_key(seed: int, prompt_index: int, alpha: float, sample_index: int) -> int:
    """A stable 63-bit key for one completion's random stream."""
    identity = f"{seed}|{prompt_index}|{float(alpha)!r}|{sample_index}".encode()
    return int.from_bytes(hashlib.blake2b(identity, digest_size=8).digest(), "little") >> 1


def _logical_shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    # torch's >> on int64 is arithmetic; mask off the copied sign bits.
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def row_uniforms(row_keys: torch.Tensor, step: int | torch.Tensor) -> torch.Tensor:
    """One uniform float64 in [0, 1) per row for decoding step `step`. `row_keys`: int64 `[batch]`.

    `step` is one number for every row, or int64 `[batch]` when each row is at its own step (rows
    join a running batch at different times).
    """
    if isinstance(step, torch.Tensor):
        x = row_keys + (step + 1) * _as_int64(_GOLDEN)  # int64 arithmetic wraps, as splitmix64 wants
    else:
        x = row_keys + _as_int64((step + 1) * _GOLDEN)
    x = (x ^ _logical_shift_right(x, 30)) * _MIX1
    x = (x ^ _logical_shift_right(x, 27)) * _MIX2
    x = x ^ _logical_shift_right(x, 31)
    return _logical_shift_right(x, 11).to(torch.float64) * (1.0 / (1 << 53))

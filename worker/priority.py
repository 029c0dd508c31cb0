"""The worker's side work runs at the lowest CPU priority, so that generation keeps the cores it needs.

Where torch keeps every core busy (a CPU-only host), each burst of side work (claiming, storing, heartbeats,
polls) takes a core from one of torch's threads, and every parallel op then waits for that thread; at the
lowest priority the bursts fill the gaps that torch leaves instead (its second thread sleeps while the first
runs Python between ops). Toy demo, 2-core CPU, service/engine ratio, alternating runs: the record store's
process at the worker's priority 0.81x and at niceness 10 0.87x (7 demos each); at 10 0.825x and at 19 0.985x
(6 each, another day, `--samples 16`); with the generation process's own side threads at 19 too, 0.96x against
0.915x (8 each, the demo's defaults) and 0.975x against 0.955x (6 each, `--samples 16`).

The cost is waiting while torch keeps every core busy: a commit of 6-9 ms of CPU took up to 255 ms, holding
SQLite's write lock, and a submit during a run took a median 23 ms and at most 200 ms (at 10: 20 and 104 ms).
On a GPU host the side work has cores to itself.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

NICENESS = 19  # the lowest: a niced process or thread can never raise its priority again without privileges


def lower_this_process() -> None:
    """The calling process (one whose only work is side work) to the lowest priority."""
    os.nice(NICENESS)


def side_thread(target: Callable[..., None], name: str, args: tuple = ()) -> threading.Thread:
    """A daemon thread for side work beside generation (and the Celery parent's sweeper): on Linux, where each
    thread has a niceness of its own, it runs at the lowest priority (elsewhere `nice` would lower the whole
    process: it runs as is)."""

    def run() -> None:
        if sys.platform == "linux":
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        target(*args)

    return threading.Thread(target=run, name=name, daemon=True)

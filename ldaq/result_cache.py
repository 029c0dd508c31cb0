"""A small, thread-safe LRU of results computed from an experiment's counts.

Keys carry the experiment's `completions_done`, so a result is reused until the counts change and
never served after: what is too dear for every poll is computed once per change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class ResultCache(Generic[T]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._results: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The cached result for `key`, or `compute()`'s, remembered. Computed outside the lock: two threads
        may both compute a new key, and both get the same answer."""
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        result = compute()
        with self._lock:
            self._results[key] = result
            while len(self._results) > self.capacity:
                self._results.popitem(last=False)
        return result

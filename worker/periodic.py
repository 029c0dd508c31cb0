"""A daemon thread that runs one action at a fixed interval until stopped.

The lease heartbeat and the sweeper both need one; an error in the action is logged and the next
round tries again, so a database blip never ends either of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from worker.priority import side_thread

log = logging.getLogger("ldaq.worker")


class PeriodicThread:
    def __init__(self, interval_seconds: float, action: Callable[[], None], name: str) -> None:
        self.interval_seconds, self.action = interval_seconds, action
        self._stopped = threading.Event()
        self._thread = side_thread(self._loop, name)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval_seconds):
            try:
                self.action()
            except Exception:
                log.exception("%s failed; trying again in %.1f s", self._thread.name, self.interval_seconds)

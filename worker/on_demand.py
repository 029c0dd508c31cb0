"""A daemon thread that runs one action whenever asked, one round at a time, until stopped.

Claiming ahead needs one. Asking costs the caller a notify: starting a thread per round would make the
generation thread wait, at every refill, for the new thread to take the GIL and hand it back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from worker.priority import side_thread

log = logging.getLogger("ldaq.worker")


class OnDemandThread:
    def __init__(self, action: Callable[[], None], name: str) -> None:
        self.action = action
        self._condition = threading.Condition()
        self._asked = self._running = self._stopping = False
        self._thread = side_thread(self._loop, name)

    def start(self) -> None:
        self._thread.start()

    def ask(self) -> None:
        """Run a round soon, unless one is running now (it does the same work)."""
        with self._condition:
            if not self._running:
                self._asked = True
                self._condition.notify_all()

    def wait(self) -> None:
        """Until no round runs or is asked for."""
        with self._condition:
            self._condition.wait_for(lambda: not (self._asked or self._running))

    def stop(self) -> None:
        """After the round asked for or running, end the thread."""
        self.wait()
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._asked or self._stopping)
                if self._stopping:
                    return
                self._asked, self._running = False, True
            try:
                self.action()
            except Exception:  # a failed round must not end the thread: the next one tries again
                log.exception("%s failed", self._thread.name)
            finally:
                with self._condition:
                    self._running = False
                    self._condition.notify_all()

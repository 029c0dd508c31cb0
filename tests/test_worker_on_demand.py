"""The claim-ahead thread: a round runs when asked, `wait` returns once it is done, and a failed round does not end
the thread."""

from __future__ import annotations

import threading

from worker.on_demand import OnDemandThread


def test_each_round_runs_when_asked_and_a_failed_round_does_not_end_the_thread():
    rounds: list[int] = []
    release = threading.Event()

    def action() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("a database blip")
        release.wait(30)

    thread = OnDemandThread(action, name="test-on-demand")
    thread.start()
    thread.ask()
    thread.wait()
    assert rounds == [0]  # it failed, and `wait` returned

    thread.ask()
    thread.ask()  # while a round runs, asking again adds none: that round does the same work
    release.set()
    thread.wait()
    thread.stop()
    assert rounds == [0, 1]

"""When a continuous batch should take new rows: the square-root rule of restocking.

Each admission costs a prefill forward, worth `cost` decoding steps; until it happens, the `free`
slots of rows that ended sit idle. Rows end at `rate` per step, so waiting `t` steps idles about
`rate * t**2 / 2` slot-steps, or that over `batch` of a step, and refilling then spreads `cost` over
`rate * t` rows. The cost per admitted row, `(rate * t**2 / (2 * batch) + cost) / (rate * t)`, is
least at `free = rate * t = sqrt(2 * batch * cost * rate)` (the economic order quantity): refill
once that many slots are free. Small, overhead-bound models (a prefill costs as much as a step)
then refill about half the batch at once; a big model on a GPU, whose step is dear and whose rows
end rarely, refills in smaller bites. Both `cost` and `rate` are measured as the batch runs.
"""

from __future__ import annotations

import math

SMOOTHING = 0.2  # weight of the newest observation in the running averages


def _average(current: float | None, observed: float) -> float:
    return observed if current is None else (1 - SMOOTHING) * current + SMOOTHING * observed


class RefillPolicy:
    """Tracks what a step and an admission cost and how fast rows end; says when to refill."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.step_seconds: float | None = None  # a decoding step with no admission
        self.admission_seconds: float | None = None  # what an admission adds to its step
        self.ending_rate: float | None = None  # rows ending per step

    def threshold(self) -> int:
        """Free slots worth an admission now; an eighth of the batch until both costs have been seen."""
        if self.step_seconds is None or self.admission_seconds is None or not self.ending_rate:
            return max(1, self.batch_size // 8)
        cost = self.admission_seconds / self.step_seconds
        best = math.sqrt(2 * self.batch_size * cost * self.ending_rate)
        return max(1, min(self.batch_size, round(best)))

    def observe(self, seconds: float, admitted: bool, ended: int) -> None:
        """One step took `seconds` (with an admission before it, if `admitted`) and ended `ended` rows."""
        self.ending_rate = _average(self.ending_rate, ended)
        if not admitted:
            self.step_seconds = _average(self.step_seconds, seconds)
        elif self.step_seconds is not None:
            self.admission_seconds = _average(self.admission_seconds, max(0.0, seconds - self.step_seconds))

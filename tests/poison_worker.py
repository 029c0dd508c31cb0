"""A real `ldaq worker` whose generation kills its own process when a row holding "POISON" joins the batch.

It stands for a chunk that crashes its worker every time (a segfault in a kernel, an OOM kill).
"""

import os
import signal

from lda_core.batcher import ContinuousBatcher

_real_admit = ContinuousBatcher._admit


def _admit_or_die(self, batch, rows):
    if any("POISON" in row.prompt for row in rows):
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_admit(self, batch, rows)


ContinuousBatcher._admit = _admit_or_die

if __name__ == "__main__":
    from cli.main import cli

    cli(["worker", "--loglevel=INFO"])

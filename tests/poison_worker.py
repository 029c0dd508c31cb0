"""A real `ldaq worker` whose generation kills its own process on any chunk holding "POISON".

It stands for a chunk that crashes its worker every time (a segfault in a kernel, an OOM kill).
"""

import os
import signal

import lda_core.runner

_real_generate_rows = lda_core.runner.generate_rows


def _generate_rows_or_die(pair, rows, *args, **kwargs):
    if any("POISON" in row.prompt for row in rows):
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_generate_rows(pair, rows, *args, **kwargs)


lda_core.runner.generate_rows = _generate_rows_or_die

if __name__ == "__main__":
    from cli.main import cli

    cli(["worker", "--loglevel=INFO"])

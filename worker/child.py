"""The pool child's side of each task: the one module that brings in torch, lda_core and models.

`worker.tasks` imports it inside the task body only, so the Celery parent (which forks, and must
never hold CUDA or a model) stays torch-free. Importing it before a chunk is claimed also matters:
loading torch holds the GIL for seconds, which would starve a fresh lease's heartbeat.
"""

from __future__ import annotations

from worker.context import current_context
from worker.drain import drain


def wake(model_pair: str) -> int:
    return drain(current_context(), model_pair)

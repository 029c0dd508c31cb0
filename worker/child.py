"""The pool child's side of each task: the one module that brings in torch, lda_core and models.

`worker.tasks` imports it inside the task bodies only, so the Celery parent (which forks, and must
never hold CUDA or a model) stays torch-free. Importing it before a chunk is claimed also matters:
loading torch holds the GIL for seconds, which would starve a fresh lease's heartbeat.
"""

from __future__ import annotations

from worker.chunk_runner import run_chunk
from worker.context import current_context
from worker.direct import run_direct_generation


def chunk(chunk_id: int) -> str:
    return run_chunk(current_context(), chunk_id)


def direct_generation(request_id: str) -> str:
    return run_direct_generation(current_context(), request_id)

"""The status machines of experiments and chunks, written once for the ledger, the API and clients.

    queued -> running -> succeeded | partial | failed | cancelled      (an experiment)
    queued -> running -> succeeded | failed | cancelled                (a chunk; back to queued on retry)
"""

from __future__ import annotations

from typing import Literal, get_args

ExperimentStatus = Literal["queued", "running", "succeeded", "partial", "failed", "cancelled"]
ChunkStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
DetectionStatus = Literal["queued", "running", "succeeded", "failed"]  # a re-detection over stored completions

EXPERIMENT_STATUSES: tuple[str, ...] = get_args(ExperimentStatus)
FINISHED_EXPERIMENT: tuple[str, ...] = ("succeeded", "partial", "failed", "cancelled")
FINISHED_CHUNK: tuple[str, ...] = ("succeeded", "failed", "cancelled")

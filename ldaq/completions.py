"""Reading an experiment's completions: a page at a time for the API, or all of them as an export.

Both walk the ledger's unique key (prompt, alpha, sample), so a page is an index range scan and a
cursor is simply the last key shown. An export is one query over that index, streamed from one
read snapshot with a server-side cursor and written in blocks: memory stays flat, and on SQLite
the read never takes the write lock, so the worker keeps writing while a client downloads.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator

from pydantic import TypeAdapter
from sqlalchemy import Connection, Select, and_, literal, select, tuple_
from sqlalchemy.orm import Session

from ldaq.backend import Backend
from ldaq.cursors import decode_cursor, encode_cursor
from ldaq.experiments import require_detector, require_experiment
from ldaq.request_models import DEFAULT_DETECTOR
from ldaq.tables import CompletionRecord, DetectionHit, Prompt

EXPORT_BLOCK_ROWS = 2000  # rows fetched from the cursor and written to the client at a time
EXPORT_MEDIA_TYPES = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}
COMPLETION_FIELDS = (
    "prompt_index", "prompt", "alpha", "sample_index", "text", "tokens", "finish_reason", "activated", "match", "error",
    "alpha0_weight",
)
_KEY = (CompletionRecord.prompt_index, CompletionRecord.alpha, CompletionRecord.sample_index)
_HIT_KEY = (DetectionHit.prompt_index, DetectionHit.alpha, DetectionHit.sample_index)
_COMPLETION_CURSOR = TypeAdapter(tuple[int, float, int])
_JSON = json.JSONEncoder(ensure_ascii=False, check_circular=False)


def _stored(experiment_id: str, detector: str, alpha: float | None, activated: bool | None) -> Select:
    """The experiment's completions in key order, with `activated` and `match` under `detector`: the
    completions' own columns for the default detector, else a join with that detection's hits (a page of a
    re-detection's hits is an index range scan over them)."""
    if detector == DEFAULT_DETECTOR:
        hit, match = CompletionRecord.activated, CompletionRecord.match
        query = select(CompletionRecord)
    else:
        same_row = and_(DetectionHit.experiment_id == CompletionRecord.experiment_id,
                        DetectionHit.detector == detector, *(a == b for a, b in zip(_HIT_KEY, _KEY, strict=True)))
        hit, match = DetectionHit.prompt_index.is_not(None), DetectionHit.match
        query = select(CompletionRecord).outerjoin(DetectionHit, same_row)
    fields = [getattr(CompletionRecord, name) for name in ("prompt_index", "alpha", "sample_index", "text", "tokens",
                                                           "finish_reason")]
    query = query.with_only_columns(*fields, hit.label("activated"), match.label("match"), CompletionRecord.error,
                                    CompletionRecord.alpha0_weight)
    query = query.where(CompletionRecord.experiment_id == experiment_id).order_by(*_KEY)
    if alpha is not None:
        query = query.where(CompletionRecord.alpha == alpha)
    if activated is not None:
        query = query.where(hit if activated else ~hit)
    return query


def list_completions(
    backend: Backend, experiment_id: str, alpha: float | None, activated: bool | None, limit: int, cursor: str | None,
    detector: str = DEFAULT_DETECTOR,
) -> dict:
    """One page of completions and the cursor of the next (None on the last page)."""
    query = _stored(experiment_id, detector, alpha, activated).limit(limit + 1)
    if cursor is not None:
        after = decode_cursor(cursor, _COMPLETION_CURSOR)
        query = query.where(tuple_(*_KEY) > tuple_(*(literal(value) for value in after)))
    with backend.database.read() as session:
        require_detector(session, require_experiment(session, experiment_id), detector)
        rows = session.execute(query).all()
        prompts = _prompt_texts(session, experiment_id, {row.prompt_index for row in rows[:limit]})
    items = [{**row._asdict(), "prompt": prompts[row.prompt_index]} for row in rows[:limit]]
    last = items[-1] if items else None
    next_cursor = encode_cursor((last["prompt_index"], last["alpha"], last["sample_index"])) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


def _prompt_texts(session: Session | Connection, experiment_id: str, indices: set[int] | None = None) -> dict[int, str]:
    """Prompt texts by index (all of the experiment's, or those of `indices`): once each, not once per row."""
    query = select(Prompt.prompt_index, Prompt.text).where(Prompt.experiment_id == experiment_id)
    if indices is not None:
        query = query.where(Prompt.prompt_index.in_(indices))
    return dict(session.execute(query).all())


def export_completions(
    backend: Backend, experiment_id: str, export_format: str, detector: str = DEFAULT_DETECTOR
) -> Iterator[str]:
    """Every completion as blocks of jsonl or csv lines, read from one snapshot while the response streams.

    The experiment and the detector are looked up now, so an unknown one is refused before any byte is sent.
    """
    with backend.database.read() as session:
        require_detector(session, require_experiment(session, experiment_id), detector)
    render = _csv_block if export_format == "csv" else _jsonl_block
    header = _csv_block([COMPLETION_FIELDS]) if export_format == "csv" else ""
    return _stream(backend, _stored(experiment_id, detector, None, None), experiment_id, render, header)


def _stream(
    backend: Backend, query: Select, experiment_id: str, render: Callable[[Iterable[tuple]], str], header: str
) -> Iterator[str]:
    if header:
        yield header
    with backend.database.snapshot() as connection:
        prompts = _prompt_texts(connection, experiment_id)
        result = connection.execution_options(stream_results=True, yield_per=EXPORT_BLOCK_ROWS).execute(query)
        for block in result.partitions():
            yield render([(row[0], prompts[row[0]], *row[1:]) for row in block])


def _csv_block(rows: Iterable[tuple]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def _jsonl_block(rows: Iterable[tuple]) -> str:
    return "".join(_JSON.encode(dict(zip(COMPLETION_FIELDS, row, strict=True))) + "\n" for row in rows)

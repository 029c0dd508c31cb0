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
from sqlalchemy import Select, literal, select, tuple_

from ldaq.backend import Backend
from ldaq.cursors import decode_cursor, encode_cursor
from ldaq.experiments import require_experiment
from ldaq.tables import CompletionRecord, Prompt

EXPORT_BLOCK_ROWS = 2000  # rows fetched from the cursor and written to the client at a time
EXPORT_MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
COMPLETION_FIELDS = (
    "prompt_index", "prompt", "alpha", "sample_index", "text", "tokens", "finish_reason", "activated", "match", "error"
)
_STORED_FIELDS = [getattr(CompletionRecord, name) for name in COMPLETION_FIELDS if name != "prompt"]
_KEY = (CompletionRecord.prompt_index, CompletionRecord.alpha, CompletionRecord.sample_index)
_COMPLETION_CURSOR = TypeAdapter(tuple[int, float, int])
_JSON = json.JSONEncoder(ensure_ascii=False, check_circular=False)


def _filtered(query: Select, experiment_id: str, alpha: float | None, activated: bool | None) -> Select:
    query = query.where(CompletionRecord.experiment_id == experiment_id).order_by(*_KEY)
    if alpha is not None:
        query = query.where(CompletionRecord.alpha == alpha)
    if activated is not None:
        query = query.where(CompletionRecord.activated == activated)
    return query


def list_completions(
    backend: Backend, experiment_id: str, alpha: float | None, activated: bool | None, limit: int, cursor: str | None
) -> dict:
    """One page of completions and the cursor of the next (None on the last page)."""
    same_prompt = (Prompt.experiment_id == CompletionRecord.experiment_id) & (
        Prompt.prompt_index == CompletionRecord.prompt_index
    )
    query = select(*_STORED_FIELDS, Prompt.text.label("prompt")).join(Prompt, same_prompt)
    query = _filtered(query, experiment_id, alpha, activated).limit(limit + 1)
    if cursor is not None:
        after = decode_cursor(cursor, _COMPLETION_CURSOR)
        query = query.where(tuple_(*_KEY) > tuple_(*(literal(value) for value in after)))
    with backend.database.read() as session:
        require_experiment(session, experiment_id)
        rows = session.execute(query).all()
    items = [row._asdict() for row in rows[:limit]]
    last = items[-1] if items else None
    next_cursor = encode_cursor((last["prompt_index"], last["alpha"], last["sample_index"])) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


def export_completions(backend: Backend, experiment_id: str, export_format: str) -> Iterator[str]:
    """Every completion as blocks of jsonl or csv lines, read from one snapshot while the response streams.

    The experiment is looked up now, so an unknown id is refused before any byte is sent.
    """
    with backend.database.read() as session:
        require_experiment(session, experiment_id)
    render = _csv_block if export_format == "csv" else _jsonl_block
    header = _csv_block([COMPLETION_FIELDS]) if export_format == "csv" else ""
    return _stream(backend, experiment_id, render, header)


def _stream(
    backend: Backend, experiment_id: str, render: Callable[[Iterable[tuple]], str], header: str
) -> Iterator[str]:
    if header:
        yield header
    with backend.database.snapshot() as connection:
        # Prompts once, by index (at most the request limit), instead of repeating each prompt's text
        # on every one of its rows in the query.
        prompt_texts = select(Prompt.prompt_index, Prompt.text).where(Prompt.experiment_id == experiment_id)
        prompts = dict(connection.execute(prompt_texts).all())
        result = connection.execution_options(stream_results=True, yield_per=EXPORT_BLOCK_ROWS).execute(
            _filtered(select(*_STORED_FIELDS), experiment_id, None, None)
        )
        for block in result.partitions():
            yield render([(row[0], prompts[row[0]], *row[1:]) for row in block])


def _csv_block(rows: Iterable[tuple]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def _jsonl_block(rows: Iterable[tuple]) -> str:
    return "".join(_JSON.encode(dict(zip(COMPLETION_FIELDS, row, strict=True))) + "\n" for row in rows)

"""Reading an experiment's completions: a page at a time for the API, or all of them as an export.

Both walk the ledger's unique key (prompt, alpha, sample), so a page is an index range scan and
a cursor is simply the last key shown.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from pydantic import TypeAdapter
from sqlalchemy import Select, and_, or_, select

from ldaq.backend import Backend
from ldaq.cursors import decode_cursor, encode_cursor
from ldaq.experiments import require_experiment
from ldaq.tables import CompletionRecord, Prompt

EXPORT_PAGE_SIZE = 1000
EXPORT_MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
COMPLETION_FIELDS = (
    "prompt_index", "prompt", "alpha", "sample_index", "text", "tokens", "finish_reason", "activated", "match"
)
_COMPLETION_CURSOR = TypeAdapter(tuple[int, float, int])


def _completions_query(
    experiment_id: str, alpha: float | None, activated: bool | None, after: tuple | None, limit: int
) -> Select:
    """Completions in key order, optionally filtered, starting after the key `after`."""
    record = CompletionRecord
    query = (
        select(
            record.prompt_index, Prompt.text.label("prompt"), record.alpha, record.sample_index, record.text,
            record.tokens, record.finish_reason, record.activated, record.match,
        )
        .join(Prompt, and_(Prompt.experiment_id == record.experiment_id, Prompt.prompt_index == record.prompt_index))
        .where(record.experiment_id == experiment_id)
        .order_by(record.prompt_index, record.alpha, record.sample_index)
        .limit(limit)
    )
    if alpha is not None:
        query = query.where(record.alpha == alpha)
    if activated is not None:
        query = query.where(record.activated == activated)
    if after is not None:
        prompt_index, alpha_seen, sample_index = after
        same_prompt, same_alpha = record.prompt_index == prompt_index, record.alpha == alpha_seen
        # Spelled out rather than a row-value comparison, so SQLite and Postgres read it alike.
        query = query.where(
            or_(
                record.prompt_index > prompt_index,
                and_(same_prompt, record.alpha > alpha_seen),
                and_(same_prompt, same_alpha, record.sample_index > sample_index),
            )
        )
    return query


def _key_of(completion: dict) -> tuple[int, float, int]:
    return (completion["prompt_index"], completion["alpha"], completion["sample_index"])


def list_completions(
    backend: Backend, experiment_id: str, alpha: float | None, activated: bool | None, limit: int, cursor: str | None
) -> dict:
    """One page of completions and the cursor of the next (None on the last page)."""
    after = decode_cursor(cursor, _COMPLETION_CURSOR) if cursor is not None else None
    with backend.database.transaction() as session:
        require_experiment(session, experiment_id)
        rows = session.execute(_completions_query(experiment_id, alpha, activated, after, limit + 1)).all()
    items = [row._asdict() for row in rows[:limit]]
    next_cursor = encode_cursor(_key_of(items[-1])) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


def _all_completions(backend: Backend, experiment_id: str) -> Iterator[dict]:
    # One short transaction per page: a long export must not hold the ledger (on SQLite, its
    # write lock) while a slow client reads.
    after = None
    while True:
        with backend.database.transaction() as session:
            rows = session.execute(_completions_query(experiment_id, None, None, after, EXPORT_PAGE_SIZE)).all()
        page = [row._asdict() for row in rows]
        yield from page
        if len(page) < EXPORT_PAGE_SIZE:
            return
        after = _key_of(page[-1])


def _csv_line(values: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def _export_lines(completions: Iterator[dict], export_format: str) -> Iterator[str]:
    if export_format == "csv":
        yield _csv_line(list(COMPLETION_FIELDS))
        for completion in completions:
            yield _csv_line([completion[field] for field in COMPLETION_FIELDS])
    else:
        for completion in completions:
            yield json.dumps(completion, ensure_ascii=False) + "\n"


def export_completions(backend: Backend, experiment_id: str, export_format: str) -> Iterator[str]:
    """Every completion as jsonl or csv lines, read page by page while the response streams.

    The experiment is looked up now, so an unknown id is refused before any byte is sent.
    """
    with backend.database.transaction() as session:
        require_experiment(session, experiment_id)
    return _export_lines(_all_completions(backend, experiment_id), export_format)

"""Storing a chunk's completions and counting them: the totals a poll reads instead of the rows.

A chunk's rows are inserted, and counted, in the one transaction that marks it succeeded, with the chunk
locked (`ldaq.ledger.complete_chunks`): a chunk delivered twice is skipped whole, so the counts stay equal to
what is stored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, fields
from functools import cache
from types import ModuleType
from typing import NamedTuple

from sqlalchemy import Insert, insert
from sqlalchemy.orm import Session

from ldaq.db import dialect_of
from ldaq.request_models import DEFAULT_DETECTOR
from ldaq.tables import AlphaTotal, CompletionRecord, DetectionHit, Experiment, PromptTotal


class Inserted(NamedTuple):
    """A row actually inserted: what it counts for."""

    prompt_index: int
    alpha: float
    sample_index: int
    activated: bool  # under the default detector
    errored: bool  # it could not run: done, but never sampled
    alpha0_weight: float | None  # p_0(text) / mean of p_j(text) over its mixture (lda_core.generate); None when greedy


@dataclass
class Tally:
    """A group's counts as a totals row holds them (`ldaq.tables.Counts`)."""

    n: int = 0
    activated: int = 0
    weighed: int = 0
    weighted_activated: float = 0.0
    weighted_activated_sq: float = 0.0

    def add(self, hit: bool, weight: float | None) -> None:
        self.n, self.activated, self.weighed = self.n + 1, self.activated + hit, self.weighed + (weight is not None)
        if hit and weight is not None:
            self.weighted_activated += weight
            self.weighted_activated_sq += weight * weight

    def merge(self, other: Tally) -> None:
        for name, value in other.counts().items():
            setattr(self, name, getattr(self, name) + value)

    def counts(self) -> dict[str, int | float]:
        """The counts by column name (not `dataclasses.asdict`, whose deep copy a chunk's commit paid for every group)."""
        return dict(vars(self))


def tally_by(rows: Iterable[tuple[Hashable, bool, float | None]]) -> dict:
    """(group, hit, weight) rows -> each group's Tally."""
    tallies: defaultdict = defaultdict(Tally)
    for group, hit, weight in rows:
        tallies[group].add(hit, weight)
    return dict(tallies)


def alpha_tallies(prompt_tallies: dict[tuple[float, int], Tally]) -> dict[tuple[float], Tally]:
    """Per-(alpha, prompt) tallies summed per alpha: what alpha_totals holds beside prompt_totals."""
    per_alpha: defaultdict = defaultdict(Tally)
    for (alpha, _), tally in prompt_tallies.items():
        per_alpha[(alpha,)].merge(tally)
    return dict(per_alpha)


NamedHits = dict[str, dict[tuple[int, float, int], str]]  # detector name -> row key -> match, for named detectors


def insert_completions(session: Session, records: list[dict]) -> list[Inserted]:
    """Insert completions of chunks not yet succeeded; returns what each counts for.

    None of them can be stored already: a chunk's rows commit only with its succeeded status. So a plain
    insert, whose unique key would fail the transaction loudly rather than let a row count twice. Inserting or
    ignoring, with RETURNING to count what was inserted, cost 75-81 µs a row of the record store's CPU on
    Postgres against 14-15 µs, and 8-10 µs against 7-8 on SQLite.
    """
    if records:
        session.connection().execute(_INSERT_COMPLETIONS, records)
    return [Inserted(record["prompt_index"], record["alpha"], record["sample_index"], record["activated"],
                     record.get("error") is not None, record.get("alpha0_weight")) for record in records]


_INSERT_COMPLETIONS = insert(CompletionRecord.__table__)  # one statement, compiled once


def add_to_totals(session: Session, experiment: Experiment, inserted: list[Inserted], named: NamedHits) -> None:
    """Add the inserted rows to the experiment's counters and to each detector's totals, per alpha and per
    (alpha, prompt): the default detector's from the rows, a named one's from its hits among them (which are
    stored too, for the completions it found).

    A row that could not run counts as done (progress) but not in any rate's n: it was never sampled.
    """
    sampled = [row for row in inserted if not row.errored]
    _add_detector_counts(session, experiment.id, DEFAULT_DETECTOR, [(row, row.activated) for row in sampled])
    for name, hits in named.items():
        found = [(row, hits.get((row.prompt_index, row.alpha, row.sample_index))) for row in sampled]
        _add_detector_counts(session, experiment.id, name, [(row, match is not None) for row, match in found])
        stored = [{"experiment_id": experiment.id, "detector": name, "prompt_index": row.prompt_index,
                   "alpha": row.alpha, "sample_index": row.sample_index, "match": match}
                  for row, match in found if match is not None]
        if stored:
            session.execute(insert(DetectionHit.__table__), stored)
    experiment.completions_done += len(inserted)
    experiment.completions_errored += sum(row.errored for row in inserted)


def _add_detector_counts(session: Session, experiment_id: str, detector: str, rows: list[tuple[Inserted, bool]]) -> None:
    per_prompt = tally_by(((row.alpha, row.prompt_index), hit, row.alpha0_weight) for row, hit in rows)
    _add_counts(session, AlphaTotal, experiment_id, detector, ("alpha",), alpha_tallies(per_prompt))
    _add_counts(session, PromptTotal, experiment_id, detector, ("alpha", "prompt_index"), per_prompt)


def _add_counts(
    session: Session, table: type[AlphaTotal | PromptTotal], experiment_id: str, detector: str,
    columns: tuple[str, ...], tallies: dict[tuple, Tally],
) -> None:
    """Upsert `table`'s counts for each group (the values of `columns`), in key order so that concurrent
    writers take their row locks in the same order."""
    if not tallies:
        return
    rows = [{"experiment_id": experiment_id, "detector": detector, **dict(zip(columns, group, strict=True)),
             **tally.counts()} for group, tally in sorted(tallies.items())]
    session.connection().execute(_counts_upsert(dialect_of(session), table, columns), rows)


@cache
def _counts_upsert(dialect: ModuleType, table: type[AlphaTotal | PromptTotal], columns: tuple[str, ...]) -> Insert:
    """Add one row's counts to its group's, or start the group: one statement for every chunk, compiled
    once (a multi-row VALUES would be a new statement, compiled anew, for each number of groups)."""
    statement = dialect.insert(table.__table__)
    stored = table.__table__.c
    return statement.on_conflict_do_update(
        index_elements=["experiment_id", "detector", *columns],
        set_={column.name: stored[column.name] + statement.excluded[column.name] for column in fields(Tally)},
    )

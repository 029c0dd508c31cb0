"""Storing a chunk's completions and counting them: the totals a poll reads instead of the rows.

Only rows actually inserted are counted (insert-or-ignore with RETURNING), so the counts stay
equal to what is stored whatever is delivered twice.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy.orm import Session

from ldaq.db import dialect_of
from ldaq.request_models import DEFAULT_DETECTOR
from ldaq.tables import AlphaTotal, CompletionRecord, Experiment

ROW_KEY = ["experiment_id", "prompt_index", "alpha", "sample_index"]


def insert_new_completions(session: Session, records: list[dict]) -> list[tuple[float, bool, bool]]:
    """Insert what is not stored yet; returns (alpha, activated, errored) of each row actually inserted."""
    if not records:
        return []
    statement = (
        dialect_of(session).insert(CompletionRecord)
        .on_conflict_do_nothing(index_elements=ROW_KEY)
        .returning(CompletionRecord.alpha, CompletionRecord.activated, CompletionRecord.error)
    )
    # The error itself comes back, not `error IS NOT NULL`: an ORM bulk insert's RETURNING gives an
    # expression column wrong values on SQLite (True for every row, seen with SQLAlchemy 2.0).
    return [(alpha, activated, error is not None) for alpha, activated, error in session.execute(statement, records)]


def add_to_totals(session: Session, experiment: Experiment, inserted: list[tuple[float, bool, bool]]) -> None:
    """Add the inserted rows to the experiment's counters and its default detector's per-alpha totals.

    A row that could not run counts as done (progress) but not in any rate's n: it was never sampled.
    """
    n_by_alpha = Counter(alpha for alpha, _, errored in inserted if not errored)
    activated_by_alpha = Counter(alpha for alpha, activated, _ in inserted if activated)
    totals = [
        {"experiment_id": experiment.id, "detector": DEFAULT_DETECTOR, "alpha": alpha, "n": n,
         "activated": activated_by_alpha[alpha]}
        for alpha, n in sorted(n_by_alpha.items())
    ]
    if totals:
        statement = dialect_of(session).insert(AlphaTotal).values(totals)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["experiment_id", "detector", "alpha"],
                set_={"n": AlphaTotal.n + statement.excluded.n, "activated": AlphaTotal.activated + statement.excluded.activated},
            )
        )
    experiment.completions_done += len(inserted)
    experiment.completions_errored += sum(errored for _, _, errored in inserted)

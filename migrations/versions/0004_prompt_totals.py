"""per-prompt totals: the counts a prompt-clustered interval resamples

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

Completions and activations per (experiment, detector, alpha, prompt), kept as chunks commit like
the per-alpha totals, so that an interval that resamples prompts reads a few rows per prompt, never
the completions. Existing ledgers are backfilled from what they hold (rows that could not run are
left out of n, as in the per-alpha totals).
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

DEFAULT_DETECTOR = 'default'


def upgrade() -> None:
    op.create_table('prompt_totals',
    sa.Column('experiment_id', sa.String(length=36), nullable=False),
    sa.Column('detector', sa.String(length=100), nullable=False),
    sa.Column('alpha', sa.Float(), nullable=False),
    sa.Column('prompt_index', sa.Integer(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('activated', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('experiment_id', 'detector', 'alpha', 'prompt_index')
    )
    op.execute(
        "INSERT INTO prompt_totals (experiment_id, detector, alpha, prompt_index, n, activated) "
        f"SELECT experiment_id, '{DEFAULT_DETECTOR}', alpha, prompt_index, count(*), "
        "sum(CASE WHEN activated THEN 1 ELSE 0 END) FROM completions WHERE error IS NULL "
        "GROUP BY experiment_id, alpha, prompt_index"
    )


def downgrade() -> None:
    op.drop_table('prompt_totals')

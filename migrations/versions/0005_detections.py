"""named detectors run again over stored completions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

A detection (experiment, name) records a named detector: given at submit (applied as chunks
commit) or run later over an experiment's stored completions by the detection worker; its hits are kept sparse (only completions that matched), keyed like the
completions. Its totals go to alpha_totals and prompt_totals under its name, which already carry a
detector column. Nothing to backfill: existing experiments have only their default detector.
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('detections',
    sa.Column('experiment_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('detector', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('at_submit', sa.Boolean(), nullable=False),
    sa.Column('completions_scanned', sa.Integer(), nullable=False),
    sa.Column('activated', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('experiment_id', 'name')
    )
    op.create_table('detection_hits',
    sa.Column('experiment_id', sa.String(length=36), nullable=False),
    sa.Column('detector', sa.String(length=100), nullable=False),
    sa.Column('prompt_index', sa.Integer(), nullable=False),
    sa.Column('alpha', sa.Float(), nullable=False),
    sa.Column('sample_index', sa.Integer(), nullable=False),
    sa.Column('match', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('experiment_id', 'detector', 'prompt_index', 'alpha', 'sample_index')
    )


def downgrade() -> None:
    op.drop_table('detection_hits')
    op.drop_table('detections')

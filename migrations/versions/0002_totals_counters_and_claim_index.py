"""totals, counters and the claim index: reads and rings that do not grow with an experiment

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Per-alpha totals (per detector) and per-experiment counters replace counting completions and
chunks on every poll; activated completions get an index in key order for their pages; chunks carry their pair for a one-probe claim; a pair's doorbell time lets
the sweeper ring once per pair. Existing ledgers are backfilled from what they hold.
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

DEFAULT_DETECTOR = 'default'


def _add_experiment_columns() -> None:
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('short_prompts', sa.JSON(), nullable=True))
        for name in ('chunks_succeeded', 'chunks_failed', 'chunks_cancelled', 'completions_done'):
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default='0'))
        batch_op.drop_index(batch_op.f('ix_experiments_created_at'))
        batch_op.drop_index(batch_op.f('ix_experiments_status'))
        batch_op.create_index('ix_experiments_newest', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_experiments_status_newest', ['status', 'created_at', 'id'], unique=False)
    for status in ('succeeded', 'failed', 'cancelled'):
        op.execute(
            f"UPDATE experiments SET chunks_{status} = (SELECT count(*) FROM chunks "
            f"WHERE chunks.experiment_id = experiments.id AND chunks.status = '{status}')"
        )
    op.execute(
        "UPDATE experiments SET completions_done = (SELECT count(*) FROM completions "
        "WHERE completions.experiment_id = experiments.id)"
    )


def _add_chunk_pair() -> None:
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model_pair', sa.String(length=200), nullable=False, server_default=''))
    op.execute(
        "UPDATE chunks SET model_pair = (SELECT model_pair FROM experiments WHERE experiments.id = chunks.experiment_id)"
    )
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.create_index('ix_chunks_claim_order', ['status', 'model_pair', 'id'], unique=False)


def _create_totals() -> None:
    op.create_table('alpha_totals',
    sa.Column('experiment_id', sa.String(length=36), nullable=False),
    sa.Column('detector', sa.String(length=100), nullable=False),
    sa.Column('alpha', sa.Float(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('activated', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('experiment_id', 'detector', 'alpha')
    )
    op.execute(
        "INSERT INTO alpha_totals (experiment_id, detector, alpha, n, activated) "
        f"SELECT experiment_id, '{DEFAULT_DETECTOR}', alpha, count(*), "
        "sum(CASE WHEN activated THEN 1 ELSE 0 END) FROM completions GROUP BY experiment_id, alpha"
    )
    op.create_table('pair_doorbells',
    sa.Column('model_pair', sa.String(length=200), nullable=False),
    sa.Column('rung_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('model_pair')
    )


def _extend_direct_generations() -> None:
    with op.batch_alter_table('direct_generations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model_pair', sa.String(length=200), nullable=False, server_default=''))
        batch_op.create_index(
            'ix_direct_generations_claim_order', ['status', 'model_pair', 'created_at'], unique=False
        )


def upgrade() -> None:
    _add_experiment_columns()
    _add_chunk_pair()
    _create_totals()
    _extend_direct_generations()
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.alter_column('text', existing_type=sa.Text(), nullable=True)
        batch_op.drop_index('ix_completions_experiment_activated')
        batch_op.create_index(
            'ix_completions_activated_in_key_order',
            ['experiment_id', 'activated', 'prompt_index', 'alpha', 'sample_index'], unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.drop_index('ix_completions_activated_in_key_order')
        batch_op.create_index('ix_completions_experiment_activated', ['experiment_id', 'activated'], unique=False)
        batch_op.alter_column('text', existing_type=sa.Text(), nullable=False)
    with op.batch_alter_table('direct_generations', schema=None) as batch_op:
        batch_op.drop_index('ix_direct_generations_claim_order')
        batch_op.drop_column('model_pair')
    op.drop_table('pair_doorbells')
    op.drop_table('alpha_totals')
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.drop_index('ix_chunks_claim_order')
        batch_op.drop_column('model_pair')
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.drop_index('ix_experiments_status_newest')
        batch_op.drop_index('ix_experiments_newest')
        batch_op.create_index(batch_op.f('ix_experiments_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_experiments_created_at'), ['created_at'], unique=False)
        for name in ('completions_done', 'chunks_cancelled', 'chunks_failed', 'chunks_succeeded', 'short_prompts'):
            batch_op.drop_column(name)

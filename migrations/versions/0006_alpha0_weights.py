"""alpha-0 importance weights on completions and their sums in the totals

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

Each sampled completion keeps p_0(text)/p_alpha(text) (the reweighted alpha-0 estimate,
lda_core.reweight); alpha_totals and prompt_totals count how many carry one and sum the hits'
weights and squared weights. Nothing to backfill: completions stored before have no weight (NULL),
their totals count 0 weighed, and the estimate is not offered for them.
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TOTALS = ('alpha_totals', 'prompt_totals')


def upgrade() -> None:
    op.add_column('completions', sa.Column('alpha0_weight', sa.Float(), nullable=True))
    for table in TOTALS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('weighed', sa.Integer(), nullable=False, server_default='0'))
            batch.add_column(sa.Column('weighted_activated', sa.Float(), nullable=False, server_default='0'))
            batch.add_column(sa.Column('weighted_activated_sq', sa.Float(), nullable=False, server_default='0'))


def downgrade() -> None:
    for table in TOTALS:
        with op.batch_alter_table(table) as batch:
            batch.drop_column('weighted_activated_sq')
            batch.drop_column('weighted_activated')
            batch.drop_column('weighed')
    op.drop_column('completions', 'alpha0_weight')

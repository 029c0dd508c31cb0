"""rows that could not run: a completion's error, and how many an experiment has

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

A row the worker cannot run (a prompt too long for the context window, a chat template that fails
on it, out of memory even alone) is stored with finish_reason "error" and its reason, so the rest
of its chunk goes on; the experiment counts such rows to end `partial` and to show them in progress.
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error', sa.Text(), nullable=True))
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('completions_errored', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.drop_column('completions_errored')
    with op.batch_alter_table('completions', schema=None) as batch_op:
        batch_op.drop_column('error')

"""sync part checkpoints: a fetch part saves the pages it wrote, so the attempt that takes it over lists the rest

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 08:00:00

A part handed over (its worker lost) or redelivered used to list its resource type again from page 0. A running
fetch part now saves a checkpoint (pipeline.checkpoint) every ``[sync] checkpoint_interval``: the pages it wrote
completely and its writers' state. The column is null for parts that never saved one and once a part ends.
"""

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sync_parts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('checkpoint', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sync_parts', schema=None) as batch_op:
        batch_op.drop_column('checkpoint')

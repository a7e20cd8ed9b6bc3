"""sync part leases: a running part renews heartbeat_at; the reaper hands over one whose lease ran out

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 06:00:00

A part whose worker host was lost used to wait for the broker's visibility timeout (70 minutes) before another
worker got its message. A running part now renews ``heartbeat_at`` while it works (pipeline.claims.PartLease),
and the reaper hands over one not renewed for a minute (pipeline.reaper). Parts running during the upgrade have
none: the reaper reads their ``started_at`` instead.
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sync_parts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_sync_parts_status_heartbeat', ['status', 'heartbeat_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sync_parts', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_parts_status_heartbeat')
        batch_op.drop_column('heartbeat_at')

"""event cursors: where each connector's incremental refresh from Directory Insights stands

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 03:00:00

The incremental refresh (pipeline.incremental) keeps one row per connector: the cursor, the ids of the events
in its overlap window already applied, and what its last refresh did. Nothing to backfill: a connector
without a row starts from its latest successful full sync.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('event_cursors',
    sa.Column('connector_id', sa.Integer(), nullable=False),
    sa.Column('cursor', sa.DateTime(timezone=True), nullable=True),
    sa.Column('seen', sa.JSON(), nullable=False),
    sa.Column('refreshed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('reads', sa.Integer(), nullable=False),
    sa.Column('lag_seconds', sa.Float(), nullable=True),
    sa.Column('full_sync_asked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['connector_id'], ['connectors.id'], ),
    sa.PrimaryKeyConstraint('connector_id')
    )


def downgrade() -> None:
    op.drop_table('event_cursors')

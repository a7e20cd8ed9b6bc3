"""msp organisations: what each [[msp]] key listed, and the connector name each organisation was given

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 06:00:00

Discovery (pipeline.discovery) keeps one row per organisation an MSP key lists, with the connector name chosen
when it was first listed, and one row per MSP key for its last listing. Nothing to backfill.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('msp_organizations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('msp', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('org_id', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('connector', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('display_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('missing_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('msp', 'org_id'),
    sa.UniqueConstraint('connector')
    )
    op.create_table('msp_listings',
    sa.Column('msp', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('listed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('organizations', sa.Integer(), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('msp')
    )


def downgrade() -> None:
    op.drop_table('msp_listings')
    op.drop_table('msp_organizations')

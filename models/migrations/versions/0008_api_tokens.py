"""api tokens, and whom a provisioning request is asked for

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 00:00:00

The HTTP API authenticates callers with tokens (auth.tokens): one row per token, holding the SHA-256 digest of
its secret and never the secret. ``provisioning_requests.on_behalf_of`` records whom a caller says it asks for,
apart from ``requested_by`` (the caller itself). Nothing to backfill: earlier requests were asked for no one
else.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('secret_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('provisioning_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('on_behalf_of', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('provisioning_requests', schema=None) as batch_op:
        batch_op.drop_column('on_behalf_of')
    op.drop_table('api_tokens')

"""grant write times: a full sync never undoes a write-through newer than its listing

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 06:40:00

Provisioning's write-through now stamps the grant rows it sets with ``written_at``. A sync part that began before
that time read its listing before the change, perhaps: it neither deletes a row added then nor brings back one
removed then (models.store.GrantWriter). Rows written before this migration have none: syncs own them, as before.
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('written_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.drop_column('written_at')

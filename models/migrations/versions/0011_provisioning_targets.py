"""provisioning targets: requests on one account apply in the order they were recorded

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 05:30:00

A provisioning worker applies many requests at once; ``target_key`` names the account a request changes, and the
claim takes a request only when none ahead of it on that account is pending or running (provisioning.ordering).
Requests recorded before this migration have no target: they keep the order they had (none), and end soon.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('provisioning_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('target_key', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True))
        batch_op.create_index('ix_provisioning_target', ['connector', 'target_key', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('provisioning_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_provisioning_target')
        batch_op.drop_column('target_key')

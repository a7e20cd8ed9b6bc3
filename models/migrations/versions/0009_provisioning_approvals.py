"""provisioning approvals: requests that await approvers, and their decisions

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:30:00

A connector's policy may want one or two approvers for a request (provisioning.approvals): the request records
how many and until when (``approvals_required``, ``approval_expires_at``), and each approver's decision is a row
of ``provisioning_decisions``. ``status`` widens to hold ``awaiting_approval``. Nothing to backfill: earlier
requests needed no approval.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('provisioning_requests', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sqlmodel.sql.sqltypes.AutoString(length=16),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=32), existing_nullable=False)
        batch_op.add_column(sa.Column('approvals_required', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('approval_expires_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('provisioning_decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('decision', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('comment', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['provisioning_requests.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'decided_by', name='uq_provisioning_decision_by')
    )


def downgrade() -> None:
    op.drop_table('provisioning_decisions')
    with op.batch_alter_table('provisioning_requests', schema=None) as batch_op:
        batch_op.drop_column('approval_expires_at')
        batch_op.drop_column('approvals_required')
        batch_op.alter_column('status', existing_type=sqlmodel.sql.sqltypes.AutoString(length=32),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=16), existing_nullable=False)

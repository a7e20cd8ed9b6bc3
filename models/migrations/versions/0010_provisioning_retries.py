"""provisioning retries: who put a failed request back to pending, and when

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 01:30:00

A retry sends an access change again, so the audit (provisioning.audit) must name who asked for it: each retry
is a row of ``provisioning_retries``, written with the status move. Nothing to backfill: earlier retries were
not recorded with their principal. The audit reads every source by time, so submissions, outcomes and
decisions get an index on their time too.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('provisioning_retries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('retried_by', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('retried_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['provisioning_requests.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('provisioning_retries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provisioning_retries_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_provisioning_retries_retried_at'), ['retried_at'], unique=False)
    with op.batch_alter_table('provisioning_requests', schema=None) as batch_op:
        batch_op.create_index('ix_provisioning_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_provisioning_finished_at', ['finished_at'], unique=False)
    with op.batch_alter_table('provisioning_decisions', schema=None) as batch_op:
        batch_op.create_index('ix_provisioning_decisions_decided_at', ['decided_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('provisioning_decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_provisioning_decisions_decided_at')
    with op.batch_alter_table('provisioning_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_provisioning_finished_at')
        batch_op.drop_index('ix_provisioning_created_at')
    with op.batch_alter_table('provisioning_retries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provisioning_retries_retried_at'))
        batch_op.drop_index(batch_op.f('ix_provisioning_retries_request_id'))
    op.drop_table('provisioning_retries')

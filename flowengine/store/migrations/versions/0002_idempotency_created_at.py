"""Idempotency keys remember when they were used, so old keys can be purged.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from flowengine.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fe_idempotency") as batch:
        batch.add_column(sa.Column("created_at", UTCDateTime, nullable=True))
    op.create_index("ix_fe_history_at", "fe_history", ["at"])


def downgrade() -> None:
    op.drop_index("ix_fe_history_at", "fe_history")
    with op.batch_alter_table("fe_idempotency") as batch:
        batch.drop_column("created_at")

"""Initial schema: definitions, instances, history, timers, outbox, idempotency keys, form counters.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from flowengine.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fe_definitions",
        sa.Column("process_id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("definition_json", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("process_id", "version"),
        sa.UniqueConstraint("process_id", "content_hash", name="uq_fe_definitions_hash"),
    )
    op.create_table(
        "fe_instances",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("process_id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("parent_id", sa.String(200), nullable=True),
        sa.Column("origin_id", sa.String(200), nullable=True),
        sa.Column("started_by", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_fe_instances_process_state", "fe_instances", ["process_id", "state"])
    op.create_index("ix_fe_instances_status", "fe_instances", ["status"])
    op.create_index("ix_fe_instances_parent", "fe_instances", ["parent_id"])
    op.create_table(
        "fe_history",
        sa.Column("instance_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("event", sa.String(100), nullable=False),
        sa.Column("from_state", sa.String(100), nullable=True),
        sa.Column("to_state", sa.String(100), nullable=False),
        sa.Column("actor_id", sa.String(200), nullable=False),
        sa.Column("actor_roles", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "seq"),
    )
    op.create_table(
        "fe_timers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("instance_id", sa.String(200), nullable=False),
        sa.Column("timer", sa.String(100), nullable=False),
        sa.Column("due_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("fired_at", UTCDateTime, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
    )
    op.create_index("ix_fe_timers_due", "fe_timers", ["status", "due_at"])
    op.create_index("ix_fe_timers_instance", "fe_timers", ["instance_id", "status"])
    op.create_table(
        "fe_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(36), nullable=False, unique=True),
        sa.Column("instance_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("delivered_at", UTCDateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_fe_outbox_pending", "fe_outbox", ["delivered_at", "id"])
    op.create_table(
        "fe_idempotency",
        sa.Column("instance_id", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "key"),
    )
    op.create_table(
        "fe_counters",
        sa.Column("prefix", sa.String(20), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("value", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("prefix", "year"),
    )


def downgrade() -> None:
    for table in ("fe_counters", "fe_idempotency", "fe_outbox", "fe_timers", "fe_history", "fe_instances",
                  "fe_definitions"):
        op.drop_table(table)

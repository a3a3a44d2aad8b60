"""Indexes that serve `list` in its own order: the first page reads `limit` rows instead of sorting a state.

`list(process, state)` and `list(state)` order by (created_at, id); (process_id, state) alone made SQLite
sort every instance in the state, and `list(state=…)` without a process scanned the whole table.
(process_id, state, created_at, id) replaces (process_id, state), which it covers.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_fe_instances_process_state_created", "fe_instances",
                    ["process_id", "state", "created_at", "id"])
    op.create_index("ix_fe_instances_state_created", "fe_instances", ["state", "created_at", "id"])
    op.drop_index("ix_fe_instances_process_state", "fe_instances")


def downgrade() -> None:
    op.create_index("ix_fe_instances_process_state", "fe_instances", ["process_id", "state"])
    op.drop_index("ix_fe_instances_state_created", "fe_instances")
    op.drop_index("ix_fe_instances_process_state_created", "fe_instances")

"""Hooks of bank_equipment_repair (spec §18): how late a repair task was closed."""

from __future__ import annotations

import datetime as dt

from flowengine.hooks import ActionContext
from flowengine.shipped import hooks


@hooks.action
def record_late_by(ctx: ActionContext) -> None:
    """A task closed after its due time records by how much (late_by = closed_at − due_at); on time, nothing."""
    closed_at, due_at = ctx.value("closed_at"), ctx.value("due_at")
    if isinstance(closed_at, dt.datetime) and isinstance(due_at, dt.datetime) and closed_at > due_at:
        ctx.set("late_by", closed_at - due_at)

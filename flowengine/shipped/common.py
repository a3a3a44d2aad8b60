"""Hooks shared by several shipped processes."""

from __future__ import annotations

from flowengine.hooks import ActionContext
from flowengine.shipped import hooks


@hooks.action
def append_note(ctx: ActionContext) -> None:
    """Every service is accompanied by written records: keep each note with who wrote it and when."""
    records = list(ctx.data.get("records") or [])
    records.append({"at": ctx.now, "by": ctx.actor.id, "note": ctx.data.get("note")})
    ctx.set("records", records)

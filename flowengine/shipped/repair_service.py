"""Hooks of `repair_service` (spec §6): the warranty decision."""

from __future__ import annotations

import datetime as dt

from flowengine.hooks import GuardContext
from flowengine.shipped import hooks


@hooks.guard("warranty_valid")
def warranty_valid(ctx: GuardContext) -> bool:
    """In warranty: the event's date (in the process's zone, Asia/Shanghai) is on or before warranty_until.

    An empty warranty_until is out of warranty. Used in `if:` (T2, with repairable_in_house) and to
    record in_warranty on the send-out branch (T3).
    """
    until = ctx.value("warranty_until")
    if not isinstance(until, dt.date):
        return False
    return ctx.today() <= until

"""Hooks of `complaint_handling` (spec §7): the "forward at once" rule checked on start."""

from __future__ import annotations

import datetime as dt

from flowengine.hooks import GuardContext
from flowengine.shipped import hooks

#: "At once" (立即) in the source: the complaint reaches customer service within this time [decided].
FORWARD_WITHIN = dt.timedelta(hours=1)


@hooks.guard("forwarded_late")
def forwarded_late(ctx: GuardContext) -> bool:
    """The complaint was forwarded late: the instance starts more than one hour after received_at.

    Exactly one hour is still in time. Without received_at nothing can be judged late.
    """
    received_at = ctx.value("received_at")
    if not isinstance(received_at, dt.datetime):
        return False
    return ctx.now - received_at > FORWARD_WITHIN

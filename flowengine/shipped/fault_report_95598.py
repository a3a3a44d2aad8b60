"""Hooks of fault_report_95598 (spec §17): is the same fault already reported?"""

from __future__ import annotations

from flowengine.hooks import ActionContext, GuardContext, HookContext
from flowengine.results import InstanceView
from flowengine.shipped import hooks

PROCESS = "fault_report_95598"
# A report whose work order is still open: a new call about the same place joins it.
OPEN_STATES: tuple[str, ...] = ("work_order_created", "dispatched", "on_site_repair")


def _normalise(location: object) -> str:
    return str(location or "").strip().casefold()


def _same_fault(ctx: HookContext) -> InstanceView | None:
    """The earliest other open report with the same fault location (trimmed, case-insensitive), if any."""
    if ctx.instances is None:
        return None
    location = _normalise(ctx.data.get("fault_location"))
    if not location:
        return None
    for other in ctx.instances.find(PROCESS, states=OPEN_STATES):
        if other.id != ctx.instance_id and _normalise(other.data.get("fault_location")) == location:
            return other
    return None


@hooks.guard("same_fault_reported")
def same_fault_reported(ctx: GuardContext) -> bool:
    """Another running fault report at the same location is in work_order_created, dispatched or on_site_repair."""
    return _same_fault(ctx) is not None


@hooks.action
def link_same_fault_report(ctx: ActionContext) -> None:
    """Store the id of the report for the same fault (T1); the linked report does not wait for it."""
    other = _same_fault(ctx)
    if other is not None:
        ctx.set("linked_report_id", other.id)

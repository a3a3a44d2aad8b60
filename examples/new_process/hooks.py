"""The RMA process's hooks: one guard and one action, registered by name in the registry `hooks`.

processes/rma.yaml names them (`guard: within_return_period`, `run: compute_refund`); the CLI loads
this module with `--hooks examples.new_process.hooks`, a program passes `Engine(..., hooks=hooks)`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flowengine import ActionContext, GuardContext, HookRegistry, Refusal

hooks = HookRegistry("rma")


@hooks.guard
def within_return_period(ctx: GuardContext) -> bool | Refusal:
    """Returns are accepted up to `return_days` (a process parameter) after purchase, in the process's zone."""
    days = int(ctx.params["return_days"])
    purchased: dt.date = ctx.value("purchase_date")
    last_day = purchased + dt.timedelta(days=days)
    if ctx.today() <= last_day:
        return True
    return ctx.refuse(f"bought on {purchased.isoformat()}: the {days}-day return period ended on "
                      f"{last_day.isoformat()}")


@hooks.action
def compute_refund(ctx: ActionContext) -> None:
    """A confirmed defect refunds the full price; a change of mind keeps the restocking fee."""
    price: Decimal = ctx.value("price")
    fee = Decimal(0) if ctx.value("defect_confirmed") else price * Decimal(ctx.params["restocking_fee_percent"]) / 100
    ctx.set("refund_amount", (price - fee).quantize(Decimal("0.01")))

"""Hooks of `order_to_cash` (spec §8, ERP SA-003): the later-period rule, cost period and receipts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flowengine.hooks import ActionContext, GuardContext, Refusal
from flowengine.shipped import hooks


def _year_month(moment: dt.datetime, ctx: GuardContext | ActionContext) -> tuple[int, int]:
    local = moment.astimezone(ctx.tz)
    return local.year, local.month


@hooks.guard("later_period_than_shipment")
def later_period_than_shipment(ctx: GuardContext) -> bool | Refusal:
    """Goods shipped this month are invoiced and settled in a later period (以后期间结算).

    Holds when the year-month of now (Asia/Shanghai) is later than the year-month of shipped_at.
    """
    shipped_at = ctx.value("shipped_at")
    if not isinstance(shipped_at, dt.datetime):
        return ctx.refuse("the goods have not left yet (shipped_at is empty)")
    now_period, shipped_period = _year_month(ctx.now, ctx), _year_month(shipped_at, ctx)
    if now_period <= shipped_period:
        return ctx.refuse(f"shipped in {shipped_period[0]:04d}-{shipped_period[1]:02d}: invoicing waits "
                          "for a later month")
    return True


@hooks.action
def set_cost_period(ctx: ActionContext) -> None:
    """The cost accountant matches the outbound order in the current month: cost_period = YYYY-MM of now.

    The month-end cost-of-sales carry-forward voucher groups instances by this period.
    """
    ctx.set("cost_period", ctx.today().strftime("%Y-%m"))


@hooks.action
def apply_receipt(ctx: ActionContext) -> None:
    """A receipt on account: paid_total + amount and receivable_balance − amount (T16, T17).

    Unset totals count as zero; the guards have already checked 0 < amount ≤ receivable_balance.
    """
    amount = _decimal(ctx.value("amount"))
    ctx.set("paid_total", _decimal(ctx.value("paid_total")) + amount)
    ctx.set("receivable_balance", _decimal(ctx.value("receivable_balance")) - amount)


def _decimal(value: object) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(0)

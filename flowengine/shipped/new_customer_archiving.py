"""Hooks of new_customer_archiving (spec §15): the first-cooperation document check."""

from __future__ import annotations

from collections.abc import Sequence

from flowengine.hooks import ActionContext, GuardContext, HookContext, Refusal
from flowengine.shipped import hooks


def _required(ctx: HookContext) -> list[str]:
    """The process parameter `required_documents`, else every value the `documents` field allows."""
    configured = ctx.params.get("required_documents")
    if isinstance(configured, Sequence) and not isinstance(configured, str):
        return [str(d) for d in configured]
    spec = ctx.fields.get("documents")
    items = spec.items if spec is not None else None
    return list(items.values or []) if items is not None else []


def _missing(ctx: HookContext) -> list[str]:
    supplied = {str(d) for d in ctx.value("documents") or []}
    return [d for d in _required(ctx) if d not in supplied]


@hooks.guard("required_documents_present")
def required_documents_present(ctx: GuardContext) -> bool | Refusal:
    """A first cooperation needs every required document; any missing one needs the exception approval."""
    missing = _missing(ctx)
    if missing:
        return ctx.refuse(f"required documents missing: {', '.join(missing)}")
    return True


@hooks.action
def record_missing_documents(ctx: ActionContext) -> None:
    """Keep which required documents are missing, for the director or general manager who signs the exception."""
    ctx.set("missing_documents", _missing(ctx))

"""Hooks of order_review (spec §16): one opinion per reviewing department, and the review's completeness."""

from __future__ import annotations

from typing import Any

from flowengine.hooks import ActionContext, GuardContext, HookContext, Refusal
from flowengine.shipped import hooks

# The six reviewing departments of the source (seed 004, 3.1); the same list as the process's
# `reviewers` role group, which hooks can't read.
REVIEWER_ROLES: tuple[str, ...] = ("production_centre", "production_tech", "research_institute", "sales_dept",
                                   "quality_mgmt", "contract_signer")


def _opinions(ctx: HookContext) -> dict[str, Any]:
    value = ctx.value("review_opinions")
    return dict(value) if isinstance(value, dict) else {}


@hooks.action
def record_review_opinion(ctx: ActionContext) -> None:
    """review_opinions[actor's reviewer role] = opinion; a later opinion of the same department replaces it.

    An actor speaking for several reviewing departments records the opinion for each of them.
    """
    opinions = _opinions(ctx)
    for role in REVIEWER_ROLES:
        if role in ctx.actor.roles:
            opinions[role] = ctx.data.get("opinion")
    ctx.set("review_opinions", opinions)


@hooks.guard("all_reviewers_recorded")
def all_reviewers_recorded(ctx: GuardContext) -> bool | Refusal:
    """The review is concluded only when each of the six departments has recorded an opinion."""
    opinions = _opinions(ctx)
    missing = [role for role in REVIEWER_ROLES if not opinions.get(role)]
    if missing:
        return ctx.refuse(f"no opinion yet from: {', '.join(missing)}")
    return True

"""The fixture processes' hooks (tests/fixtures/processes), importable without pytest.

Tests take them through `tests.conftest`, the CLI tests as `--hooks tests.fixture_hooks_module`, and the
benchmarks import `fixture_hooks` from here.
"""

from __future__ import annotations

from flowengine.hooks import ActionContext, GuardContext, HookRegistry, Refusal


def fixture_hooks() -> HookRegistry:
    hooks = HookRegistry("fixture")

    @hooks.guard
    def has_engineer(ctx: GuardContext) -> bool | Refusal:
        return bool(ctx.data.get("engineer")) or ctx.refuse("no engineer assigned")

    @hooks.action
    def stamp(ctx: ActionContext) -> None:
        ctx.set("note", "stamped by " + ctx.actor.id)

    return hooks


hooks = fixture_hooks()

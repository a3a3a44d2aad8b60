"""The public surface: exactly the sorted names in __all__, and the hook registry's rules."""

from __future__ import annotations

import pytest

import flowengine
from flowengine.errors import FlowEngineError
from flowengine.hooks import GuardContext, HookRegistrationError, HookRegistry


def test_all_is_sorted_and_complete() -> None:
    public = sorted(n for n in dir(flowengine) if (not n.startswith("_") and n[0].isupper()) or n == "SYSTEM")
    assert flowengine.__all__ == sorted(flowengine.__all__)
    assert set(flowengine.__all__) == set(public)


def test_every_error_is_a_flowengine_error_with_an_exit_code() -> None:
    errors = [getattr(flowengine, n) for n in flowengine.__all__ if n.endswith(("Error", "Conflict", "Allowed",
                                                                              "Rejected", "Exists"))
              or n.startswith("Unknown")]
    assert len(errors) >= 12
    for cls in errors:
        assert issubclass(cls, FlowEngineError)
        assert cls.exit_code in range(1, 8)


def test_hooks_register_by_name_and_refuse_duplicates_and_bad_signatures() -> None:
    hooks = HookRegistry()

    @hooks.guard
    def warranty_valid(ctx: GuardContext) -> bool:
        return True

    @hooks.guard("credit_ok")
    def check(ctx: GuardContext) -> bool:
        return False

    assert hooks.names().conditions == {"warranty_valid", "credit_ok"}
    with pytest.raises(HookRegistrationError, match="already registered"):
        hooks.guard("credit_ok")(lambda ctx: True)
    with pytest.raises(HookRegistrationError, match="exactly one argument"):
        hooks.action("two")(lambda ctx, other: None)
    with pytest.raises(HookRegistrationError, match="snake_case"):
        hooks.guard("os.system")(lambda ctx: True)
    other = HookRegistry("other")
    other.guard("credit_ok")(lambda ctx: True)
    with pytest.raises(HookRegistrationError):
        HookRegistry.merge(hooks, other)

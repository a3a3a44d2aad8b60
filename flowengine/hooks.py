"""Hooks: Python functions registered by name that YAML may refer to, and the contexts they receive.

A registry is an object passed to the engine (no module-global registry). Guards and conditions share
one namespace (a condition is a guard in `if:` position); actions have their own. YAML names hooks,
never import paths: nothing named by a definition is ever imported or called unless registered here.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, overload
from zoneinfo import ZoneInfo

from flowengine.datatypes import to_json_native, typed
from flowengine.definition.checks import HookNames
from flowengine.definition.schema import ID_PATTERN, FieldSpec
from flowengine.errors import FlowEngineError
from flowengine.results import Actor, InstanceView

if TYPE_CHECKING:
    from flowengine.calendar import WorkingCalendar


class HookRegistrationError(FlowEngineError):
    """A hook was registered twice, under a bad name, or with the wrong signature."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a guard returns to refuse with a reason; false in a boolean context."""

    reason: str

    def __bool__(self) -> bool:
        return False


class InstanceLookup(Protocol):
    """Read-only access to other instances inside the current transaction (e.g. duplicate checks)."""

    def find(self, process: str, *, states: Sequence[str] | None = None,
             status: str | None = None) -> Sequence[InstanceView]: ...


@dataclass(kw_only=True)
class HookContext:
    """What every hook sees. `data` is the instance data with the payload already merged."""

    instance_id: str
    process: str
    version: int
    state: str  # the state the event is fired in
    event: str
    data: Mapping[str, Any]
    payload: Mapping[str, Any]
    actor: Actor
    now: dt.datetime
    params: Mapping[str, Any]
    fields: Mapping[str, FieldSpec]
    tz: ZoneInfo
    calendar: WorkingCalendar | None
    instances: InstanceLookup | None = None

    def value(self, name: str) -> Any:
        """A data field as a Python value: Decimal, date, datetime, timedelta; unset per the spec's rules."""
        return typed(self.fields.get(name), self.data.get(name), self.tz)

    def today(self) -> dt.date:
        """The event's date in the process's time zone."""
        return self.now.astimezone(self.tz).date()


@dataclass(kw_only=True)
class GuardContext(HookContext):
    def refuse(self, reason: str) -> Refusal:
        return Refusal(reason)


@dataclass
class Message:
    topic: str
    payload: dict[str, Any]


@dataclass
class Outbox:
    """Messages an action wants sent; written in the transaction, delivered after commit."""

    tz: ZoneInfo
    messages: list[Message] = field(default_factory=list)

    def add(self, topic: str, **payload: Any) -> None:
        self.messages.append(Message(topic, to_json_native(payload, self.tz)))


@dataclass(kw_only=True)
class ActionContext(HookContext):
    """An action may change `data` (validated against the schema afterwards) and add outbox messages."""

    data: MutableMapping[str, Any]
    target: str = ""
    outbox: Outbox = field(default_factory=lambda: Outbox(ZoneInfo("UTC")))

    def set(self, name: str, value: Any) -> None:
        """Set a field from a Python value (Decimal, date…); stored JSON-native."""
        self.data[name] = to_json_native(value, self.tz)

    def notify(self, to: str, message: str = "", *, channel: str = "message", **extra: Any) -> None:
        self.outbox.add("notify", to=to, channel=channel, message=message, instance=self.instance_id,
                        process=self.process, event=self.event, **extra)


Predicate = Callable[[GuardContext], "bool | Refusal"]
ActionFn = Callable[[ActionContext], None]


def _check_name(name: str) -> None:
    import re

    if not re.match(ID_PATTERN, name):
        raise HookRegistrationError(f"hook name '{name}' is not lower snake_case ASCII")


def _check_signature(fn: Callable[..., Any], kind: str) -> None:
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) != 1:
        raise HookRegistrationError(f"{kind} '{getattr(fn, '__name__', fn)}' must take exactly one argument "
                                    f"(the context), it takes {len(params)}")


class HookRegistry:
    """Named guards/conditions and actions.

        hooks = HookRegistry()

        @hooks.guard("warranty_valid")
        def warranty_valid(ctx: GuardContext) -> bool: ...

        @hooks.action              # name defaults to the function name
        def append_note(ctx: ActionContext) -> None: ...
    """

    def __init__(self, name: str = "hooks") -> None:
        self.name = name
        self._predicates: dict[str, Predicate] = {}
        self._actions: dict[str, ActionFn] = {}

    @overload
    def guard(self, fn: Predicate, /) -> Predicate: ...
    @overload
    def guard(self, name: str | None = None, /) -> Callable[[Predicate], Predicate]: ...

    def guard(self, arg: Predicate | str | None = None, /) -> Predicate | Callable[[Predicate], Predicate]:
        """Register a guard or condition: `(ctx: GuardContext) -> bool | Refusal`."""
        if callable(arg):
            return self._add_predicate(arg.__name__, arg)
        return lambda fn: self._add_predicate(arg or fn.__name__, fn)

    condition = guard

    @overload
    def action(self, fn: ActionFn, /) -> ActionFn: ...
    @overload
    def action(self, name: str | None = None, /) -> Callable[[ActionFn], ActionFn]: ...

    def action(self, arg: ActionFn | str | None = None, /) -> ActionFn | Callable[[ActionFn], ActionFn]:
        """Register an action: `(ctx: ActionContext) -> None`."""
        if callable(arg):
            return self._add_action(arg.__name__, arg)
        return lambda fn: self._add_action(arg or fn.__name__, fn)

    def _add_predicate(self, name: str, fn: Predicate) -> Predicate:
        _check_name(name)
        _check_signature(fn, "guard")
        if name in self._predicates and self._predicates[name] is not fn:
            raise HookRegistrationError(f"guard '{name}' is already registered in {self.name}")
        self._predicates[name] = fn
        return fn

    def _add_action(self, name: str, fn: ActionFn) -> ActionFn:
        _check_name(name)
        _check_signature(fn, "action")
        if name in self._actions and self._actions[name] is not fn:
            raise HookRegistrationError(f"action '{name}' is already registered in {self.name}")
        self._actions[name] = fn
        return fn

    def predicate(self, name: str) -> Predicate:
        return self._predicates[name]

    def action_fn(self, name: str) -> ActionFn:
        return self._actions[name]

    def names(self) -> HookNames:
        return HookNames(frozenset(self._predicates), frozenset(self._actions))

    @classmethod
    def merge(cls, *registries: HookRegistry) -> HookRegistry:
        """One registry holding all hooks; a name registered twice (different functions) is an error."""
        merged = cls("+".join(r.name for r in registries) or "hooks")
        for r in registries:
            for n, p in r._predicates.items():
                merged._add_predicate(n, p)
            for n, a in r._actions.items():
                merged._add_action(n, a)
        return merged

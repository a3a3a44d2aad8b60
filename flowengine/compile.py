"""Definition + hooks → `CompiledProcess`: lookup tables and condition closures, built once per version.

The only importer of `transitions`: a `Machine` (no model, auto-transitions off) is built once per
process version to validate the graph and answer "which events does this state take"; instances
never get a machine of their own, so starting or firing builds nothing.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from transitions import Machine

from flowengine.datatypes import Coercer, Invalid, coerce, coercer, is_empty, reader, typed
from flowengine.definition.graph import expand_sources, final_states
from flowengine.definition.loader import Definition
from flowengine.definition.schema import Condition, FieldSpec, TimerSpec, Value
from flowengine.effects import ActionCompiler, ChildPlan, Effects, Evaluator, Op, ProcessConstants
from flowengine.errors import DefinitionError, Problem
from flowengine.hooks import GuardContext, HookRegistry, Refusal
from flowengine.results import GuardCheck

IMPLICIT = {"reason": FieldSpec(type="text")}
CANCEL_EVENT = "cancel"
CANCELLED_STATE = "cancelled"
_PER_FIRE: Any = object()


@dataclass(frozen=True, slots=True)
class CompiledRow:
    """One transition from one source state, with everything a fire through it needs worked out."""

    index: int
    id: str | None
    source: str
    event: str
    target: str
    self_loop: bool
    roles: frozenset[str]
    if_: Evaluator | None
    if_text: str | None
    # (name, evaluator, the check recorded when it passes): checks are immutable, so one is shared.
    guards: tuple[tuple[str, Evaluator, GuardCheck], ...]
    spec_index: int  # position in the definition's transitions
    actions: tuple[Op, ...] = ()
    status: str = "running"  # of the target
    cancel: frozenset[str] = frozenset()  # timers whose scope this move leaves
    enter: tuple[str, ...] = ()  # and those whose scope it enters, in definition order
    calls: bool = False  # the target is a call state
    if_checks: tuple[GuardCheck, GuardCheck] | None = None  # recorded when `if` holds / does not


@dataclass(frozen=True, slots=True)
class PayloadRule:
    required: frozenset[str]
    allowed: Mapping[str, FieldSpec]
    coercers: Mapping[str, Coercer] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class EventMoves:
    """What one state does on one event: its rows in definition order, who may fire it, its payload."""

    rows: tuple[CompiledRow, ...]
    roles: frozenset[str]
    payload: PayloadRule


@dataclass
class CompiledProcess:
    definition: Definition
    version: int
    hooks: HookRegistry
    tz: ZoneInfo
    fields: dict[str, FieldSpec]
    start_required: frozenset[str]
    start_fields: dict[str, FieldSpec]
    moves: dict[str, dict[str, EventMoves]]  # state → event → its rows, roles and payload
    events_by_state: dict[str, tuple[str, ...]]
    scopes: dict[str, frozenset[str]]  # state → timer ids whose scope holds it
    finals: frozenset[str]
    constants: ProcessConstants
    start_actions: tuple[Op, ...] = ()
    timer_actions: dict[str, tuple[Op, ...]] = field(default_factory=dict)
    calls: dict[str, tuple[str, Callable[[Effects], dict[str, Any]]]] = field(default_factory=dict)
    conditions: dict[str, Evaluator] = field(default_factory=dict)
    machine: Any = None
    coercers: dict[str, Coercer] = field(default_factory=dict, repr=False)  # per field: datatypes.coercer
    _allowed: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _scope_changes: dict[tuple[str | None, str], tuple[frozenset[str], tuple[str, ...]]] = field(
        default_factory=dict, repr=False)

    @property
    def spec(self) -> Any:
        return self.definition.spec

    @property
    def process_id(self) -> str:
        return self.definition.spec.process

    def status_of(self, state: str) -> str:
        return _status(self.finals, state)

    def timer(self, timer_id: str) -> TimerSpec:
        spec: TimerSpec = self.definition.spec.timers[timer_id]
        return spec

    def scope_change(self, source: str | None, target: str) -> tuple[frozenset[str], tuple[str, ...]]:
        """Timers whose scope a move from `source` to `target` leaves, and those it enters (definition order)."""
        key = (source, target)
        change = self._scope_changes.get(key)
        if change is None:
            change = self._scope_changes[key] = _scope_change(self.definition.spec, self.scopes, source, target)
        return change

    def child_plan(self, state: str, effects: Effects) -> ChildPlan | None:
        """The child a move into `state` starts, if it is a call state (call data read from `effects`)."""
        call = self.calls.get(state)
        if call is None:
            return None
        process, mapping = call
        return ChildPlan(process, {k: v for k, v in mapping(effects).items() if v is not None})

    def allowed_events(self, state: str, roles: frozenset[str] | None = None) -> tuple[str, ...]:
        """Events a person may fire here (all of them with `roles=None`), never those only `system` fires."""
        events = self.events_by_state.get(state, ())
        moves = self.moves.get(state, {})
        if roles is None:
            # Every fire returns an Instance with these; they depend only on the state.
            cached = self._allowed.get(state)
            if cached is None:
                cached = self._allowed[state] = tuple(e for e in events if moves[e].roles - {"system"})
            return cached
        return tuple(e for e in events if moves[e].roles & roles)


class _Compiler:
    def __init__(self, definition: Definition, hooks: HookRegistry) -> None:
        self.definition, self.spec, self.hooks = definition, definition.spec, hooks
        self.tz = ZoneInfo(self.spec.timezone)
        self.fields: dict[str, FieldSpec] = {**IMPLICIT, **self.spec.data}
        self.coercers = {n: coercer(f, self.tz, n) for n, f in self.fields.items()}
        self.named: dict[str, Evaluator] = {}
        self.compiling: set[str] = set()
        self.problems: list[Problem] = []

    def fail(self, message: str) -> None:
        self.problems.append(Problem(self.definition.file, 1, 1, "", message))

    def expand_roles(self, roles: list[str]) -> frozenset[str]:
        out: set[str] = set()
        for r in roles:
            out.update(self.spec.role_groups.get(r, [r]))
        return frozenset(out)

    def condition(self, cond: Condition) -> Evaluator:
        if cond.ref is not None:
            return self.reference(cond.ref)
        if cond.all_ is not None:
            parts = [self.condition(c) for c in cond.all_]

            def all_(ctx: GuardContext) -> bool | Refusal:
                for p in parts:
                    result = p(ctx)
                    if not result:
                        return result
                return True
            return all_
        if cond.any_ is not None:
            options = [self.condition(c) for c in cond.any_]
            return lambda ctx: any(o(ctx) for o in options)
        if cond.not_ is not None:
            inner = self.condition(cond.not_)
            return lambda ctx: not inner(ctx)
        return self.comparison(cond)

    def reference(self, name: str) -> Evaluator:
        if name in self.spec.conditions:
            if name in self.named:
                return self.named[name]
            if name in self.compiling:
                self.fail(f"condition '{name}' refers to itself")
                return lambda ctx: False
            self.compiling.add(name)
            evaluator = self.condition(self.spec.conditions[name])
            self.named[name] = evaluator
            return evaluator
        try:
            hook = self.hooks.predicate(name)
        except KeyError:
            self.fail(f"guard or condition '{name}' is not registered")
            return lambda ctx: False
        return hook

    def known(self, value: Value, fspec: FieldSpec | None) -> Any:
        """The operand's typed value if the definition fixes it (a constant or a parameter), else `_PER_FIRE`."""
        if value.param is not None:
            return self.typed_const(self.spec.parameters.get(value.param), fspec)
        if value.field is not None or value.condition is not None or value.now or value.actor:
            return _PER_FIRE
        return self.typed_const(value.const, fspec)

    def operand(self, value: Value, fspec: FieldSpec | None) -> Callable[[GuardContext], Any]:
        if value.field is not None:
            name, offset, read = value.field, value.offset, reader(self.fields.get(value.field), self.tz)
            if offset:
                from flowengine.durations import parse_duration

                duration = parse_duration(offset)

                def shifted(ctx: GuardContext) -> Any:
                    base = read(ctx.data.get(name))
                    return None if base is None or ctx.calendar is None else duration.apply(base, ctx.calendar)
                return shifted
            return lambda ctx: read(ctx.data.get(name))
        const = self.known(value, fspec)
        if const is not _PER_FIRE:
            return lambda ctx: const
        if value.condition is not None:
            evaluator = self.reference(value.condition)
            return lambda ctx: bool(evaluator(ctx))
        if value.now:
            return lambda ctx: ctx.now
        assert value.actor
        return lambda ctx: ctx.actor.id

    def typed_const(self, raw: Any, fspec: FieldSpec | None) -> Any:
        if fspec is None or raw is None:
            return raw
        try:
            return typed(fspec, coerce(fspec, raw, self.tz, "constant"), self.tz)
        except Invalid as exc:
            self.fail(str(exc))
            return raw

    def comparison(self, cond: Condition) -> Evaluator:
        name = cond.field
        assert name is not None
        fspec = self.fields.get(name)
        op = cond.op
        if op in ("set", "empty"):
            want = bool(cond.set_) if op == "set" else not bool(cond.empty)
            return lambda ctx: (not is_empty(ctx.data.get(name))) == want
        if op in ("in", "not_in"):
            values = frozenset((cond.in_ if op == "in" else cond.not_in) or [])
            inside = op == "in"
            return lambda ctx: (ctx.data.get(name) in values) == inside
        other: Value = getattr(cond, op or "")
        compare: Callable[[Any, Any], bool] = getattr(operator, op or "eq")
        ordered = op in ("lt", "le", "gt", "ge")
        read = reader(fspec, self.tz)
        # The usual right side (`amount le 5000`, `big_amount`) is fixed by the definition: folded in now.
        const = self.known(other, fspec)
        operand = self.operand(other, fspec) if const is _PER_FIRE else None

        def test(ctx: GuardContext) -> bool:
            left, right = read(ctx.data.get(name)), const if operand is None else operand(ctx)
            if ordered and (left is None or right is None):
                return False
            try:
                return compare(left, right)
            except TypeError:
                return False
        return test

    def build(self, version: int) -> CompiledProcess:
        spec = self.spec
        finals = frozenset(final_states(spec))
        scopes = self.scopes()
        ops = ActionCompiler(spec, self.fields, self.tz, self.hooks, self.condition, self.reference)
        rows: dict[tuple[str, str], list[CompiledRow]] = {}
        payloads: dict[tuple[str, str], PayloadRule] = {}
        machine_transitions: list[dict[str, Any]] = []
        for index, t in enumerate(spec.transitions):
            if_ = self.condition(t.if_) if t.if_ is not None else None
            if_text = t.if_.describe() if t.if_ else None
            if_checks = (GuardCheck(f"if {if_text}", True), GuardCheck(f"if {if_text}", False)) if t.if_ else None
            guards = tuple((g.describe(), self.condition(g), GuardCheck(g.describe(), True)) for g in t.guard)
            actions = ops.actions(t.actions)
            payload = t.payload if t.payload is not None else spec.events[t.event].payload
            rule = self.payload_rule(frozenset(n for n, r in payload.items() if r == "required"),
                                     {n: self.fields[n] for n in payload if n in self.fields})
            for source in expand_sources(spec, t.from_):
                target = t.to if t.to is not None else source
                self_loop = target == source and t.to in (None, source)
                cancel, enter = _scope_change(spec, scopes, source, target) if not self_loop else (frozenset(), ())
                row = CompiledRow(index, t.id, source, t.event, target, self_loop, self.expand_roles(t.roles), if_,
                                  if_text, guards, index, actions, _status(finals, target), cancel, enter,
                                  spec.states[target].call is not None, if_checks)
                key = (source, t.event)
                rows.setdefault(key, []).append(row)
                if key in payloads and payloads[key] != rule:
                    self.fail(f"transitions from '{source}' on '{t.event}' declare different payloads")
                payloads[key] = rule
                machine_transitions.append({"trigger": t.event, "source": source,
                                            "dest": None if row.self_loop else target})
        for sid, state in spec.states.items():
            # An outcome event's payload is what the call copies back from the child (§1.1).
            for outcome in (state.call.outcomes.values() if state.call else ()):
                key = (sid, outcome.event)
                if key in payloads and outcome.copy_:
                    old = payloads[key]
                    extra = {n: self.fields[n] for n in outcome.copy_ if n in self.fields}
                    payloads[key] = self.payload_rule(old.required, {**old.allowed, **extra})
        machine = Machine(model=None, states=list(spec.states), transitions=machine_transitions,
                          initial=spec.initial, auto_transitions=False, ignore_invalid_triggers=False)
        events_by_state = {s: tuple(machine.get_triggers(s)) for s in spec.states}
        for name in spec.conditions:
            self.reference(name)
        start_actions = ops.actions(spec.on_start)
        timer_actions = {tid: ops.actions(tm.escalate or []) for tid, tm in spec.timers.items()}
        calls = {sid: (s.call.process, ops.mapping(s.call.data)) for sid, s in spec.states.items() if s.call}
        for action_name in {a.run for t in spec.transitions for a in t.actions if a.run} | \
                {a.run for a in spec.on_start if a.run} | \
                {a.run for tm in spec.timers.values() for a in (tm.escalate or ()) if a.run}:
            try:
                self.hooks.action_fn(action_name)
            except KeyError:
                self.fail(f"action '{action_name}' is not registered")
        if self.problems:
            raise DefinitionError(self.problems)
        start_fields = {n: f for n, f in spec.data.items() if f.start is not None}
        moves: dict[str, dict[str, EventMoves]] = {}
        for (source, event), found in rows.items():
            moves.setdefault(source, {})[event] = EventMoves(
                tuple(found), frozenset().union(*(r.roles for r in found)), payloads[(source, event)])
        return CompiledProcess(
            definition=self.definition, version=version, hooks=self.hooks, tz=self.tz, fields=self.fields,
            start_required=frozenset(n for n, f in start_fields.items() if f.start == "required"),
            start_fields=start_fields, moves=moves, events_by_state=events_by_state, scopes=scopes, finals=finals,
            constants=(spec.process, version, spec.parameters, self.fields, self.tz), conditions=self.named,
            machine=machine, start_actions=start_actions, timer_actions=timer_actions, calls=calls,
            coercers=self.coercers)

    def payload_rule(self, required: frozenset[str], allowed: dict[str, FieldSpec]) -> PayloadRule:
        return PayloadRule(required, allowed, {n: self.coercers[n] for n in allowed})

    def scopes(self) -> dict[str, frozenset[str]]:
        """State → the timers whose scope holds it."""
        scopes: dict[str, set[str]] = {s: set() for s in self.spec.states}
        for tid, timer in self.spec.timers.items():
            for s in timer.scope:
                scopes.setdefault(s, set()).add(tid)
        return {k: frozenset(v) for k, v in scopes.items()}


def _status(finals: frozenset[str], state: str) -> str:
    if state not in finals:
        return "running"
    return "cancelled" if state == CANCELLED_STATE else "completed"


def _scope_change(spec: Any, scopes: Mapping[str, frozenset[str]], source: str | None,
                  target: str) -> tuple[frozenset[str], tuple[str, ...]]:
    before = scopes.get(source, frozenset()) if source is not None else frozenset()
    after = scopes.get(target, frozenset())
    return frozenset(before - after), tuple(t for t in spec.timers if t in after and t not in before)


def compile_process(definition: Definition, hooks: HookRegistry, version: int) -> CompiledProcess:
    """Compile once; the engine caches the result per (process, version)."""
    return _Compiler(definition, hooks).build(version)

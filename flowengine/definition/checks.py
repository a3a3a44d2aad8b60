"""Semantic checks of a parsed process: every problem at once, each located in its file.

The second pass after pydantic's shape check (as in sismic). Hook names come in as sets, so this
module never sees a callable; other processes come in as specs, for call and hand-off checks.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from flowengine.definition.graph import WILDCARD, can_finish, expand_sources, final_states, reachable
from flowengine.definition.schema import ID_PATTERN, Action, Condition, ProcessSpec, Value
from flowengine.definition.yamlsafe import Document, Path_
from flowengine.errors import Problem

SYSTEM_ROLE = "system"
IMPLICIT_FIELDS = {"reason": "text", "forms": "list"}
NOTIFY_SPECIALS = {"requester"}
DATE_TYPES = {"date", "datetime"}
NUMBER_TYPES = {"int", "decimal"}
_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class HookNames:
    """The names a registry offers, by kind."""

    conditions: frozenset[str] = field(default_factory=frozenset)
    actions: frozenset[str] = field(default_factory=frozenset)


def _hint(name: str, options: Iterable[str], what: str) -> str:
    options = sorted(options)
    close = difflib.get_close_matches(name, options, n=1)
    text = f"did you mean '{close[0]}'? " if close else ""
    return text + (f"{what}: {', '.join(options)}" if options else f"none exist ({what})")


class _Checker:
    def __init__(self, spec: ProcessSpec, doc: Document, hooks: HookNames | None,
                 others: Mapping[str, ProcessSpec] | None) -> None:
        self.spec, self.doc, self.hooks = spec, doc, hooks
        self.others = others
        self.problems: list[Problem] = []
        self.fields = {**{k: v for k, v in IMPLICIT_FIELDS.items()}, **{k: f.type for k, f in spec.data.items()}}
        self.roles = set(spec.roles) | {SYSTEM_ROLE}
        self.finals = final_states(spec)

    def add(self, path: Path_, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, hint, key=key))

    # -- references ---------------------------------------------------------------------------
    def state(self, path: Path_, sid: str) -> bool:
        if sid not in self.spec.states:
            self.add(path, f"unknown state '{sid}'", _hint(sid, self.spec.states, "states"))
            return False
        return True

    def data_field(self, path: Path_, name: str, *, types: set[str] | None = None) -> None:
        if name not in self.fields:
            self.add(path, f"data field '{name}' is not declared", _hint(name, self.fields, "declared fields"))
        elif types is not None and self.fields[name] not in types:
            self.add(path, f"field '{name}' is {self.fields[name]}, expected {' or '.join(sorted(types))}")

    def role(self, path: Path_, name: str) -> None:
        if name not in self.roles and name not in self.spec.role_groups:
            self.add(path, f"unknown role '{name}'",
                     _hint(name, self.roles | set(self.spec.role_groups), "roles (catalogue, process, groups)"))

    def condition(self, path: Path_, cond: Condition) -> None:
        if cond.ref is not None:
            known = set(self.spec.conditions) | (set(self.hooks.conditions) if self.hooks else set())
            # Without a registry (hooks=None) only YAML-declared names can be checked.
            if cond.ref not in known and self.hooks is not None:
                self.add(path, f"unknown condition or guard '{cond.ref}'",
                         _hint(cond.ref, known, "declared conditions and registered guards"))
        elif cond.all_ is not None or cond.any_ is not None:
            key = "all" if cond.all_ is not None else "any"
            for i, c in enumerate(cond.all_ or cond.any_ or []):
                self.condition((*path, key, i), c)
        elif cond.not_ is not None:
            self.condition((*path, "not"), cond.not_)
        elif cond.field is not None:
            self.data_field((*path, "field"), cond.field)
            op = cond.op or ""
            operand = getattr(cond, op, None) if op in ("eq", "ne", "lt", "le", "gt", "ge") else None
            if isinstance(operand, Value):
                self.value((*path, op), operand)
                ftype = self.spec.data.get(cond.field)
                if ftype is not None and ftype.type == "enum" and operand.has_const and \
                        operand.const not in (ftype.values or []):
                    self.add((*path, op), f"'{operand.const}' is not a value of enum '{cond.field}'",
                             f"values: {', '.join(ftype.values or [])}")
            if op in ("lt", "le", "gt", "ge") and cond.field in self.fields and \
                    self.fields[cond.field] not in NUMBER_TYPES | DATE_TYPES | {"duration"}:
                self.add((*path, "field"), f"'{op}' needs a number, date or duration; "
                                           f"'{cond.field}' is {self.fields[cond.field]}")

    def value(self, path: Path_, value: Value) -> None:
        if value.field is not None:
            self.data_field(path, value.field, types=DATE_TYPES if value.offset else None)
        elif value.param is not None and value.param not in self.spec.parameters:
            self.add(path, f"unknown parameter '{value.param}'", _hint(value.param, self.spec.parameters,
                                                                       "parameters"))
        elif value.condition is not None:
            self.condition(path, Condition(ref=value.condition))
        elif value.form_number is not None and value.form_number not in self.spec.forms:
            self.add(path, f"unknown form '{value.form_number}'", _hint(value.form_number, self.spec.forms, "forms"))

    def action(self, path: Path_, action: Action) -> None:
        if action.when is not None:
            self.condition((*path, "when"), action.when)
        for verb in ("create_form", "create_new_form"):
            form = getattr(action, verb)
            if form is not None and form not in self.spec.forms:
                self.add((*path, verb), f"unknown form '{form}'",
                         _hint(form, self.spec.forms, "forms (catalogue or process)"))
        for i, target in enumerate(action.notify or ()):
            if target in NOTIFY_SPECIALS or target in self.spec.role_groups or target in self.roles:
                continue
            if target in self.spec.data:
                continue
            self.add((*path, "notify", i), f"can't notify '{target}': not a role, group, data field or "
                     "'requester'", _hint(target, self.roles | set(self.spec.data), "roles and fields"))
        for name, value in (action.set_ or {}).items():
            self.data_field((*path, "set", name), name)
            self.value((*path, "set", name), value)
        if action.increment is not None:
            self.data_field((*path, "increment"), action.increment, types=NUMBER_TYPES)
        for i, name in enumerate(action.clear or ()):
            self.data_field((*path, "clear", i), name)
        if action.run is not None and self.hooks is not None and action.run not in self.hooks.actions:
            self.add((*path, "run"), f"unknown action hook '{action.run}'",
                     _hint(action.run, self.hooks.actions, "registered actions"))
        for verb, mapping in (("start", action.start.data if action.start else None),
                              ("outbox", action.outbox.data if action.outbox else None)):
            for name, value in (mapping or {}).items():
                self.value((*path, verb, "data", name), value)
        if action.start is not None:
            self.child_data((*path, "start"), action.start.process, action.start.data.keys())

    def child_data(self, path: Path_, process: str, names: Iterable[str]) -> ProcessSpec | None:
        if self.others is None:
            return None
        child = self.others.get(process)
        if child is None:
            self.add((*path, "process"), f"unknown process '{process}'", _hint(process, self.others, "processes"))
            return None
        child_fields = set(child.data) | set(IMPLICIT_FIELDS)
        for name in names:
            if name not in child_fields:
                self.add((*path, "data", name), f"'{name}' is not a data field of '{process}'",
                         _hint(name, child_fields, "its fields"))
        missing = [n for n, f in child.data.items() if f.start == "required" and n not in set(names)]
        if missing:
            self.add((*path, "data"), f"'{process}' needs start data {', '.join(missing)}")
        return child

    # -- whole-process checks -------------------------------------------------------------------
    def run(self) -> list[Problem]:
        spec = self.spec
        self.ids()
        if self.state(("initial",), spec.initial) and spec.initial in self.finals:
            self.add(("initial",), "the initial state is final")
        for i, r in enumerate(spec.start_roles):
            self.role(("start_roles", i), r)
        for gname, group in spec.role_groups.items():
            for i, r in enumerate(group):
                if r not in self.roles:
                    self.role(("role_groups", gname, i), r)
        for name, cond in spec.conditions.items():
            self.condition(("conditions", name), cond)
        for i, a in enumerate(spec.on_start):
            self.action(("on_start", i), a)
        for name, fspec in spec.data.items():
            if fspec.type == "enum" and fspec.default is not None and fspec.default not in (fspec.values or []):
                self.add(("data", name, "default"), f"default '{fspec.default}' is not one of the values")
        for name, event in spec.events.items():
            self.payload(("events", name, "payload"), event.payload)
        self.transitions()
        self.states()
        self.timers()
        self.graph()
        return self.problems

    def ids(self) -> None:
        for section in ("states", "events", "data", "timers", "conditions", "parameters", "forms", "roles",
                        "role_groups"):
            for name in getattr(self.spec, section):
                if not _ID.match(name):
                    self.add((section, name), f"'{name}' is not a valid id: lower snake_case ASCII", key=True)
        for name in IMPLICIT_FIELDS:
            if name == "forms" and name in self.spec.data:
                self.add(("data", name), "'forms' is reserved: the engine keeps form records there", key=True)

    def payload(self, path: Path_, payload: Mapping[str, str]) -> None:
        for name in payload:
            self.data_field((*path, name), name)

    def transitions(self) -> None:
        spec = self.spec
        ids: dict[str, int] = {}
        unconditional: dict[tuple[str, str], int] = {}
        for i, t in enumerate(spec.transitions):
            base: Path_ = ("transitions", i)
            if t.id is not None:
                if t.id in ids:
                    self.add((*base, "id"), f"duplicate transition id '{t.id}' (also transitions[{ids[t.id]}])")
                ids[t.id] = i
            for j, src in enumerate(t.from_):
                if src != WILDCARD and self.state((*base, "from", j), src) and src in self.finals:
                    self.add((*base, "from", j), f"'{src}' is a final state: no event may leave it")
            if t.to is not None:
                self.state((*base, "to"), t.to)
                if t.to in spec.states and spec.states[t.to].kind == "call" and t.to in t.from_:
                    self.add((*base, "to"), "a call state can't loop to itself")
            if t.event not in spec.events:
                self.add((*base, "event"), f"unknown event '{t.event}'", _hint(t.event, spec.events, "events"))
            if t.if_ is not None:
                self.condition((*base, "if"), t.if_)
            for j, g in enumerate(t.guard):
                self.condition((*base, "guard", j), g)
            for j, a in enumerate(t.actions):
                self.action((*base, "actions", j), a)
            for j, r in enumerate(t.roles):
                self.role((*base, "roles", j), r)
            if t.payload is not None:
                self.payload((*base, "payload"), t.payload)
            for src in expand_sources(spec, t.from_):
                key = (src, t.event)
                if key in unconditional:
                    self.add((*base, "if"), f"never tried: transitions[{unconditional[key]}] already takes "
                             f"'{t.event}' from '{src}' unconditionally", "put the row with 'if' first")
                elif t.if_ is None:
                    unconditional[key] = i
        used = {t.event for t in spec.transitions}
        for name in spec.events:
            if name not in used:
                self.add(("events", name), f"event '{name}' is not used by any transition", key=True)

    def states(self) -> None:
        spec = self.spec
        by_source: dict[str, list[tuple[int, str]]] = {}
        for i, t in enumerate(spec.transitions):
            for src in expand_sources(spec, t.from_):
                by_source.setdefault(src, []).append((i, t.event))
        timer_events = {t.fire for t in spec.timers.values() if t.fire}
        for sid, state in spec.states.items():
            for j, r in enumerate(state.roles):
                self.role(("states", sid, "roles", j), r)
            if state.kind == "timer":
                firing = [tid for tid, t in spec.timers.items() if t.fire and sid in t.scope]
                if not firing:
                    self.add(("states", sid, "kind"), f"timer state '{sid}' has no timer that fires an event",
                             "add a timer with scope including it and 'fire'")
                for i, event in by_source.get(sid, []):
                    if event not in timer_events and event != "cancel" and not self._self_loop(i, sid):
                        self.add(("transitions", i, "event"), f"timer state '{sid}' is left only by its timer's "
                                 f"event or cancel, not '{event}'")
            if state.call is not None:
                self.call_state(sid)

    def call_state(self, sid: str) -> None:
        call = self.spec.states[sid].call
        assert call is not None
        path: Path_ = ("states", sid, "call")
        for name, value in call.data.items():
            self.value((*path, "data", name), value)
        child = self.child_data(path, call.process, call.data.keys())
        outcome_events = set()
        for final, outcome in call.outcomes.items():
            opath = (*path, "outcomes", final)
            outcome_events.add(outcome.event)
            if child is not None and (final not in child.states or child.states[final].kind != "final"):
                self.add(opath, f"'{final}' is not a final state of '{call.process}'",
                         _hint(final, final_states(child), "its final states"), key=True)
            rows = [t for t in self.spec.transitions if t.event == outcome.event and
                    sid in expand_sources(self.spec, t.from_)]
            if not rows:
                self.add((*opath, "event"), f"no transition takes outcome event '{outcome.event}' from '{sid}'")
            elif any(SYSTEM_ROLE not in t.roles for t in rows):
                self.add((*opath, "event"), f"the transitions of outcome '{outcome.event}' must allow role 'system'")
            for parent_field, child_field in outcome.copy_.items():
                self.data_field((*opath, "copy", parent_field), parent_field)
                if child is not None and child_field not in child.data:
                    self.add((*opath, "copy", parent_field), f"'{child_field}' is not a data field of "
                             f"'{call.process}'")
        if child is not None:
            for final in sorted(final_states(child) - set(call.outcomes)):
                self.add((*path, "outcomes"), f"no outcome for final state '{final}' of '{call.process}'")
        for i, t in enumerate(self.spec.transitions):
            if sid in expand_sources(self.spec, t.from_) and t.event not in outcome_events and \
                    t.event != "cancel" and not self._self_loop(i, sid):
                self.add(("transitions", i, "event"), f"call state '{sid}' is left only by its outcome events or "
                         f"cancel, not '{t.event}'")

    def _self_loop(self, index: int, sid: str) -> bool:
        # A self-loop (e.g. `add_note` from `*`) neither leaves nor re-enters the state.
        target = self.spec.transitions[index].to
        return target is None or target == sid

    def timers(self) -> None:
        for tid, timer in self.spec.timers.items():
            path: Path_ = ("timers", tid)
            for j, s in enumerate(timer.scope):
                if self.state((*path, "scope", j), s) and s in self.finals:
                    self.add((*path, "scope", j), f"a timer can't run in final state '{s}'")
            if timer.at is not None:
                self.data_field((*path, "at"), timer.at, types=DATE_TYPES)
            if timer.fire is not None:
                if timer.fire not in self.spec.events:
                    self.add((*path, "fire"), f"unknown event '{timer.fire}'",
                             _hint(timer.fire, self.spec.events, "events"))
                for s in timer.scope:
                    rows = [t for t in self.spec.transitions if t.event == timer.fire and
                            s in expand_sources(self.spec, t.from_)]
                    if s in self.spec.states and not rows:
                        self.add((*path, "fire"), f"no transition takes '{timer.fire}' from '{s}'")
                    elif any(SYSTEM_ROLE not in t.roles for t in rows):
                        self.add((*path, "fire"), "transitions fired by a timer must allow role 'system'")
            for j, a in enumerate(timer.escalate or ()):
                self.action((*path, "escalate", j), a)

    def graph(self) -> None:
        spec = self.spec
        if spec.initial not in spec.states:
            return
        if not self.finals:
            self.add(("states",), "the process has no final state")
            return
        seen = reachable(spec)
        finishing = can_finish(spec)
        for sid, state in spec.states.items():
            if sid not in seen:
                self.add(("states", sid), f"state '{sid}' can't be reached from '{spec.initial}'", key=True)
            elif sid not in finishing and not state.dead_end_ok:
                self.add(("states", sid), f"no path from '{sid}' to a final state",
                         "add a transition, or mark it 'dead_end_ok: true'", key=True)


def check_process(spec: ProcessSpec, doc: Document, hooks: HookNames | None = None,
                  others: Mapping[str, ProcessSpec] | None = None) -> list[Problem]:
    """Every semantic problem of `spec`; `hooks=None` skips hook-name checks, `others=None` call checks."""
    return _Checker(spec, doc, hooks, others).run()


def iter_conditions(cond: Condition) -> Iterator[Condition]:
    yield cond
    for child in (cond.all_ or []) + (cond.any_ or []) + ([cond.not_] if cond.not_ else []):
        yield from iter_conditions(child)

"""Properties (hypothesis): mutated YAML only ever fails as a located `DefinitionError`; random events,
roles and payloads never corrupt an instance; random start data is accepted valid or refused cleanly.

(a) The fixture processes and processes/*.yaml, mutated as data (keys deleted, renamed, inserted;
    values swapped, retyped, nested deep) and as text (truncated, lines dropped or repeated, unquoted
    yes/no/on/off, random characters and bytes), then loaded and compiled.
(b) A `RuleBasedStateMachine` fires random events with random roles and payloads (and ticks timers,
    and drives call-state children) against ticket and every shipped process.
(c) Random start data for ticket.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from flowengine import (
    Actor,
    DataValidationError,
    DefinitionError,
    Engine,
    EventNotAllowed,
    HookRegistry,
    ManualClock,
    UnknownInstance,
)
from flowengine.compile import compile_process
from flowengine.datatypes import coerce
from flowengine.definition.loader import Definition, load_catalog, load_directory, load_process_text
from flowengine.definition.schema import FieldSpec
from flowengine.shipped import hooks as shipped_hooks
from tests.conftest import FIXTURES, PROCESSES, fixture_hooks
from tests.reliability._support import CLERK, T0, consistency_problems, report

# -- (a) mutated YAML --------------------------------------------------------------------------------

ALL_HOOKS = HookRegistry.merge(fixture_hooks(), shipped_hooks)
SOURCES = sorted([*FIXTURES.glob("*.yaml"), *PROCESSES.glob("*.yaml")])
CATALOG = load_catalog(PROCESSES / "_catalog.yaml")[0] if (PROCESSES / "_catalog.yaml").exists() else None
PROCESS_KEYS = ["format", "process", "title", "description", "lang", "timezone", "initial", "start_roles",
                "on_start", "parameters", "roles", "role_groups", "forms", "data", "conditions", "states",
                "events", "transitions", "timers", "from", "to", "event", "guard", "if", "actions", "run", "when",
                "scope", "after", "at", "fire", "escalate", "repeat", "kind", "call", "type", "values", "start"]
ODD_VALUES: list[Any] = [None, 0, -1, 2**64, 1.5, float("inf"), True, False, "", "x", "*", "yes", "on", "P1D",
                         "Mars/Olympus", "../../etc/passwd", "os.system", "__import__", [], {}, [1, [2]],
                         {"a": {"b": None}}, "2026-02-30", "PT-1H", "9999-12-31T23:59:59-12:00", "x" * 300]
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def source_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def paths_of(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(data, dict):
        for k, v in data.items():
            out += paths_of(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths_of(v, (*path, i))
    return out


def get_at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def set_at(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    get_at(data, path[:-1])[path[-1]] = value
    return data


@st.composite
def data_mutant(draw: st.DrawFn) -> str:
    """A process file, parsed, changed structurally, and written back as YAML."""
    source = draw(st.sampled_from(SOURCES))
    data = yaml.safe_load(source_text(source))
    for _ in range(draw(st.integers(1, 4))):
        paths = paths_of(data)
        path = draw(st.sampled_from(paths))
        parent: Any = get_at(data, path[:-1]) if path else None
        op = draw(st.sampled_from(["delete", "rename", "swap", "retype", "insert", "nest", "duplicate"]))
        if op == "delete" and path:
            del parent[path[-1]]
        elif op == "rename" and path and isinstance(parent, dict):
            new = draw(st.one_of(st.sampled_from(PROCESS_KEYS), st.text(max_size=12),
                                 st.just(str(path[-1]).upper()), st.just(f"{path[-1]}s")))
            parent[new] = parent.pop(path[-1])
        elif op == "swap" and path:
            other = draw(st.sampled_from(paths))
            if other and not (other[:len(path)] == path or path[:len(other)] == other):
                a, b = get_at(data, path), get_at(data, other)
                set_at(data, path, b)
                set_at(data, other, a)
        elif op == "retype":
            data = set_at(data, path, draw(st.sampled_from(ODD_VALUES)))
        elif op == "insert" and isinstance(get_at(data, path), dict):
            get_at(data, path)[draw(st.sampled_from(PROCESS_KEYS))] = draw(st.sampled_from(ODD_VALUES))
        elif op == "nest":
            depth = draw(st.integers(1, 80))
            value = get_at(data, path)
            for _ in range(depth):
                value = draw(st.sampled_from([[value], {"a": value}]))
            data = set_at(data, path, value)
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(get_at(data, path))
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=float("inf"))


@st.composite
def text_mutant(draw: st.DrawFn) -> str:
    """A process file's text with a few textual accidents."""
    text = source_text(draw(st.sampled_from(SOURCES)))
    for _ in range(draw(st.integers(1, 3))):
        lines = text.splitlines(keepends=True) or [""]
        n = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["truncate", "insert", "bool", "drop", "repeat", "indent", "swap", "unquote"]))
        if op == "truncate":
            text = text[:draw(st.integers(0, len(text)))]
        elif op == "insert":
            at = draw(st.integers(0, len(text)))
            junk = draw(st.one_of(st.text(max_size=8), st.sampled_from(
                [":", "- ", "&a ", "*a", "!!str ", "? ", "{", "]", "\t", "'", '"', "|", ">", "%YAML 1.1\n", "---\n",
                 "\x00", "\ufeff", "\ud800"])))
            text = text[:at] + junk + text[at:]
        elif op == "bool":
            scalars = list(re.finditer(r"(?<=: )[A-Za-z_][\w]*", text))
            if scalars:
                word = draw(st.sampled_from(scalars))
                text = text[:word.start()] + draw(st.sampled_from(["yes", "no", "on", "off", "Y", "N", "True"])) + \
                    text[word.end():]
        elif op == "drop":
            text = "".join(lines[:n] + lines[n + 1:])
        elif op == "repeat":
            text = "".join(lines[:n + 1] + lines[n:])
        elif op == "indent":
            text = "".join([*lines[:n], draw(st.sampled_from([" ", "  ", "\t", ""])) + lines[n].lstrip(),
                            *lines[n + 1:]])
        elif op == "swap":
            m = draw(st.integers(0, len(lines) - 1))
            lines[n], lines[m] = lines[m], lines[n]
            text = "".join(lines)
        elif op == "unquote":
            text = text.replace('"', "", draw(st.integers(1, 3)))
    return text


def load_and_compile(text: str) -> Definition | DefinitionError:
    """Load like `flowengine validate` does (with the shipped catalogue), then compile like the engine does."""
    try:
        definition = load_process_text(text, Path("mutant.yaml"), hooks=ALL_HOOKS.names(), catalog=CATALOG)
        compile_process(definition, ALL_HOOKS, 1)
    except DefinitionError as exc:
        return exc
    return definition


def assert_located(outcome: Definition | DefinitionError, text: str) -> None:
    if isinstance(outcome, DefinitionError):
        assert outcome.problems
        for p in outcome.problems:
            assert p.line >= 1 and p.col >= 1 and p.message, p
            assert p.line <= text.count("\n") + 2, f"{p}: line beyond the end of the file"


@pytest.mark.slow
@SETTINGS
@given(text=data_mutant())
@example(text=source_text(FIXTURES / "subtask.yaml").replace("initial: todo", "initial: todo\ntimezone: Mars/Olympus"))
@example(text=source_text(FIXTURES / "subtask.yaml").replace("initial: todo", "initial: todo\ntimezone: ''"))
@example(text=source_text(FIXTURES / "ticket.yaml").replace("copy: {sub_result: result}", "copy: [{a: 1}]"))
def test_structural_mutants_fail_only_as_located_definition_errors(text: str) -> None:
    assert_located(load_and_compile(text), text)


@pytest.mark.slow
@SETTINGS
@given(text=text_mutant())
@example(text=source_text(FIXTURES / "subtask.yaml").replace("initial: todo", "initial: to\x00do"))
@example(text=source_text(FIXTURES / "subtask.yaml").replace("initial: todo", "initial: to\ud800do"))
@example(text=source_text(FIXTURES / "subtask.yaml") + "parameters: {deep: " + "[" * 5000 + "]" * 5000 + "}\n")
def test_textual_mutants_fail_only_as_located_definition_errors(text: str) -> None:
    assert_located(load_and_compile(text), text)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(prefix=st.binary(max_size=64), source=st.sampled_from(SOURCES), cut=st.floats(0, 1),
       suffix=st.binary(max_size=64))
def test_random_bytes_in_a_process_file_fail_only_as_located_definition_errors(
        prefix: bytes, source: Path, cut: float, suffix: bytes) -> None:
    raw = source.read_bytes()
    raw = prefix + raw[:int(len(raw) * cut)] + suffix
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / source.name).write_bytes(raw)
        try:
            load_directory(Path(folder), hooks=ALL_HOOKS.names())
        except DefinitionError as exc:
            assert all(p.line >= 1 and p.col >= 1 and p.message for p in exc.problems)


# -- (b) random events against live instances ----------------------------------------------------------

def valid_value(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Values a field of this type accepts (so random walks get somewhere)."""
    t = spec.type
    strategies: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
        "string": lambda: st.sampled_from(["e1", "eng-li", "Customer A", "客户甲", "SN-1"]),
        "text": lambda: st.sampled_from(["a note", "备注", "x" * 50]),
        "enum": lambda: st.sampled_from(spec.values or [""]),
        "bool": st.booleans,
        "int": lambda: st.integers(0, 5),
        "decimal": lambda: st.sampled_from(["0", "10", "999.99", "2000", "9000", "150000"]),
        "date": lambda: st.dates(dt.date(2025, 1, 1), dt.date(2027, 12, 31)).map(dt.date.isoformat),
        "datetime": lambda: st.datetimes(dt.datetime(2026, 1, 1), dt.datetime(2026, 12, 31)).map(
            lambda d: d.isoformat(timespec="minutes")),
        "duration": lambda: st.sampled_from(["PT1H", "P1D", "PT30M"]),
        "list": lambda: st.lists(valid_value(spec.items), min_size=1, max_size=2) if spec.items else st.just([]),
        "map": lambda: st.dictionaries(st.sampled_from(["a", "b"]), valid_value(spec.items), min_size=1, max_size=2)
        if spec.items else st.just({}),
        "object": lambda: st.fixed_dictionaries({k: valid_value(f) for k, f in (spec.fields or {}).items()}),
    }
    return strategies[t]()


JUNK = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=6), st.booleans(), st.just([]), st.just({"a": 1}))
REFUSALS = (EventNotAllowed, DataValidationError)  # EventNotAllowed covers RoleNotAllowed and GuardRejected


@dataclass
class Target:
    process: str
    definitions: Mapping[str, Definition]
    hooks: HookRegistry


@functools.cache
def shipped_definitions() -> Mapping[str, Definition] | DefinitionError:
    """processes/ parsed once for every test (PyYAML's pure-Python parser is the slow part)."""
    try:
        return load_directory(PROCESSES, hooks=shipped_hooks.names())
    except DefinitionError as exc:
        return exc


def targets() -> list[Any]:
    out = [pytest.param(Target("ticket", load_directory(FIXTURES, hooks=fixture_hooks().names()), fixture_hooks()),
                        id="ticket")]
    shipped = shipped_definitions()
    if isinstance(shipped, DefinitionError):
        reason = f"processes/ does not load: {shipped.problems[0]}"
        return [*out, pytest.param(None, id="processes", marks=pytest.mark.skip(reason=reason))]
    return out + [pytest.param(Target(p, shipped, shipped_hooks), id=p) for p in sorted(shipped)]


def replay_problems(engine: Engine, iid: str) -> list[str]:
    """Walk the history through the definition's transition table; it must end in the current state."""
    inst = engine.get(iid)
    compiled = engine.compiled(inst.process, inst.version)
    state: str | None = None
    for h in engine.history(iid):
        if h.source != state:
            return [f"{iid}: seq {h.seq} leaves {h.source}, the replay is in {state}"]
        if h.event == "start":
            ok = h.target == compiled.spec.initial
        elif h.event.startswith("!"):
            ok = h.target == h.source
        elif h.kind == "cascade":
            ok = h.target == "cancelled"
        else:
            moves = compiled.moves.get(state or "", {}).get(h.event)
            ok = moves is not None and any(r.target == h.target for r in moves.rows)
        if not ok:
            return [f"{iid}: seq {h.seq} {h.source} --{h.event}--> {h.target} is not in the definition"]
        state = h.target
    return [] if state == inst.state else [f"{iid}: replay ends in {state}, instance is in {inst.state}"]


class FiringMachine(RuleBasedStateMachine):
    """Set `engine`, `clock`, `process`, `counts` on a subclass. Works on one instance (and what it starts)
    at a time; when all of that has finished, starts the next one."""

    engine: Engine
    clock: ManualClock
    process: str
    counts: dict[str, int]

    def __init__(self) -> None:
        super().__init__()
        self.root = ""
        self.spec = self.engine.compiled(self.process).spec
        roles = sorted({*self.spec.roles, *(r for t in self.spec.transitions for r in t.roles), "system"})
        self.roles = st.frozensets(st.sampled_from([*roles, "stranger"]), max_size=2)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def family(self) -> list[str]:
        """The current root instance and everything it started, transitively."""
        out, todo = [], [self.root]
        while todo:
            iid = todo.pop()
            out.append(iid)
            todo.extend(self.engine.get(iid).children)
        return out

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        fields = {n: f for n, f in self.spec.data.items() if f.start is not None}
        chosen = data.draw(st.fixed_dictionaries(
            {n: valid_value(f) for n, f in fields.items() if f.start == "required"},
            optional={n: st.one_of(valid_value(f), JUNK) for n, f in fields.items() if f.start == "optional"}))
        actor = Actor("starter", set(self.spec.start_roles) | {"system"})
        try:
            self.root = self.engine.start(self.process, data=chosen, actor=actor).id
        except REFUSALS:
            self.count("refused_starts")
            required = {n: v for n, v in chosen.items() if fields[n].start == "required"}
            self.root = self.engine.start(self.process, data=required, actor=actor).id  # valid: must start
        self.count("instances")

    @rule(data=st.data())
    def fire(self, data: st.DataObject) -> None:
        running = [i for i in self.family() if self.engine.get(i).status == "running"]
        if not running:
            self.start(data)
            return
        iid = data.draw(st.sampled_from(running))
        inst = self.engine.get(iid)
        compiled = self.engine.compiled(inst.process, inst.version)
        spec = compiled.spec
        likely = data.draw(st.integers(0, 3)) < 3  # mostly what the state takes, by who may do it
        event = data.draw(st.sampled_from(inst.allowed_events if likely and inst.allowed_events else
                                          [*spec.events, "nope"]))
        fields = {**spec.data, "reason": FieldSpec(type="text")}
        wanted = (spec.events[event].payload if event in spec.events else {}) or {}
        payload = data.draw(st.fixed_dictionaries(
            {n: valid_value(fields[n]) for n, need in wanted.items() if need == "required" and n in fields},
            optional={n: st.one_of(valid_value(fields[n]), valid_value(fields[n]), JUNK)
                      for n, need in wanted.items() if need != "required" and n in fields}))
        if data.draw(st.integers(0, 9)) == 9:  # now and then a field the event does not take, or junk
            payload[data.draw(st.sampled_from([*fields, "junk", "", "forms"]))] = data.draw(JUNK)
        moves = compiled.moves.get(inst.state, {}).get(event)
        may = sorted(moves.roles if moves is not None else ())
        roles = {data.draw(st.sampled_from(may))} if likely and may else data.draw(self.roles)
        actor = Actor(data.draw(st.sampled_from(["u1", "u2"])), roles)
        try:
            self.engine.fire(iid, event, data=payload, actor=actor)
            self.count("fired")
        except REFUSALS as exc:
            after = self.engine.get(iid)
            assert (after.state, after.revision, dict(after.data)) == (inst.state, inst.revision, dict(inst.data))
            self.count(f"refused_{type(exc).__name__}")

    @rule(hours=st.sampled_from([1, 5, 30, 24 * 5, 24 * 40]))
    def tick(self, hours: int) -> None:
        self.clock.advance(dt.timedelta(hours=hours))
        report_ = self.engine.tick()
        self.count("timers", len(report_.fired))
        failed = [f for f in report_.firings if f.outcome == "failed"]
        self.count("timer_refusals", len(failed))  # e.g. a timer's event refused by a guard: recorded, not raised
        assert [f.error for f in failed if " hook '" in (f.error or "")] == []

    @invariant()
    def consistent(self) -> None:
        for iid in self.family():
            assert consistency_problems(self.engine, iid) == []
            assert replay_problems(self.engine, iid) == []


@pytest.mark.slow
@pytest.mark.parametrize("target", targets())
def test_random_fires_never_leave_an_instance_outside_its_definition(target: Target, db_url: str) -> None:
    clock = ManualClock(T0)
    engine = Engine(db_url, processes=target.definitions, hooks=target.hooks, clock=clock)
    counts: dict[str, int] = {"instances": 0, "fired": 0}
    machine = type("Machine", (FiringMachine,), {"engine": engine, "clock": clock, "process": target.process,
                                                  "counts": counts})
    examples = 20 if target.process == "ticket" else 4
    machine_settings = settings(max_examples=examples, stateful_step_count=20, deadline=None,
                                suppress_health_check=list(HealthCheck))
    run_state_machine_as_test(machine, settings=machine_settings)  # type: ignore[no-untyped-call]
    report(f"properties/state-machine/{target.process}", db_url, **counts)
    assert counts["instances"] > 0, "no instance could be started: the random walk tested nothing"
    engine.dispose()


# -- (c) random start data ---------------------------------------------------------------------------

TICKET_FIELDS = sorted(yaml.safe_load(source_text(FIXTURES / "ticket.yaml"))["data"])
ANY_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20),
              st.decimals().map(str),
              st.dates().map(dt.date.isoformat),
              st.datetimes(timezones=st.timezones()).map(dt.datetime.isoformat),
              st.datetimes().map(lambda d: d.isoformat(timespec="minutes"))),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)
DATETIMES = st.one_of(st.datetimes(timezones=st.timezones()).map(dt.datetime.isoformat),
                     st.datetimes().map(lambda d: d.isoformat(timespec="minutes")), st.dates().map(dt.date.isoformat))
START_FIELDS = {  # ticket's start fields, each mostly of its type but not always
    "amount": st.one_of(st.decimals().map(str), st.integers(-(2**70), 2**70), st.floats(), ANY_VALUE),
    "priority": st.one_of(st.sampled_from(["low", "high", "LOW", ""]), ANY_VALUE),
    "due_at": st.one_of(DATETIMES, DATETIMES, ANY_VALUE),
}
OTHER_KEYS = st.one_of(st.sampled_from([*TICKET_FIELDS, "forms", "reason", "", "customer "]), st.text(max_size=8))
START_DATA = st.builds(
    lambda required, optional, extra: {**required, **optional, **extra},
    st.fixed_dictionaries({"customer": st.one_of(st.text(min_size=1, max_size=20), ANY_VALUE)}),
    st.fixed_dictionaries({}, optional=START_FIELDS),
    st.one_of(st.just({}), st.just({}), st.just({}), st.dictionaries(OTHER_KEYS, ANY_VALUE, max_size=2)))


def test_random_start_data_is_accepted_valid_or_refused_with_data_validation_error(db_url: str) -> None:
    engine = Engine(db_url, processes=FIXTURES, hooks=fixture_hooks(), clock=ManualClock(T0))
    compiled = engine.compiled("ticket")
    counts = {"accepted": 0, "refused": 0}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=START_DATA)
    @example(data={"customer": "A", "due_at": "0001-01-01T00:00:00+14:00"})
    @example(data={"customer": "A", "due_at": "0001-01-01T00:00"})
    @example(data={"customer": "A", "due_at": "9999-12-31T23:59:59-12:00"})
    @example(data={"customer": "A", "amount": "1E+999999"})
    @example(data={"customer": "A\ud800"})
    def run(data: dict[str, Any]) -> None:
        iid = f"p{sum(counts.values())}-{hash(repr(data)) & 0xFFFFFF:x}"
        try:
            inst = engine.start("ticket", data=data, actor=CLERK, instance_id=iid)
        except DataValidationError:
            counts["refused"] += 1
            with pytest.raises(UnknownInstance):
                engine.get(iid)
            return
        counts["accepted"] += 1
        stored = engine.get(inst.id)
        assert stored.data == inst.data
        for name, value in stored.data.items():
            spec = compiled.spec.data.get(name)
            assert spec is not None, f"stored field {name!r} is not in the schema"
            assert coerce(spec, value, compiled.tz, name) == value, f"{name}={value!r} is not canonical"
        assert stored.data.get("customer") not in (None, "")
        if stored.data.get("amount") is not None:
            assert Decimal(stored.data["amount"]).is_finite()
        assert consistency_problems(engine, inst.id) == []

    run()
    report("properties/start-data", db_url, **counts)
    assert counts["accepted"] and counts["refused"]
    engine.dispose()

"""Scenario files (docs/scenarios.md): load them with locations, run them through an `Engine`, report.

Used by `flowengine test`, `flowengine demo` and the test suite, so the spec's example paths are
checked by the same code an analyst runs. The runner moves a `ManualClock`; it never sleeps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from flowengine.clock import ManualClock, parse_instant
from flowengine.datatypes import Invalid, coerce
from flowengine.definition.loader import validate_model
from flowengine.definition.schema import Model
from flowengine.definition.yamlsafe import read_yaml_file
from flowengine.errors import FlowEngineError
from flowengine.results import Actor, Instance, Step

Instant = Annotated[str, BeforeValidator(lambda v: v if isinstance(v, str) else str(v))]


def parse_actor(value: Any) -> Actor:
    """`ROLE`, `ROLE/actor-id` (the spec's notation) or `{id, roles}`."""
    if isinstance(value, Mapping):
        return Actor(str(value["id"]), value.get("roles", ()))
    role, _, who = str(value).partition("/")
    return Actor(who or role, {role})


class ActorSpec(Model):
    id: str
    roles: list[str] = []


ActorField = Annotated[str | ActorSpec, BeforeValidator(lambda v: ActorSpec(**v) if isinstance(v, dict) else v)]


class Expect(Model):
    state: str | None = None
    status: Literal["running", "completed", "cancelled"] | None = None
    data: dict[str, Any] | None = None
    forms: list[dict[str, Any]] | None = None
    history: list[str] | None = None
    fired: list[str] | None = None
    started: list[str] | None = None
    error: str | None = None


class StartSpec(Model):
    at: Instant | None = None
    actor: ActorField
    data: dict[str, Any] = {}
    expect: Expect | None = None


class StepSpec(Model):
    fire: str | None = None
    tick: Instant | None = None
    start: str | None = None  # a process id: start another instance
    as_: str | None = Field(default=None, alias="as")
    instance: str | None = None  # main (default), child, child.child, or an alias from `start ... as:`
    at: Instant | None = None
    actor: ActorField | None = None
    payload: dict[str, Any] = {}
    data: dict[str, Any] = {}
    expect: Expect | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> StepSpec:
        kinds = [k for k in ("fire", "tick", "start") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"a step is one of fire, tick, start; got {', '.join(kinds)}")
        if (self.fire or self.start) and self.actor is None:
            raise ValueError("fire and start steps need an actor")
        if not kinds and self.expect is None:
            raise ValueError("a step needs fire, tick, start or expect")
        return self


class ScenarioSpec(Model):
    scenario: str
    title: str | None = None
    process: str
    start: StartSpec
    steps: list[StepSpec] = []
    expect: Expect | None = None


@dataclass
class ScenarioResult:
    name: str
    file: Path | None
    failures: list[str] = field(default_factory=list)
    steps: int = 0
    instance_id: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


def load_scenario(path: Path) -> ScenarioSpec:
    return validate_model(ScenarioSpec, read_yaml_file(path))


def scenario_files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(p.rglob("*.yaml")) if p.is_dir() else [p])
    return out


class _Failure(Exception):
    pass


Reporter = Callable[[str, Any], None]


class ScenarioRunner:
    """Runs scenarios on one engine; each scenario gets its own manual clock."""

    def __init__(self, engine: Any, *, report: Reporter | None = None) -> None:
        self.engine = engine
        self.report = report or (lambda kind, obj: None)
        self.aliases: dict[str, str] = {}

    def run(self, spec: ScenarioSpec, file: Path | None = None) -> ScenarioResult:
        result = ScenarioResult(spec.scenario, file)
        tz = self.engine.compiled(spec.process).spec.timezone if spec.process in self.engine.processes else None
        start_at = parse_instant(spec.start.at, tz or "Asia/Shanghai") if spec.start.at else None
        clock = ManualClock(start_at or dt.datetime.now(dt.UTC))
        saved, self.engine.clock = self.engine.clock, clock
        aliases = self.aliases = {}
        try:
            main = self.engine.start(spec.process, data=spec.start.data, actor=_actor(spec.start.actor))
            aliases["main"] = result.instance_id = main.id
            self.report("start", main)
            self.check(spec.start.expect, main.id, None, None, "start")
            for number, step in enumerate(spec.steps, 1):
                result.steps = number
                self.step(step, number, aliases, clock, tz or "Asia/Shanghai")
            self.check(spec.expect, main.id, None, None, "final")
        except _Failure as exc:
            result.failures.append(str(exc))
        except FlowEngineError as exc:
            result.failures.append(f"step {result.steps}: unexpected {type(exc).__name__}: {exc}")
        finally:
            self.engine.clock = saved
        return result

    def step(self, step: StepSpec, number: int, aliases: dict[str, str], clock: ManualClock, tz: str) -> None:
        where = f"step {number}"
        if step.at is not None or step.tick is not None:
            target = parse_instant(step.tick or step.at or "", tz)
            if target < clock.now():
                raise _Failure(f"{where}: time {target.isoformat()} is before the clock ({clock.now().isoformat()})")
            clock.set(target)
        instance_id = self.resolve(step.instance or "main", aliases, where)
        try:
            if step.fire is not None:
                assert step.actor is not None
                fired = self.engine.fire(instance_id, step.fire, data=step.payload, actor=_actor(step.actor))
                self.report("fire", fired)
                self.check(step.expect, instance_id, fired, None, where)
            elif step.start is not None:
                assert step.actor is not None
                other = self.engine.start(step.start, data=step.data, actor=_actor(step.actor))
                aliases[step.as_ or f"instance{number}"] = other.id
                self.report("start", other)
                self.check(step.expect, other.id, None, None, where)
            elif step.tick is not None:
                report = self.engine.tick()
                self.report("tick", report)
                # Other scenarios' instances may share the database: count only this scenario's family.
                family = self.family(aliases.values())
                fired = [f.timer for f in report.fired if f.instance_id in family]
                self.check(step.expect, instance_id, None, fired, where)
            else:
                self.check(step.expect, instance_id, None, None, where)
        except FlowEngineError as exc:
            expected = step.expect.error if step.expect else None
            names = {cls.__name__ for cls in type(exc).__mro__}
            if expected is None:
                raise _Failure(f"{where} ({step.fire or step.start or 'tick'}): {type(exc).__name__}: {exc}") from exc
            if expected not in names:
                raise _Failure(f"{where}: expected {expected}, got {type(exc).__name__}: {exc}") from exc
            self.report("refused", exc)
            return
        if step.expect is not None and step.expect.error is not None:
            raise _Failure(f"{where}: expected {step.expect.error}, but '{step.fire or step.start}' was accepted")

    def resolve(self, on: str, aliases: Mapping[str, str], where: str) -> str:
        head, *rest = on.split(".")
        if head == "child":
            head, rest = "main", ["child", *rest]
        if head not in aliases:
            raise _Failure(f"{where}: unknown instance alias '{head}'")
        current = aliases[head]
        for part in rest:
            if part != "child":
                raise _Failure(f"{where}: can't follow '{part}' in '{on}'")
            kids = {k.id for k in self.engine.children(current)}
            # The child the parent started most recently, by its history (ids and times can tie).
            started = [sid for h in self.engine.history(current) for sid in h.details.get("started", ())
                       if sid in kids]
            if not started:
                raise _Failure(f"{where}: {current} has no child instance")
            current = started[-1]
        return current

    def family(self, roots: Iterable[str]) -> set[str]:
        """The given instances and every instance they started (children and hand-offs), transitively."""
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            iid = todo.pop()
            if iid not in seen:
                seen.add(iid)
                todo.extend(self.engine.get(iid).children)
        return seen

    def check(self, expect: Expect | None, instance_id: str, step: Step | None, fired: list[str] | None,
              where: str) -> None:
        if expect is None:
            return
        inst = self.engine.get(instance_id)
        problems = []
        if expect.state is not None and inst.state != expect.state:
            problems.append(f"state is '{inst.state}', expected '{expect.state}'")
        if expect.status is not None and inst.status != expect.status:
            problems.append(f"status is '{inst.status}', expected '{expect.status}'")
        if expect.data is not None:
            problems.extend(self.data_problems(inst, expect.data))
        if expect.forms is not None:
            problems.extend(_forms_problems(inst.data.get("forms") or [], expect.forms))
        if expect.history is not None:
            events = [h.event for h in self.engine.history(instance_id)]
            if events != expect.history:
                problems.append(f"history is {events}, expected {expect.history}")
        if expect.fired is not None and fired != expect.fired:
            problems.append(f"tick fired {fired}, expected {expect.fired}")
        if expect.started is not None:
            started = [self.engine.get(i).process for i in (step.started if step else ())]
            if sorted(started) != sorted(expect.started):
                problems.append(f"started {started}, expected {expect.started}")
        if problems:
            raise _Failure(f"{where} on {inst.process} {inst.id}: " + "; ".join(problems))

    def data_problems(self, inst: Instance, expected: Mapping[str, Any]) -> list[str]:
        compiled = self.engine.compiled(inst.process, inst.version)
        out = []
        for name, want in expected.items():
            if isinstance(want, Mapping) and set(want) == {"instance_id"}:
                # `{instance_id: alias}`: the id of another instance of this scenario (e.g. a linked report).
                alias = str(want["instance_id"])
                if alias not in self.aliases:
                    out.append(f"data.{name}: unknown instance alias '{alias}'")
                    continue
                want = self.aliases[alias]
            spec = compiled.fields.get(name)
            try:
                want_n = coerce(spec, want, compiled.tz, name) if spec is not None and want is not None else want
            except Invalid as exc:
                out.append(f"expected value of {name} is invalid: {exc}")
                continue
            have = inst.data.get(name)
            if have != want_n and not (want_n in (False, 0, [], None) and have is None):
                out.append(f"data.{name} is {have!r}, expected {want_n!r}")
        return out


def _forms_problems(actual: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]]) -> list[str]:
    if len(actual) != len(expected):
        return [f"{len(actual)} form records ({', '.join(r['form'] for r in actual)}), expected {len(expected)}"]
    free = list(actual)
    problems = []
    for want in expected:
        match = next((r for r in free if _subset(want, r)), None)
        if match is None:
            problems.append(f"no form record matches {dict(want)}")
        else:
            free.remove(match)
    return problems


def _subset(want: Any, have: Any) -> bool:
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(k in have and _subset(v, have[k]) for k, v in want.items())
    return bool(want == have)


def _actor(value: str | ActorSpec) -> Actor:
    if isinstance(value, ActorSpec):
        return Actor(value.id, value.roles)
    return parse_actor(value)

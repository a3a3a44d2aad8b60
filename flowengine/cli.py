"""The `flowengine` command: a thin client of `Engine` (click for parsing, rich for output).

Every `FlowEngineError` is caught in one place, printed as one `error: ...` line on stderr, and exits
with its class's `exit_code` (documented in docs/reference/cli.md); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flowengine.errors import DefinitionError, FlowEngineError, Problem
from flowengine.hooks import HookRegistry
from flowengine.results import Actor, HistoryEntry, Instance

F = TypeVar("F", bound=Callable[..., Any])
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
ENTRY_POINT_GROUP = "flowengine.hooks"


class Settings:
    """Global options, and the engine built from them on first use."""

    def __init__(self, db: str, processes: Path, hook_modules: Sequence[str], now: str | None, lang: str,
                 debug: bool, calendar_file: Path | None = None) -> None:
        self.db, self.processes, self.hook_modules = db, processes, hook_modules
        self.calendar_file = calendar_file
        self.now_text, self.lang, self.debug = now, lang, debug
        self._engine: Any = None

    def hooks(self) -> HookRegistry:
        from flowengine.shipped import hooks as shipped

        registries = [shipped]
        for spec in self.hook_modules:
            registries.append(load_hook_module(spec))
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            registries.append(_registry(ep.load(), f"entry point {ep.name}"))
        return HookRegistry.merge(*registries)

    def clock(self) -> Any:
        from flowengine.clock import ManualClock, SystemClock, parse_instant

        if self.now_text:
            try:
                return ManualClock(parse_instant(self.now_text))
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--now") from None
        return SystemClock()

    def engine(self) -> Any:
        if self._engine is None:
            from flowengine.calendar import WorkingCalendar
            from flowengine.engine import Engine

            calendar = WorkingCalendar.from_file(self.calendar_file) if self.calendar_file else None
            self._engine = Engine(self.db, processes=self.processes, hooks=self.hooks(), clock=self.clock(),
                                  calendar=calendar)
        return self._engine


def load_hook_module(spec: str) -> HookRegistry:
    """`package.module` (its `hooks` attribute) or `package.module:attribute`: named by the operator."""
    module_name, _, attr = spec.partition(":")
    # Like uvicorn: a hooks.py in the working directory is importable by name.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"can't import hook module '{module_name}': {exc}", param_hint="--hooks") from None
    try:
        value = getattr(module, attr or "hooks")
    except AttributeError:
        raise click.BadParameter(f"module '{module_name}' has no attribute '{attr or 'hooks'}'",
                                 param_hint="--hooks") from None
    return _registry(value, spec)


def _registry(value: Any, where: str) -> HookRegistry:
    if not isinstance(value, HookRegistry):
        raise click.BadParameter(f"{where} is not a flowengine HookRegistry", param_hint="--hooks")
    return value


pass_settings = click.make_pass_decorator(Settings)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)


def actor_options(fn: F) -> F:
    fn = click.option("--role", "roles", multiple=True, help="A role of the actor (repeatable).")(fn)
    return click.option("--actor", "actor_id", help="The actor's id (default: the first role).")(fn)


def make_actor(actor_id: str | None, roles: Sequence[str]) -> Actor:
    return Actor(actor_id or (roles[0] if roles else "cli"), roles)


def parse_json_object(text: str | None, param: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                                 param_hint=param) from None
    except RecursionError:
        raise click.BadParameter("JSON nested too deeply", param_hint=param) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"engineer\": \"eng-li\"}'", param_hint=param)
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


class FlowGroup(click.Group):
    """Prints FlowEngineError as one line and exits with its code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FlowEngineError as exc:
            settings = ctx.find_object(Settings)
            if settings is not None and settings.debug:
                raise
            _fail(exc)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        return super().resolve_command(ctx, args)


def _fail(exc: FlowEngineError) -> NoReturn:
    if isinstance(exc, DefinitionError):
        for p in exc.problems:
            err.print(str(p), markup=False)
        err.print(f"error: {len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}", markup=False)
    else:
        err.print(f"error: {exc}", markup=False)
    sys.exit(exc.exit_code)


@click.group(cls=FlowGroup)
@click.option("--db", envvar="FLOWENGINE_DB", default="sqlite:///flowengine.db", show_default=True,
              help="Database URL (env FLOWENGINE_DB); postgresql+psycopg://... for several workers.")
@click.option("--processes", envvar="FLOWENGINE_PROCESSES", default="processes", show_default=True,
              type=click.Path(path_type=Path), help="Directory of process YAML files (env FLOWENGINE_PROCESSES).")
@click.option("--hooks", "hook_modules", envvar="FLOWENGINE_HOOKS", multiple=True,
              help="Python module with a HookRegistry `hooks` (or module:attr); repeatable (env FLOWENGINE_HOOKS, "
                   "space separated). The shipped hooks and entry points in group 'flowengine.hooks' always load.")
@click.option("--now", envvar="FLOWENGINE_NOW", help="Fix the clock for this call (ISO 8601; a testing aid).")
@click.option("--calendar", "calendar_file", envvar="FLOWENGINE_CALENDAR", type=click.Path(path_type=Path),
              help="Working-day calendar file overriding the mainland-China holidays (env FLOWENGINE_CALENDAR).")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="en", envvar="FLOWENGINE_LANG",
              show_default=True, help="Language of labels in output.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="flowengine")
@click.pass_context
def main(ctx: click.Context, db: str, processes: Path, hook_modules: tuple[str, ...], now: str | None,
         calendar_file: Path | None, lang: str, debug: bool) -> None:
    """Run business processes defined in YAML: validate, start, fire, inspect, render."""
    modules = [m for spec in hook_modules for m in spec.split()]
    ctx.obj = Settings(db, processes, modules, now, lang, debug, calendar_file)


# -- definitions --------------------------------------------------------------------------------

@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@pass_settings
def validate(settings: Settings, paths: tuple[Path, ...]) -> None:
    """Check process files (default: the --processes directory); every problem with file:line:col."""
    from flowengine.definition.loader import load_directory

    targets = list(paths) or [settings.processes]
    hooks = settings.hooks().names()
    problems: list[Problem] = []
    count = 0
    for target in targets:
        try:
            if target.is_dir():
                count += len(load_directory(target, hooks=hooks))
            else:
                count += len(load_directory(target.parent, hooks=hooks, files=[target]))
        except DefinitionError as exc:
            problems.extend(exc.problems)
    if problems:
        for p in problems:
            out.print(str(p), markup=False)
        files = {p.file for p in problems}
        out.print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {len(files)} "
                  f"file{'s' if len(files) != 1 else ''}", markup=False)
        sys.exit(1)
    out.print(f"ok: {count} process{'es' if count != 1 else ''} valid", markup=False)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the process format (for editors)."""
    from flowengine.definition.schema import ProcessSpec

    emit_json(ProcessSpec.model_json_schema(by_alias=True))


@main.command()
@json_option
@pass_settings
def processes(settings: Settings, as_json: bool) -> None:
    """List the loaded processes and their current versions."""
    engine = settings.engine()
    rows = [{"process": pid, "version": c.version, "title": c.spec.title.text(settings.lang),
             "states": len(c.spec.states), "events": len(c.spec.events), "file": str(c.definition.file)}
            for pid, c in sorted(engine.processes.items())]
    if as_json:
        emit_json(rows)
        return
    table = Table("process", "version", "title", "states", "events")
    for r in rows:
        table.add_row(r["process"], str(r["version"]), r["title"], str(r["states"]), str(r["events"]))
    out.print(table)


# -- instances ----------------------------------------------------------------------------------

@main.command()
@click.argument("process")
@click.option("--data", "data_text", help="Start data as a JSON object.")
@click.option("--data-file", type=click.File("r", encoding="utf-8"), help="Start data from a JSON file.")
@click.option("--id", "instance_id", help="Name the instance (a business key).")
@actor_options
@json_option
@pass_settings
def start(settings: Settings, process: str, data_text: str | None, data_file: Any, instance_id: str | None,
          actor_id: str | None, roles: tuple[str, ...], as_json: bool) -> None:
    """Start an instance of PROCESS."""
    if data_text is not None and data_file is not None:
        raise click.UsageError("give --data or --data-file, not both")
    data = parse_json_object(data_file.read() if data_file else data_text, "--data-file" if data_file else "--data")
    inst = settings.engine().start(process, data=data, actor=make_actor(actor_id, roles), instance_id=instance_id)
    show_instance(settings, settings.engine().get(inst.id), as_json)


@main.command()
@click.argument("instance")
@click.argument("event")
@click.option("--data", "data_text", help="Event payload as a JSON object.")
@click.option("--expect-revision", type=int, help="Refuse unless the instance is at this revision.")
@click.option("--idempotency-key", help="Repeat-safe key: a second fire with it returns the first result.")
@actor_options
@json_option
@pass_settings
def fire(settings: Settings, instance: str, event: str, data_text: str | None, expect_revision: int | None,
         idempotency_key: str | None, actor_id: str | None, roles: tuple[str, ...], as_json: bool) -> None:
    """Fire EVENT on INSTANCE."""
    engine = settings.engine()
    step = engine.fire(instance, event, data=parse_json_object(data_text, "--data"),
                       actor=make_actor(actor_id, roles), expected_revision=expect_revision,
                       idempotency_key=idempotency_key)
    if as_json:
        emit_json(step.to_json())
        return
    compiled = engine.compiled(step.instance.process, step.instance.version)
    out.print(f"{step.instance_id}: {event}  {label(compiled, step.source, settings.lang)} → "
              f"{label(compiled, step.target, settings.lang)}  (revision {step.revision})", markup=False)
    for sid in step.started:
        out.print(f"  started {sid}", markup=False)
    allowed = step.instance.allowed_events
    out.print(f"  allowed now: {', '.join(allowed) if allowed else '(none: ' + step.instance.status + ')'}",
              markup=False)


def label(compiled: Any, state: str, lang: str) -> str:
    spec = compiled.spec.states.get(state)
    return f"{state} ({spec.label.text(lang)})" if spec is not None else state


def show_instance(settings: Settings, inst: Instance, as_json: bool) -> None:
    if as_json:
        emit_json(inst.to_json())
        return
    compiled = settings.engine().compiled(inst.process, inst.version)
    table = Table(show_header=False, box=None)
    table.add_row("id", inst.id)
    table.add_row("process", f"{inst.process} ({compiled.spec.title.text(settings.lang)}) version {inst.version}")
    table.add_row("state", label(compiled, inst.state, settings.lang))
    table.add_row("status", inst.status)
    table.add_row("revision", str(inst.revision))
    if inst.parent_id:
        table.add_row("parent", inst.parent_id)
    for child in inst.children:
        table.add_row("started", child)
    table.add_row("allowed events", ", ".join(
        f"{e} ({compiled.spec.events[e].label.text(settings.lang)})" for e in inst.allowed_events) or "-")
    for t in inst.timers:
        table.add_row("timer", f"{t.timer} due {t.due_at.astimezone(compiled.tz).isoformat()} "
                               f"({t.kind}{' ' + t.event if t.event else ''})")
    table.add_row("data", json.dumps(inst.data, ensure_ascii=False, indent=1, default=str))
    out.print(table)


@main.command()
@click.argument("instance")
@json_option
@pass_settings
def show(settings: Settings, instance: str, as_json: bool) -> None:
    """Show an instance: state, status, version, revision, data, timers, allowed events."""
    show_instance(settings, settings.engine().get(instance), as_json)


@main.command(name="list")
@click.option("--process")
@click.option("--state")
@click.option("--status", type=click.Choice(["running", "completed", "cancelled"]))
@click.option("--overdue", is_flag=True, help="Only instances with a pending timer already due.")
@click.option("--limit", type=int, default=200, show_default=True)
@json_option
@pass_settings
def list_(settings: Settings, process: str | None, state: str | None, status: str | None, overdue: bool,
          limit: int, as_json: bool) -> None:
    """List instances, oldest first."""
    items = settings.engine().list(process=process, state=state, status=status, overdue=overdue, limit=limit)
    if as_json:
        emit_json([i.to_json() for i in items])
        return
    table = Table("id", "process", "v", "state", "status", "rev", "updated")
    for i in items:
        table.add_row(i.id, i.process, str(i.version), i.state, i.status, str(i.revision),
                      i.updated_at.isoformat(timespec="seconds"))
    out.print(table)
    out.print(f"{len(items)} instance{'s' if len(items) != 1 else ''}", markup=False)


@main.command()
@click.argument("instance")
@json_option
@pass_settings
def history(settings: Settings, instance: str, as_json: bool) -> None:
    """The append-only history of an instance."""
    entries = settings.engine().history(instance)
    if as_json:
        emit_json([e.to_json() for e in entries])
        return
    inst = settings.engine().get(instance)
    print_history(entries, settings.engine().compiled(inst.process, inst.version).tz)


def print_history(entries: Sequence[HistoryEntry], tz: Any) -> None:
    table = Table("seq", "at", "event", "from", "to", "actor", "payload")
    for e in entries:
        table.add_row(str(e.seq), e.at.astimezone(tz).isoformat(timespec="minutes"), e.event, e.source or "", e.target,
                      escape(f"{e.actor.id} [{', '.join(sorted(e.actor.roles))}]"),
                      json.dumps(e.payload, ensure_ascii=False, default=str) if e.payload else "")
    out.print(table)


@main.command()
@json_option
@pass_settings
def tick(settings: Settings, as_json: bool) -> None:
    """Fire every timer due now (or at --now) exactly once, and print what fired."""
    report = settings.engine().tick()
    if as_json:
        emit_json([f.to_json() for f in report.firings])
        return
    for f in report.firings:
        out.print(f"{f.instance_id}: {f.timer} → {f.outcome}{' ' + f.event if f.event else ''}"
                  f"{' (' + f.error + ')' if f.error else ''}", markup=False)
    out.print(f"{len(report.fired)} timer{'s' if len(report.fired) != 1 else ''} fired at "
              f"{report.now.isoformat(timespec='seconds')}", markup=False)


@main.command()
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds between ticks.")
@click.option("--deliver/--no-deliver", default=True, help="Print outbox messages as JSON lines and mark them "
              "delivered.")
@pass_settings
def worker(settings: Settings, poll: float, deliver: bool) -> None:
    """Tick and deliver the outbox until SIGTERM/SIGINT; several workers may run at once."""
    from flowengine.timers import OutboxMessage, TickReport, Worker

    def print_message(m: OutboxMessage) -> None:
        click.echo(json.dumps({"delivery_id": m.delivery_id, "topic": m.topic, "instance": m.instance_id,
                               "payload": m.payload}, ensure_ascii=False))

    def on_tick(report: TickReport) -> None:
        for f in report.firings:
            err.print(f"{f.instance_id}: {f.timer} → {f.outcome}", markup=False)

    fired = Worker(settings.engine(), poll=poll, deliver=print_message if deliver else None, on_tick=on_tick).run()
    err.print(f"worker stopped after firing {fired} timers", markup=False)


@main.command()
@click.argument("role")
@json_option
@pass_settings
def inbox(settings: Settings, role: str, as_json: bool) -> None:
    """Instances where ROLE can act now, oldest first, with their deadlines."""
    items = settings.engine().inbox(role)
    if as_json:
        emit_json([{"instance": i.to_json(), "events": list(ev)} for i, ev in items])
        return
    table = Table("id", "process", "state", "events", "next deadline", "since")
    for inst, events in items:
        due = min((t.due_at for t in inst.timers), default=None)
        table.add_row(inst.id, inst.process, inst.state, ", ".join(events),
                      due.isoformat(timespec="minutes") if due else "", inst.created_at.isoformat(timespec="minutes"))
    out.print(table)


@main.command(name="migrate")
@click.argument("process")
@click.option("--from-version", type=int, required=True)
@click.option("--to-version", type=int, required=True)
@click.option("--map", "mappings", multiple=True, metavar="OLD=NEW", help="Map a state that the new version lacks.")
@click.option("--dry-run", is_flag=True, help="Show what would move; change nothing.")
@json_option
@pass_settings
def migrate_(settings: Settings, process: str, from_version: int, to_version: int, mappings: tuple[str, ...],
             dry_run: bool, as_json: bool) -> None:
    """Move running instances of PROCESS from one definition version to another, explicitly."""
    mapping = {}
    for item in mappings:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise click.BadParameter(f"'{item}' is not OLD=NEW", param_hint="--map")
        mapping[old.strip()] = new.strip()
    report = settings.engine().migrate(process, from_version=from_version, to_version=to_version, mapping=mapping,
                                       dry_run=dry_run)
    if as_json:
        emit_json(report.to_json())
        return
    for item in report.items:
        out.print(f"{item.instance_id}: {item.from_state} → {item.to_state}", markup=False)
    verb = "would move" if dry_run else "moved"
    out.print(f"{verb} {len(report.items)} instance{'s' if len(report.items) != 1 else ''} of {process} "
              f"v{from_version} → v{to_version}", markup=False)


@main.command()
@json_option
@pass_settings
def versions(settings: Settings, as_json: bool) -> None:
    """Every stored definition version (changed YAML creates a new one)."""
    rows = [{"process": p, "version": v, "hash": h[:12], "created_at": c.isoformat(timespec="seconds")}
            for p, v, h, c in settings.engine().versions()]
    if as_json:
        emit_json(rows)
        return
    table = Table("process", "version", "hash", "created")
    for r in rows:
        table.add_row(r["process"], str(r["version"]), r["hash"], r["created_at"])
    out.print(table)


# -- scenarios and demo -------------------------------------------------------------------------

@main.command(name="test")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-v", "--verbose", is_flag=True)
@pass_settings
def test_(settings: Settings, paths: tuple[Path, ...], verbose: bool) -> None:
    """Run scenario files (or directories of them) and report like a test runner."""
    import tempfile

    from flowengine.engine import Engine
    from flowengine.scenario import ScenarioRunner, load_scenario, scenario_files

    files = scenario_files(paths)
    with tempfile.TemporaryDirectory() as tmp:
        db = settings.db if settings.db != "sqlite:///flowengine.db" else f"sqlite:///{tmp}/scenarios.db"
        engine = Engine(db, processes=settings.processes, hooks=settings.hooks())
        runner = ScenarioRunner(engine)
        passed = failed = 0
        for path in files:
            try:
                spec = load_scenario(path)
            except DefinitionError as exc:
                failed += 1
                out.print(f"{path} ERROR", markup=False)
                for p in exc.problems:
                    out.print(f"  {p}", markup=False)
                continue
            result = runner.run(spec, path)
            if result.passed:
                passed += 1
                if verbose:
                    out.print(f"{path}::{spec.scenario} PASSED", markup=False)
            else:
                failed += 1
                out.print(f"{path}::{spec.scenario} FAILED", markup=False)
                for f in result.failures:
                    out.print(f"  {f}", markup=False)
        engine.dispose()
    out.print(f"{passed} passed, {failed} failed", markup=False)
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--process", "process_id", default="remote_service", show_default=True,
              help="Which process to walk (its first example path).")
@click.option("--scenarios", type=click.Path(path_type=Path), default=Path("examples/scenarios"),
              show_default=True, help="Where the example paths are.")
@pass_settings
def demo(settings: Settings, process_id: str, scenarios: Path) -> None:
    """Walk one process from start to end on the database (embedded SQLite by default), step by step."""
    from flowengine.scenario import ScenarioRunner, load_scenario
    from flowengine.timers import TickReport

    folder = scenarios / process_id
    files = sorted(p for p in folder.glob("*.yaml") if "refuse" not in p.name) if folder.is_dir() else []
    if not files:
        raise click.UsageError(f"no example path for '{process_id}' in {folder}")
    spec = load_scenario(files[0])
    engine = settings.engine()
    compiled = engine.compiled(spec.process)
    lang = settings.lang
    out.print(f"[bold]{compiled.spec.title.text(lang)}[/bold] ({spec.process}) — {spec.scenario}: {spec.title or ''}")
    out.print(f"database: {settings.db}", markup=False)

    def report(kind: str, obj: Any) -> None:
        if kind == "start":
            c = engine.compiled(obj.process, obj.version)
            out.print(f"start {obj.process} → {label(c, obj.state, lang)}   [{obj.id}]", markup=False)
        elif kind == "fire":
            c = engine.compiled(obj.instance.process, obj.instance.version)
            ev = c.spec.events[obj.event].label.text(lang)
            out.print(f"  {obj.event} ({ev}): {label(c, obj.source, lang)} → {label(c, obj.target, lang)}",
                      markup=False)
        elif kind == "tick" and isinstance(obj, TickReport):
            for f in obj.fired:
                out.print(f"  ⏲ {obj.now.isoformat(timespec='minutes')} timer {f.timer} → {f.event}", markup=False)

    result = ScenarioRunner(engine, report=report).run(spec, files[0])
    assert result.instance_id is not None
    final = engine.get(result.instance_id)
    out.print(f"final: {label(compiled, final.state, lang)}, status {final.status}", markup=False)
    print_history(engine.history(result.instance_id), compiled.tz)
    if not result.passed:
        for f in result.failures:
            err.print(f"demo step failed: {f}", markup=False)
        sys.exit(1)


from flowengine.render.command import render  # noqa: E402

main.add_command(render)

from flowengine.scaffold import init  # noqa: E402

main.add_command(init)


if __name__ == "__main__":  # pragma: no cover
    main()

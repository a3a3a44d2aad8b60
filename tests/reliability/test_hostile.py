"""Hostile process YAML is refused fast and clearly, and no YAML makes the engine import or call anything.

Bombs (aliases, nesting, size), Python tags and hook names that look like code (`os.system`,
`builtins.eval`, `__import__`, `subprocess.run`) in every position a hook name may take: each is a
`DefinitionError` with a location, in under 2 s. Then, with `__import__` and `importlib.import_module`
spied on, a process whose hooks are *named* like modules is loaded, compiled, started and fired: only
the registered functions run, and no module named in the YAML is imported.
"""

from __future__ import annotations

import builtins
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowengine import Actor, DefinitionError, Engine
from flowengine.definition.loader import load_directory, load_process_text
from flowengine.hooks import ActionContext, GuardContext, HookRegistry
from tests.conftest import FIXTURES, fixture_hooks

FAST = 2.0  # seconds
BASE = (FIXTURES / "subtask.yaml").read_text(encoding="utf-8")
ROW = "{from: todo, event: finish, to: done, roles: [engineer]}"


def alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE: dict[str, str] = {
    "billion_laughs": alias_bomb(),
    "billion_laughs_in_parameters": BASE + "parameters:\n" + "".join(f"  {line}\n" for line in
                                                                    alias_bomb().splitlines()),
    "nesting_10000_flow_sequences": nested(10_000),
    "nesting_10000_flow_mappings": "{a: " * 10_000 + "1" + "}" * 10_000,
    "nesting_10000_block_sequences": "- " * 10_000 + "x\n",
    "nesting_10000_in_parameters": BASE + "parameters: {deep: " + nested(10_000) + "}\n",
    "nesting_100": BASE + "parameters: {deep: " + nested(100) + "}\n",
    "five_megabytes": BASE + "description: '" + "x" * 5_000_000 + "'\n",
    "python_object_apply": BASE.replace("initial: todo", "initial: !!python/object/apply:os.system ['touch PWNED']"),
    "python_name": BASE.replace("initial: todo", "initial: !!python/name:builtins.eval"),
    "python_object_new": BASE.replace("initial: todo", "initial: !!python/object/new:subprocess.Popen [['id']]"),
    "python_module": BASE.replace("initial: todo", "initial: !!python/module:os"),
    "python_tag_on_key": BASE.replace("initial: todo", "? !!python/name:builtins.eval\n: todo\ninitial: todo"),
    "local_tag": BASE.replace("initial: todo", "initial: !shell todo"),
    "binary": BASE.replace("initial: todo", "initial: !!binary dG9kbw=="),
    "merge_key": BASE.replace("initial: todo", "base: &b {x: 1}\ninitial: todo\nextra: {<<: *b}"),
}

CODE_NAMES = ["os.system", "builtins.eval", "__import__", "subprocess.run", "importlib.import_module",
              "os:system", "eval", "exec", "open", "getattr", "__builtins__", "__class__", "predicate", "merge"]

POSITIONS: dict[str, Callable[[str], str]] = {
    "guard": lambda n: BASE.replace(ROW, ROW[:-1] + f", guard: '{n}'}}"),
    "guard_list": lambda n: BASE.replace(ROW, ROW[:-1] + f", guard: [{{field: result, set: true}}, '{n}']}}"),
    "if": lambda n: BASE.replace(ROW, ROW[:-1] + f", if: '{n}'}}"),
    "not": lambda n: BASE.replace(ROW, ROW[:-1] + f", guard: {{not: '{n}'}}}}"),
    "run": lambda n: BASE.replace(ROW, ROW[:-1] + f", actions: [{{run: '{n}'}}]}}"),
    "when": lambda n: BASE.replace(ROW, ROW[:-1] + f", actions: [{{notify: engineer, when: '{n}'}}]}}"),
    "set_condition": lambda n: BASE.replace(
        ROW, ROW[:-1] + f", actions: [{{set: {{result: {{condition: '{n}'}}}}}}]}}"),
    "conditions_entry": lambda n: BASE.replace("states:", f"conditions:\n  sneaky: '{n}'\nstates:", 1).replace(
        ROW, ROW[:-1] + ", guard: sneaky}"),
    "on_start_run": lambda n: BASE.replace("states:", f"on_start: [{{run: '{n}'}}]\nstates:", 1),
}


def refused(text: str, tmp_path: Path | None = None) -> tuple[DefinitionError, float]:
    began = time.monotonic()
    try:
        if tmp_path is None:
            load_process_text(text, Path("hostile.yaml"), hooks=fixture_hooks().names())
        else:
            (tmp_path / "subtask.yaml").write_text(text, encoding="utf-8")
            load_directory(tmp_path, hooks=fixture_hooks().names())
    except DefinitionError as exc:
        return exc, time.monotonic() - began
    raise AssertionError("accepted")


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("via", ["text", "file"])
def test_hostile_yaml_is_refused_fast_with_a_location(case: str, via: str, tmp_path: Path) -> None:
    exc, took = refused(HOSTILE[case], tmp_path if via == "file" else None)
    assert took < FAST, f"{case}: took {took:.2f}s"
    assert exc.problems and all(p.line >= 1 and p.col >= 1 and p.message for p in exc.problems)
    text = str(exc)
    assert "Traceback" not in text and len(text) < 2000, text[:300]


@pytest.mark.parametrize("position", sorted(POSITIONS))
@pytest.mark.parametrize("name", CODE_NAMES)
def test_hook_names_that_look_like_code_are_unknown_hooks(position: str, name: str) -> None:
    text = POSITIONS[position](name)
    exc, took = refused(text)
    assert took < FAST
    [problem] = exc.problems
    assert name in problem.message and ("unknown" in problem.message or "not a valid id" in problem.message), \
        problem
    assert problem.line > 1 and problem.col > 1, problem


def test_unregistered_names_fail_compilation_when_the_loader_could_not_check_them() -> None:
    """Without a registry the loader can't check hook names; the engine then refuses at compile time."""
    definition = load_process_text(POSITIONS["guard"]("os.system"), Path("subtask.yaml"))
    with pytest.raises(DefinitionError, match=r"'os\.system' is not registered"):
        Engine("sqlite://", processes={"subtask": definition}, hooks=fixture_hooks())


# -- nothing named in YAML is imported or called -------------------------------------------------------

CANARIES = ("antigravity", "this", "webbrowser", "smtplib", "ftplib")  # importing any of them shows

LURE = """\
format: 1
process: lure
title: {zh: 诱饵, en: Lure}
initial: open
start_roles: [clerk]
on_start: [{run: smtplib}]
data:
  note: {type: text, start: optional}
  command: {type: text}
conditions:
  ftplib: {field: note, set: true}
states:
  open: {label: {zh: 开, en: Open}}
  done: {label: {zh: 完, en: Done}, kind: final}
events:
  go: {label: {zh: 走, en: Go}, payload: {command: optional}}
transitions:
  - {from: open, event: go, to: done, if: this, guard: [antigravity, ftplib, {not: {field: note, eq: os.system}}],
     roles: [clerk], actions: [{run: webbrowser, when: this}, {set: {note: "__import__('os').system('touch %s')"}}]}
roles:
  clerk: {zh: 文员, en: Clerk}
"""

DOTTED = LURE.replace("if: this", "if: antigravity.fly").replace("run: webbrowser", "run: webbrowser.open").replace(
    "run: smtplib", "run: os.system").replace("[antigravity, ftplib,", "[subprocess.run, builtins.eval, __import__,")


def test_no_yaml_makes_the_engine_import_or_call_anything_unregistered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = [m for m in CANARIES if m not in sys.modules]
    assert len(absent) >= 3, f"canary modules already imported: {CANARIES}"
    canary_file = tmp_path / "PWNED"
    imported: list[str] = []
    called: list[str] = []
    code_run: list[str] = []
    real_import, real_import_module = builtins.__import__, importlib.import_module
    real_eval, real_exec = builtins.eval, builtins.exec

    def spy_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        imported.append(name)
        imported.extend(f"{name}.{f}" for f in fromlist or ())
        return real_import(name, globals, locals, fromlist, level)

    def spy_import_module(name: str, package: str | None = None) -> Any:
        imported.append(name)
        return real_import_module(name, package)

    def spy_code(real: Callable[..., Any]) -> Callable[..., Any]:
        def run(source: Any, *args: Any, **kwargs: Any) -> Any:
            code_run.append(str(source))
            return real(source, *args, **kwargs)
        return run

    def forbidden(what: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            called.append(f"{what}{args}")
            raise AssertionError(f"{what} was called")
        return call

    hooks = HookRegistry("lure")
    ran: list[str] = []

    @hooks.guard("antigravity")
    def antigravity_guard(ctx: GuardContext) -> bool:
        ran.append("antigravity")
        return True

    @hooks.condition("this")
    def this_condition(ctx: GuardContext) -> bool:
        ran.append("this")
        return True

    @hooks.action("webbrowser")
    def webbrowser_action(ctx: ActionContext) -> None:
        ran.append("webbrowser")

    @hooks.action("smtplib")
    def smtplib_action(ctx: ActionContext) -> None:
        ran.append("smtplib")

    lure = LURE % canary_file
    monkeypatch.setattr(builtins, "__import__", spy_import)
    monkeypatch.setattr(importlib, "import_module", spy_import_module)
    monkeypatch.setattr(builtins, "eval", spy_code(real_eval))
    monkeypatch.setattr(builtins, "exec", spy_code(real_exec))
    for module, attr in ((os, "system"), (os, "popen"), (os, "execv"), (subprocess, "Popen"), (subprocess, "run")):
        monkeypatch.setattr(module, attr, forbidden(f"{module.__name__}.{attr}"))

    with pytest.raises(DefinitionError) as info:
        load_process_text(DOTTED % canary_file, Path("lure.yaml"), hooks=hooks.names())
    definition = load_process_text(lure, Path("lure.yaml"), hooks=hooks.names())
    engine = Engine(f"sqlite:///{tmp_path / 'lure.db'}", processes={"lure": definition}, hooks=hooks)
    iid = engine.start("lure", data={"note": "hello"}, actor=Actor("c", {"clerk"})).id
    step = engine.fire(iid, "go", data={"command": "__import__('os').system('id')"}, actor=Actor("c", {"clerk"}))
    engine.dispose()
    monkeypatch.undo()

    assert step.target == "done" and step.instance.data["note"].startswith("__import__")
    assert sorted(ran) == ["antigravity", "smtplib", "this", "this", "webbrowser"]
    assert called == [] and not canary_file.exists()
    named = set(CANARIES) | {"antigravity.fly", "webbrowser.open", "os.system", "subprocess.run", "builtins.eval"}
    assert [n for n in imported if n in named or n.split(".")[0] in absent] == []
    assert [m for m in absent if m in sys.modules] == []
    yaml_words = ("PWNED", "system(", "antigravity", "webbrowser", "smtplib", "ftplib")
    assert [c for c in code_run if any(w in c for w in yaml_words)] == []
    messages = [p.message for p in info.value.problems]
    for name in ("antigravity.fly", "webbrowser.open", "os.system", "subprocess.run", "builtins.eval", "__import__"):
        assert any(name in m for m in messages), (name, messages)

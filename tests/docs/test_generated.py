"""Generated pages match what their generators write now: the CLI reference and the process pages.

If one of these fails, the code (or a process file, or a diagram) changed after the page was written:
run the generator named in the message and commit the result.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent.parent


def generator(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_gen_{name}", ROOT / "docs" / "gen" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    cli_reference = generator("cli_reference")
    assert cli_reference.PAGE.read_text(encoding="utf-8") == cli_reference.render(), (
        "docs/reference/cli.md is out of date: run `python docs/gen/cli_reference.py`")


def test_cli_reference_documents_every_command_and_exit_code() -> None:
    import click

    from flowengine.cli import main

    cli_reference = generator("cli_reference")
    page = cli_reference.PAGE.read_text(encoding="utf-8")
    ctx = click.Context(main, info_name="flowengine")
    for name in main.list_commands(ctx):
        assert f"## flowengine {name} " in page
    for code in range(8):
        assert f"\n| {code} | " in page


def test_process_pages_are_current() -> None:
    process_pages = generator("process_pages")
    files = process_pages.render_all()
    stale = [str(p.relative_to(ROOT)) for p in process_pages.stale(files)]
    outdated = [str(p.relative_to(ROOT)) for p, text in files.items()
                if not p.exists() or p.read_text(encoding="utf-8") != text]
    assert not stale and not outdated, (
        f"out of date: {outdated}, no longer a process: {stale}: run `python docs/gen/process_pages.py`")


def test_every_shipped_process_has_a_page() -> None:
    process_pages = generator("process_pages")
    shipped = {p.stem for p in (ROOT / "processes").glob("*.yaml") if not p.name.startswith("_")}
    pages = {p.stem for p in (ROOT / "docs" / "processes").glob("*.md")} - {"index"}
    assert shipped == pages
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert all(f"processes/{pid}.md" in mkdocs for pid in shipped)
    assert process_pages.NAV_BEGIN in mkdocs and process_pages.NAV_END in mkdocs

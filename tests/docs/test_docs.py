"""The code in the documentation runs: every page's blocks, in order, in a fresh working directory.

Conventions for fenced blocks in README.md and docs/**/*.md (write docs with these in mind):

- ```python                     run; a page's python blocks share one namespace, in page order.
- ```<any> title="rel/path"     a file: written to that path (relative to the working directory) when
                                reached, never executed. Use it for the reader's YAML, hook modules,
                                scenarios, and for Python that can't run here (e.g. needs PostgreSQL).
- ```bash                       each line starting with `flowengine ` is run through click's CliRunner
                                (`flowengine.cli.main`); it must exit 0, or N if the line ends with the
                                comment `# exit N`; `> file` writes its stdout to a file. `export NAME=value`
                                lines set the environment for the page's later commands. Other lines
                                (pip, cd, mkdir...) are not run.
- ```shell, ```text, ```yaml... shown only (```shell: commands that can't run here, e.g. a worker).
  But a ```text block right after a ```bash block is that block's output, and each of its lines that
  reports a definition problem (`path:line:col: ...`) must appear in what the commands printed, so a
  documented error location can't go stale.

Each page runs in a temporary directory holding copies of the repository's `processes/` and `examples/`
(so commands written for the repository root work), the page's files written as it goes, and an
SQLite database. A page whose text contains `<!-- docs-test: empty-dir -->` starts in an empty
directory instead (the tutorial: it must not depend on the shipped processes). The directory is on
`sys.path`, so a hook module written by a page can be imported and named with `--hooks`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs"
EMPTY_DIR_MARK = "<!-- docs-test: empty-dir -->"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)\s*(?P<attrs>[^`]*)$")
TITLE = re.compile(r'title="(?P<title>[^"]+)"')
EXIT = re.compile(r"#\s*exit\s+(?P<code>\d+)\s*$")
PROBLEM_LINE = re.compile(r"^\S+:\d+:\d+: ")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    title: str | None
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Fenced code blocks of a Markdown page, top level or indented (admonitions, tabs)."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        title = TITLE.search(m["attrs"])
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        found.append(Block(page, i + 1, m["lang"].lower(), title["title"] if title else None, "\n".join(body) + "\n"))
        i = j + 1
    return found


def runnable(block: Block) -> bool:
    return block.title is not None or block.lang == "python" or (
        block.lang == "bash" and any(_is_command(line) or _is_export(line) for line in _logical_lines(block.text)))


def pages() -> list[Path]:
    found = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    return [p for p in found if "gen" not in p.relative_to(ROOT).parts and any(runnable(b) for b in blocks(p))]


def _logical_lines(text: str) -> Iterator[str]:
    """Shell lines: `\\` continues a line, and so does an open quote (JSON spread over lines)."""
    current = ""
    for raw in text.splitlines():
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        try:
            shlex.split(current, comments=True)
        except ValueError:  # a quote is still open
            current += "\n"
            continue
        yield current.strip()
        current = ""
    if current.strip():
        yield current.strip()


def _is_command(line: str) -> bool:
    return line.startswith("flowengine ")


def _is_export(line: str) -> bool:
    return line.startswith("export ")


class PageRun:
    """One page's working directory, namespace and environment."""

    def __init__(self, page: Path, workdir: Path) -> None:
        self.page, self.workdir = page, workdir
        self.namespace: dict[str, Any] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
        self.env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FLOWENGINE_")}
        self.runner = CliRunner()
        self.output: str | None = None  # what the previous block's commands printed, if it was ```bash

    def run(self, block: Block) -> None:
        printed, self.output = self.output, None
        if block.lang == "text" and printed is not None:
            for line in block.text.splitlines():
                if PROBLEM_LINE.match(line):
                    assert line in printed, f"{block.where}: `{line}` is not what the command printed:\n{printed}"
        if not runnable(block):
            return
        if block.title is not None:
            self.write(block)
        elif block.lang == "python":
            code = compile(block.text, block.where, "exec")
            exec(code, self.namespace)
        elif block.lang == "bash":
            self.output = ""
            for line in _logical_lines(block.text):
                if _is_export(line):
                    for assignment in shlex.split(line[len("export "):]):
                        name, _, value = assignment.partition("=")
                        self.env[name] = value
                elif _is_command(line):
                    self.command(block, line)

    def write(self, block: Block) -> None:
        assert block.title is not None
        target = (self.workdir / block.title).resolve()
        assert self.workdir.resolve() in target.parents, f"{block.where}: title must be a relative path"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text, encoding="utf-8")

    def command(self, block: Block, line: str) -> None:
        from flowengine.cli import main

        expected = EXIT.search(line)
        args = shlex.split(line, comments=True)[1:]
        redirect = None
        if ">" in args:  # `flowengine schema > file.json`
            at = args.index(">")
            args, redirect = args[:at], args[at + 1]
        result = self.runner.invoke(main, args, env=self.env, catch_exceptions=False)
        code = int(expected["code"]) if expected else 0
        assert result.exit_code == code, (
            f"{block.where}: `{line}` exited {result.exit_code}, expected {code}\n{result.output}")
        if redirect is not None:
            (self.workdir / redirect).write_text(result.stdout, encoding="utf-8")
        else:
            self.output = (self.output or "") + result.output


@contextlib.contextmanager
def page_directory(page: Path, workdir: Path) -> Iterator[None]:
    if EMPTY_DIR_MARK not in page.read_text(encoding="utf-8"):
        ignore = shutil.ignore_patterns("__pycache__", "*.db", "*.db-*")
        for name in ("processes", "examples"):
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, workdir / name, ignore=ignore)
    before = set(sys.modules)
    saved_path = list(sys.path)
    sys.path.insert(0, str(workdir))
    old = Path.cwd()
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(old)
        sys.path[:] = saved_path  # the CLI may have added the working directory too
        for name in set(sys.modules) - before:  # modules the page wrote, so pages can't see each other's
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file.startswith(str(workdir)):
                del sys.modules[name]


@pytest.fixture(autouse=True)
def parse_each_directory_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every CLI command loads its process directory again (~0.2 s per file, in pure-Python YAML);
    pages run many commands on the same files, so a load of files already loaded (same names and
    contents, same hooks) is served from a cache. Definitions are frozen, so sharing them is safe;
    only `Definition.file` may name an earlier page's copy."""
    from flowengine import engine as engine_module
    from flowengine.definition import loader

    real = loader.load_directory

    def cached(directory: Path, *, hooks: Any = None, files: Any = None) -> dict[str, Any]:
        paths = sorted(files) if files is not None else sorted(Path(directory).glob("*.y*ml"))
        key = (hooks, files is not None, tuple((p.name, p.read_bytes()) for p in paths if p.is_file()))
        if key not in _LOADED:
            _LOADED[key] = real(directory, hooks=hooks, files=files)
        return dict(_LOADED[key])

    monkeypatch.setattr(loader, "load_directory", cached)
    monkeypatch.setattr(engine_module, "load_directory", cached)


_LOADED: dict[Any, dict[str, Any]] = {}


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_code_runs(page: Path, tmp_path: Path) -> None:
    from flowengine import Engine

    run = PageRun(page, tmp_path)
    with page_directory(page, tmp_path):
        try:
            for block in blocks(page):
                run.run(block)
        finally:
            for value in run.namespace.values():
                if isinstance(value, Engine):
                    value.dispose()


def test_block_parser_follows_the_conventions(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text('Text\n\n```yaml title="processes/a.yaml"\nformat: 1\n```\n\n!!! note\n    ```python\n'
                    '    x = 1\n    ```\n\n```bash\nexport FLOWENGINE_DB=sqlite:///x.db\nflowengine validate \\\n'
                    '  processes/   # exit 1\npip install x\n```\n\n```shell\nflowengine worker\n```\n',
                    encoding="utf-8")
    found = blocks(page)
    assert [(b.lang, b.title, runnable(b)) for b in found] == [
        ("yaml", "processes/a.yaml", True), ("python", None, True), ("bash", None, True), ("shell", None, False)]
    assert found[1].text == "x = 1\n"
    assert list(_logical_lines(found[2].text)) == [
        "export FLOWENGINE_DB=sqlite:///x.db", "flowengine validate    processes/   # exit 1", "pip install x"]
    assert EXIT.search("flowengine validate processes/   # exit 1")

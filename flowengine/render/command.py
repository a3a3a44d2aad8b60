"""The `flowengine render` command: parse options, call `flowengine.render`, write files or stdout.

Definitions are read from the --processes directory without touching the database; only
`--instance` opens the engine. `cli.py` registers the command (`main.add_command(render)`); this
module gets the `Settings` object from click's context (`pass_obj`) and imports `flowengine.cli`
for type checking only, so the layers still point down (see the import-linter contract).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import click
from click.core import ParameterSource

from flowengine.definition.loader import Definition, load_directory
from flowengine.errors import UnknownProcess
from flowengine.render import EXTENSIONS, FORMATS, Format, render_instance
from flowengine.render import render as render_diagram

if TYPE_CHECKING:
    from flowengine.cli import Settings

LANGS = ("zh", "en")


def _global_lang(ctx: click.Context, settings: Settings) -> str | None:
    """The group's --lang when the user set it (flag or FLOWENGINE_LANG), else None."""
    parent = ctx.parent
    if parent is None:
        return None
    source = parent.get_parameter_source("lang")
    return settings.lang if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT) else None


def _write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def _definitions(settings: Settings) -> dict[str, Definition]:
    return load_directory(Path(settings.processes), hooks=settings.hooks().names())


@click.command()
@click.argument("process", required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="mermaid", show_default=True,
              help="mermaid and dot are text (stdout unless -o); svg and png need -o and Graphviz.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="File to write; with --all, the directory for <process>.<lang>.<ext> files.")
@click.option("--lang", type=click.Choice(LANGS),
              help="Label language. Default: the global --lang if set, else the definition's own "
                   "(with --all: both zh and en).")
@click.option("--instance", "instance_id", help="Highlight this instance's current state and path.")
@click.option("--all", "all_", is_flag=True, help="Render every process into the -o directory.")
@click.pass_context
def render(ctx: click.Context, process: str | None, fmt: str, output: Path | None, lang: str | None,
           instance_id: str | None, all_: bool) -> None:
    """Draw PROCESS (or an --instance's path, or --all processes) as Mermaid, DOT, SVG or PNG."""
    settings = cast("Settings", ctx.obj)
    form = cast(Format, fmt)
    lang = lang or _global_lang(ctx, settings)
    if all_:
        if process or instance_id:
            raise click.UsageError("--all renders every process: give no PROCESS and no --instance")
        if output is None:
            raise click.UsageError("--all needs -o DIR")
        if output.exists() and not output.is_dir():
            raise click.UsageError(f"-o {output} is a file; --all writes into a directory")
        for pid, definition in sorted(_definitions(settings).items()):
            for code in [lang] if lang else LANGS:
                path = output / f"{pid}.{code}.{EXTENSIONS[form]}"
                _write(path, render_diagram(definition, format=form, lang=code))
                click.echo(str(path))
        return
    if process is None and instance_id is None:
        raise click.UsageError("name a PROCESS, or give --instance ID or --all")
    if fmt in ("svg", "png") and output is None:
        raise click.UsageError(f"--format {fmt} is binary or large: write it to a file with -o FILE")
    if output is not None and output.is_dir():
        raise click.UsageError(f"-o {output} is a directory; give a file name (or use --all)")
    content: str | bytes
    if instance_id is not None:
        engine = settings.engine()
        inst = engine.get(instance_id)
        if process is not None and process != inst.process:
            raise click.UsageError(f"instance {instance_id} belongs to '{inst.process}', not '{process}'")
        content = render_instance(engine, instance_id, format=form, lang=lang)
    else:
        assert process is not None
        definitions = _definitions(settings)
        if process not in definitions:
            raise UnknownProcess(process, list(definitions))
        content = render_diagram(definitions[process], format=form, lang=lang)
    if output is None:
        click.echo(content if isinstance(content, str) else content.decode("utf-8"), nl=False)
    else:
        _write(output, content)
        click.echo(f"wrote {output}", err=True)


__all__ = ["render"]

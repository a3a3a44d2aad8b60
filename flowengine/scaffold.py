"""`flowengine init DIR`: a new project folder with a sample process, its hooks, a scenario and a README.

The files come from package data under `flowengine/templates/init/` (read with importlib.resources, so
they ship in the wheel); `$name` and `$title` are filled in with `string.Template`, which leaves the
braces of YAML and Python alone. Imports nothing from the engine: scaffolding writes files, it runs none.
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

import click

from flowengine.definition.schema import ID_PATTERN

TEMPLATES: Traversable = files("flowengine") / "templates" / "init"
# template file → where it goes in the new folder (formatted with the process name)
LAYOUT: tuple[tuple[str, str], ...] = (
    ("process.yaml.tmpl", "processes/{name}.yaml"),
    ("hooks.py.tmpl", "hooks.py"),
    ("scenario.yaml.tmpl", "scenarios/{name}-1.yaml"),
    ("README.md.tmpl", "README.md"),
)


def process_name(folder: Path) -> str:
    """A process id from a folder name: `My Desk-2` → `my_desk_2`."""
    return re.sub(r"[^a-z0-9]+", "_", folder.resolve().name.lower()).strip("_")


def scaffold(folder: Path, name: str) -> list[Path]:
    """Write the sample project into `folder` (new or empty); returns the files written."""
    if not re.match(ID_PATTERN, name):
        raise click.ClickException(f"'{name}' is not a process id: use lower snake_case ASCII, e.g. 'leave_request'")
    if folder.exists() and not folder.is_dir():
        raise click.ClickException(f"{folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise click.ClickException(f"{folder} is not empty: init writes only into a new or empty folder, "
                                   "so it never overwrites your files")
    values = {"name": name, "title": name.replace("_", " ").capitalize()}
    written = []
    for template, target in LAYOUT:
        path = folder / target.format(name=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = Template((TEMPLATES / template).read_text(encoding="utf-8")).substitute(values)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="The sample process's id (default: made from the folder name).")
def init(directory: Path, name: str | None) -> None:
    """Start a project in DIRECTORY: a sample process, its hooks, a scenario and a README."""
    chosen = name or process_name(directory)
    if name is None and not re.match(ID_PATTERN, chosen):
        raise click.ClickException(f"can't make a process id from the folder name '{directory.name}': pass --name")
    written = scaffold(directory, chosen)
    for path in written:
        click.echo(f"created {path}")
    click.echo(f"\nnext:\n  cd {directory}\n  python -m flowengine --hooks hooks validate\n"
               "  python -m flowengine --hooks hooks test scenarios/")

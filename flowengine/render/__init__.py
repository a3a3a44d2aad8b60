"""Flow diagrams of process definitions, optionally overlaid with one instance's path.

    svg = render(engine.compiled("remote_service"), format="svg", lang="en")
    text = render_instance(engine, "RS-1001", format="mermaid")

`extract.py` builds a `DiagramGraph` (what the diagram says); `mermaid.py` and `dot.py` only
render it. Mermaid and DOT text need nothing installed; SVG and PNG run Graphviz's `dot` program
and raise `RenderError` when it is missing. Reads definitions and results; never writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, overload

from flowengine.compile import CompiledProcess
from flowengine.definition.loader import Definition
from flowengine.definition.schema import ProcessSpec
from flowengine.render.dot import RenderError, render_dot, to_image
from flowengine.render.extract import DiagramGraph, extract
from flowengine.render.mermaid import render_mermaid
from flowengine.results import HistoryEntry, Instance

if TYPE_CHECKING:
    from flowengine.engine import Engine

Format = Literal["mermaid", "dot", "svg", "png"]
FORMATS: tuple[Format, ...] = ("mermaid", "dot", "svg", "png")
EXTENSIONS: dict[Format, str] = {"mermaid": "mmd", "dot": "dot", "svg": "svg", "png": "png"}


def _spec(source: ProcessSpec | Definition | CompiledProcess) -> ProcessSpec:
    if isinstance(source, ProcessSpec):
        return source
    if isinstance(source, Definition | CompiledProcess):
        spec: ProcessSpec = source.definition.spec if isinstance(source, CompiledProcess) else source.spec
        return spec
    raise TypeError(f"can't draw a {type(source).__name__}: pass a ProcessSpec, Definition or CompiledProcess")


def diagram(source: ProcessSpec | Definition | CompiledProcess, *, lang: str | None = None,
            instance: Instance | str | None = None, history: Sequence[HistoryEntry] | None = None) -> DiagramGraph:
    """The `DiagramGraph` `render` draws; `instance` is an `Instance` or just a current state id."""
    spec = _spec(source)
    if isinstance(instance, Instance):
        return extract(spec, lang, current=instance.state, history=history or (),
                       allowed=instance.allowed_events)
    return extract(spec, lang, current=instance, history=history or ())


@overload
def render(source: ProcessSpec | Definition | CompiledProcess, *, format: Literal["mermaid", "dot", "svg"],
           lang: str | None = None, instance: Instance | str | None = None,
           history: Sequence[HistoryEntry] | None = None) -> str: ...


@overload
def render(source: ProcessSpec | Definition | CompiledProcess, *, format: Literal["png"],
           lang: str | None = None, instance: Instance | str | None = None,
           history: Sequence[HistoryEntry] | None = None) -> bytes: ...


@overload
def render(source: ProcessSpec | Definition | CompiledProcess, *, format: Format,
           lang: str | None = None, instance: Instance | str | None = None,
           history: Sequence[HistoryEntry] | None = None) -> str | bytes: ...


def render(source: ProcessSpec | Definition | CompiledProcess, *, format: Format,
           lang: str | None = None, instance: Instance | str | None = None,
           history: Sequence[HistoryEntry] | None = None) -> str | bytes:
    """Draw a process: Mermaid, DOT or SVG text (`str`), or PNG (`bytes`).

    `lang` defaults to the definition's `lang`. With `instance` (and its `history`), the current
    state, visited states, taken edges and events allowed now are highlighted.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown diagram format {format!r}; use one of {', '.join(FORMATS)}")
    graph = diagram(source, lang=lang, instance=instance, history=history)
    if format == "mermaid":
        return render_mermaid(graph)
    dot = render_dot(graph)
    if format == "dot":
        return dot
    if format == "svg":
        return to_image(dot, "svg").decode("utf-8")
    return to_image(dot, "png")


def render_instance(engine: Engine, instance_id: str, *, format: Format, lang: str | None = None) -> str | bytes:
    """Draw an instance's process version with its path: current state, visited states, taken edges."""
    inst = engine.get(instance_id)
    history = engine.history(instance_id)
    compiled = engine.compiled(inst.process, inst.version)
    return render(compiled, format=format, lang=lang, instance=inst, history=history)


__all__ = ["DiagramGraph", "EXTENSIONS", "FORMATS", "Format", "RenderError", "diagram", "extract", "render",
           "render_instance"]

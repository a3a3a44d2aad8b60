"""`DiagramGraph` → Graphviz DOT (via the `graphviz` package), and DOT → SVG/PNG through the `dot` program.

Renders only; what the diagram says is `extract.py`'s job. The one home of `graphviz` in flowengine.
Making DOT text needs no Graphviz install; `to_image` does and raises `RenderError` without it.

Looks: the initial state is reached from a filled dot; final states are double octagons; call
states are 3-D boxes naming their child process (`⇢ onsite_service`); timer states are hexagons
marked `◷`; the `*` pseudo-node is a small dashed box. States are filled with the colour of their
first role (a legend cluster names the roles). Timer edges are dashed and orange, with the timer
id and due rule; edges from `*` are grey. Overlay: the current state has a thick red border,
visited states a green one, taken edges are green and thick, edges whose event is allowed now are
bold blue.
"""

from __future__ import annotations

import subprocess
import zlib
from collections.abc import Iterable
from typing import Literal

import graphviz

from flowengine.errors import FlowEngineError
from flowengine.render.extract import DiagramEdge, DiagramGraph, DiagramNode, EdgeKind, NodeKind, text

# fonts-wqy-zenhei covers Chinese; Noto is the usual alternative; Pango falls back along the list.
FONT = "WenQuanYi Zen Hei,Noto Sans CJK SC,sans-serif"
# ⏲ (U+23F2) is in neither WenQuanYi nor DejaVu, so it would print as a box; ◷ (U+25F7) is in DejaVu.
TIMER_SYMBOL = "◷"
CALL_SYMBOL = "⇢"
OUTCOME_SYMBOL = "⇠"

# Pastel fills dark text stays readable on; a role keeps its colour across diagrams unless two
# roles of one diagram hash to the same slot (then the later one moves to the next free slot).
PALETTE = ("#cfe8fc", "#d7f5dd", "#fde2c8", "#e9dcf7", "#fff3b0", "#fcd5e0", "#d0f0ef", "#e6ecc4",
           "#f7d9c4", "#dfe3f0", "#c5cae9", "#ffe0b2")
NO_ROLE_FILL = "#ffffff"
FINAL_FILL = "#eceff1"
CURRENT = "#d84315"
VISITED = "#2e7d32"
TAKEN = "#2e7d32"
ALLOWED = "#1565c0"
TIMER_COLOUR = "#ef6c00"
WILDCARD_COLOUR = "#9e9e9e"
START = "__start__"
ANY = "__any__"

ImageFormat = Literal["svg", "png"]


class RenderError(FlowEngineError):
    """A diagram can't be drawn (e.g. the Graphviz `dot` program is missing)."""


def role_colours(graph: DiagramGraph) -> dict[str, str]:
    """Role id → fill colour, for the roles that states list."""
    used: set[str] = set()
    colours: dict[str, str] = {}
    for role in (r for r in graph.roles if r.on_states):
        slot = zlib.crc32(role.id.encode()) % len(PALETTE)
        for step in range(len(PALETTE)):
            if PALETTE[(slot + step) % len(PALETTE)] not in used:
                slot = (slot + step) % len(PALETTE)
                break
        colours[role.id] = PALETTE[slot]
        used.add(PALETTE[slot])
    return colours


def _label(lines: Iterable[str]) -> str:
    # Backslashes are DOT escapes (\N is the node name, \l a line end): double them. `nohtml` keeps a
    # label like "<tags>" from being emitted as an HTML-like label.
    label: str = graphviz.nohtml("\\n".join(" ".join(line.split()).replace("\\", "\\\\") for line in lines))
    return label


def _node_id(node_id: str) -> str:
    return ANY if node_id == "*" else node_id


def _node_attrs(graph: DiagramGraph, node: DiagramNode, colours: dict[str, str]) -> dict[str, str]:
    fill = colours.get(node.roles[0], NO_ROLE_FILL) if node.roles else NO_ROLE_FILL
    attrs = {"shape": "box", "style": "filled,rounded", "fillcolor": fill}
    lines = [node.label]
    if node.kind is NodeKind.FINAL:
        attrs.update(shape="doubleoctagon", style="filled", fillcolor=FINAL_FILL)
    elif node.kind is NodeKind.CALL:
        attrs.update(shape="box3d", style="filled")
        lines.append(f"{CALL_SYMBOL} {node.child}")
    elif node.kind is NodeKind.TIMER:
        attrs.update(shape="hexagon", style="filled")
        lines = [f"{TIMER_SYMBOL} {node.label}"]
    elif node.kind is NodeKind.ANY:
        attrs.update(style="filled,rounded,dashed", fillcolor="#fafafa", fontcolor="#616161", fontsize="9",
                     color=WILDCARD_COLOUR)
        lines.append(f"({node.description})")
    if node.roles:
        attrs["tooltip"] = ", ".join(graph.role_label(r) for r in node.roles)
    if graph.is_current(node.id):
        attrs.update(color=CURRENT, penwidth="4")
    elif graph.is_visited(node.id):
        attrs.update(color=VISITED, penwidth="2")
    attrs["label"] = _label(lines)
    return attrs


def edge_lines(graph: DiagramGraph, edge: DiagramEdge) -> list[str]:
    """The lines of an edge's label: timer, T-number and event, conditions, roles, outcome."""
    lines = []
    if edge.kind is EdgeKind.TIMER:
        lines.append(f"{TIMER_SYMBOL} {edge.timer}: {edge.due}")
    lines.append(f"{edge.transition} {edge.event_label}" if edge.transition else edge.event_label)
    if edge.condition:
        lines.append(f"[{edge.condition}]")
    lines += [f"[{g}]" for g in edge.guards]
    if edge.outcome:
        lines.append(f"{OUTCOME_SYMBOL} {edge.outcome}")
    automatic = edge.kind is EdgeKind.TIMER or edge.outcome is not None  # the label already says who fires it
    if edge.roles and not (automatic and set(edge.roles) <= {"system"}):
        lines.append("(" + ", ".join(graph.role_label(r) for r in edge.roles) + ")")
    return lines


def _edge_attrs(graph: DiagramGraph, edge: DiagramEdge) -> dict[str, str]:
    attrs: dict[str, str] = {"label": _label(edge_lines(graph, edge))}
    if edge.kind is EdgeKind.TIMER:
        attrs.update(style="dashed", color=TIMER_COLOUR, fontcolor=TIMER_COLOUR)
    elif edge.wildcard:
        attrs.update(color=WILDCARD_COLOUR, fontcolor="#616161")
    if graph.is_allowed(edge):
        attrs.update(style="bold", color=ALLOWED, fontcolor=ALLOWED, penwidth="2", fontname=f"{FONT} Bold")
    if graph.is_taken(edge):
        attrs.update(color=TAKEN, fontcolor=TAKEN, penwidth="3")
    return attrs


def render_dot(graph: DiagramGraph) -> str:
    """The diagram as DOT source text."""
    g = graphviz.Digraph(name=graph.process, graph_attr={
        "label": _label([f"{graph.title} ({graph.process})"]), "labelloc": "t", "fontsize": "18",
        "fontname": FONT, "rankdir": "TB", "nodesep": "0.4", "ranksep": "0.5", "charset": "UTF-8"},
        node_attr={"fontname": FONT, "fontsize": "11"}, edge_attr={"fontname": FONT, "fontsize": "9"})
    colours = role_colours(graph)
    g.node(START, label="", shape="point", width="0.22", style="filled", fillcolor="black")
    for node in graph.nodes:
        g.node(_node_id(node.id), **_node_attrs(graph, node, colours))
    g.edge(START, _node_id(graph.initial), color=TAKEN if graph.highlight.visited else "black")
    for edge in graph.edges:
        g.edge(_node_id(edge.source), _node_id(edge.target), **_edge_attrs(graph, edge))
    for i, note in enumerate(graph.escalations):
        name = f"{note.timer} ({note.label})" if note.label else note.timer
        note_id = f"__note_{i}"
        lines = [f"{TIMER_SYMBOL} {name}: {note.due}"] + ([f"→ {note.effect}"] if note.effect else [])
        g.node(note_id, label=_label(lines), shape="note", style="filled", fillcolor="#fffde7", fontsize="9",
               color=TIMER_COLOUR)
        for sid in note.scope:
            g.edge(note_id, sid, style="dotted", arrowhead="none", color=TIMER_COLOUR, constraint="false")
    if colours:
        with g.subgraph(name="cluster_legend") as legend:
            legend.attr(label=_label([text("roles", graph.lang)]), style="rounded,dashed", color="#9e9e9e",
                        fontsize="10", fontname=FONT)
            for i, (role, colour) in enumerate(colours.items()):
                legend.node(f"__role_{i}", label=_label([graph.role_label(role)]), shape="box",
                            style="filled,rounded", fillcolor=colour, fontsize="9")
    return str(g.source)


def to_image(dot_source: str, fmt: ImageFormat) -> bytes:
    """Lay out DOT text with the `dot` program; `RenderError` if it is missing or fails."""
    try:
        data: bytes = graphviz.Source(dot_source).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise RenderError(f"can't render {fmt}: the Graphviz 'dot' program is not installed "
                          "(apt-get install graphviz, brew install graphviz); Mermaid and DOT text "
                          "work without it") from None
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode("utf-8", "replace").strip() if isinstance(exc.stderr, bytes) else exc.stderr
        raise RenderError(f"Graphviz 'dot' failed to render {fmt}: {detail or exc}") from exc
    return data


__all__ = ["FONT", "PALETTE", "RenderError", "edge_lines", "render_dot", "role_colours", "to_image"]

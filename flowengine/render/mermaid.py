"""`DiagramGraph` → Mermaid `stateDiagram-v2` text. Renders only; what the diagram says is `extract.py`'s job.

Escaping. Mermaid's state grammar (stateDiagram.jison) has no quoting inside labels: a description
in `state "…" as id` ends at the next `"`; a transition label runs from `:` to the end of the line
but stops at `;`, the statement separator (the rest becomes a new state: mermaid-js/mermaid#5410),
and, until mermaid-js/mermaid#7430, at a second `:` (mermaid-js/mermaid#7418); a line containing
`direction TB` anywhere is read as a direction statement, a note ends at the first `end note`, and
`%%` starts a comment. The documented way out is entity codes
(https://mermaid.js.org/syntax/flowchart.html#entity-codes-to-escape-characters): before parsing,
`encodeEntities` in mermaidAPI.ts rewrites every `#name;` / `#123;` into a placeholder free of `#`
and `;`, and after rendering it becomes `&name;` / `&#123;` in the SVG. So `escape` writes every
character the grammar or HTML could misread (`" # ; : < > [ ] { } & % \\ |` and the backtick) as
`#<decimal>;`, and breaks the keywords `direction` and `end note` (matched anywhere, as the lexer
does) by writing their first letter the same way; newlines become spaces. Checked with Mermaid
11.17's parser on every shipped process and on hostile labels (tests/unit/test_render.py).

Ids are the state ids (snake_case), except those the lexer would take for a keyword (`state`,
`note`, `class`, `default…`, `…direction…`), which get a `st_` prefix. Edges can't be styled one by
one in state diagrams, so the overlay marks taken edges `✓` and events allowed now `▶` in their
labels; states get the classes `current` and `visited`.
"""

from __future__ import annotations

import json
import re

from flowengine.render.extract import ANY_STATE, DiagramEdge, DiagramGraph, DiagramNode, EdgeKind, NodeKind

TIMER_SYMBOL = "⏲"
CALL_SYMBOL = "⇢"
TAKEN_MARK = "✓"
ALLOWED_MARK = "▶"

CLASS_DEFS = {
    "initial": "fill:#e3f2fd,stroke:#1565c0",
    "call": "fill:#ede7f6,stroke:#4527a0,stroke-width:2px",
    "timer": "fill:#fff8e1,stroke:#ff8f00,stroke-dasharray:4 3",
    "final": "fill:#eceff1,stroke:#37474f,stroke-width:3px",
    "anystate": "fill:#fafafa,stroke:#9e9e9e,stroke-dasharray:2 2,color:#616161",
    "visited": "fill:#e8f5e9,stroke:#2e7d32,stroke-width:2px",
    "current": "fill:#ffd54f,stroke:#d84315,stroke-width:4px,font-weight:bold",
}

_UNSAFE = re.compile(r'["#;:<>\[\]{}&%\\|`]')
_KEYWORD = re.compile(r"(?i)(d)(irection)|(e)(nd\s+note)")  # `.*direction\s+TB` and `end note` rules
_KEYWORD_IDS = {"state", "note", "class", "classdef", "scale", "end", "as", "hide", "click", "style",
                "acctitle", "accdescr"}


def escape(label: str) -> str:
    """Label text → Mermaid text where every risky character is an entity code (see the module docstring)."""
    flat = " ".join(label.split())  # newlines would end the statement
    flat = _UNSAFE.sub(lambda m: f"#{ord(m.group())};", flat)
    return _KEYWORD.sub(lambda m: (f"#{ord(m.group(1))};{m.group(2)}" if m.group(1)
                                   else f"#{ord(m.group(3))};{m.group(4)}"), flat)


def _mermaid_ids(graph: DiagramGraph) -> dict[str, str]:
    taken = {n.id for n in graph.nodes}
    ids: dict[str, str] = {}
    for n in graph.nodes:
        base = "any_state" if n.id == ANY_STATE else n.id
        if base.lower() in _KEYWORD_IDS or base.lower().startswith("default") or "direction" in base.lower():
            base = f"st_{base.replace('direction', 'dir')}"
        mid = base
        while mid in taken - {n.id} or mid in ids.values():
            mid += "_"
        ids[n.id] = mid
    return ids


def _node_label(node: DiagramNode) -> str:
    if node.kind is NodeKind.CALL and node.child:
        return f"{node.label} {CALL_SYMBOL} {node.child}"
    if node.kind is NodeKind.TIMER:
        return f"{TIMER_SYMBOL} {node.label}"
    if node.kind is NodeKind.ANY:
        return f"{node.label} (*)"
    return node.label


def edge_label(graph: DiagramGraph, edge: DiagramEdge) -> str:
    """The plain text of an edge's label (before escaping)."""
    parts = []
    if graph.is_taken(edge):
        parts.append(TAKEN_MARK)
    if graph.is_allowed(edge):
        parts.append(ALLOWED_MARK)
    if edge.kind is EdgeKind.TIMER:
        parts.append(f"{TIMER_SYMBOL} {edge.timer}: {edge.due} →")
    if edge.transition:
        parts.append(edge.transition)
    parts.append(edge.event_label)
    if edge.condition:
        parts.append(f"[{edge.condition}]")
    parts.extend(f"[{g}]" for g in edge.guards)
    return " ".join(parts)


def _classes(graph: DiagramGraph, node: DiagramNode) -> list[str]:
    classes = []
    if node.kind is NodeKind.ANY:
        classes.append("anystate")
    elif node.kind is NodeKind.FINAL:
        classes.append("final")
    elif node.kind is NodeKind.CALL:
        classes.append("call")
    elif node.kind is NodeKind.TIMER:
        classes.append("timer")
    elif node.initial:
        classes.append("initial")
    if graph.is_visited(node.id) and not graph.is_current(node.id):
        classes.append("visited")
    if graph.is_current(node.id):
        classes.append("current")
    return classes


def render_mermaid(graph: DiagramGraph) -> str:
    """The whole diagram as Mermaid text, ending with a newline."""
    ids = _mermaid_ids(graph)
    title = f"{graph.title} ({graph.process})"
    # Front matter is YAML: a JSON string is valid YAML and needs no Mermaid escaping.
    lines = ["---", f"title: {json.dumps(title, ensure_ascii=False)}", "---", "stateDiagram-v2"]
    lines += [f"    classDef {name} {style}" for name, style in CLASS_DEFS.items()]
    lines += [f'    state "{escape(_node_label(n))}" as {ids[n.id]}' for n in graph.nodes]
    lines.append(f"    [*] --> {ids[graph.initial]}")
    for e in graph.edges:
        lines.append(f"    {ids[e.source]} --> {ids[e.target]} : {escape(edge_label(graph, e))}")
    lines += [f"    {ids[f]} --> [*]" for f in graph.finals]
    # One note per escalation timer, on the first state of its scope (Mermaid notes hang on one state).
    anchored: dict[str, list[str]] = {}
    for note in graph.escalations:
        name = f"{note.timer} ({note.label})" if note.label else note.timer
        body = [f"{TIMER_SYMBOL} {name}: {note.due}"]
        if note.effect:
            body.append(f"→ {note.effect}")
        if len(note.scope) > 1:
            body.append("@ " + ", ".join(graph.node(s).label for s in note.scope))
        anchored.setdefault(note.scope[0], []).extend(body)
    for sid, body in anchored.items():
        lines.append(f"    note right of {ids[sid]}")
        lines += [f"        {escape(line)}" for line in body]
        lines.append("    end note")
    by_class: dict[str, list[str]] = {}
    for n in graph.nodes:
        for c in _classes(graph, n):
            by_class.setdefault(c, []).append(ids[n.id])
    lines += [f"    class {','.join(members)} {name}" for name in CLASS_DEFS if (members := by_class.get(name))]
    return "\n".join(lines) + "\n"


__all__ = ["escape", "render_mermaid"]

"""Process definition (+ optional instance) → `DiagramGraph`: the one model every renderer draws.

This module owns what a diagram *says*: which nodes and edges exist, their labels in one language,
how `*` rows collapse, which timers become edges or notes, and the instance overlay. Renderers
(`mermaid.py`, `dot.py`) only decide how it *looks*. Imports the definition layer and results only;
the graph walks come from `flowengine.definition.graph`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from flowengine.definition.graph import WILDCARD, edges, expand_sources, final_states
from flowengine.definition.schema import Action, Label, ProcessSpec, TimerSpec, TransitionSpec
from flowengine.results import HistoryEntry

ANY_STATE = WILDCARD  # id of the "any state" pseudo-node; state ids are snake_case, so it can't collide
SYSTEM_ROLE = "system"

# Every fixed text a diagram shows, in both languages (the definitions carry their own labels).
TEXTS: Mapping[str, Label] = {
    "any_state": Label(zh="任意状态", en="any state"),
    "any_state_hint": Label(zh="* 所有未结束的状态", en="*: every non-final state"),
    "roles": Label(zh="角色", en="Roles"),
    "escalate": Label(zh="升级", en="escalate"),
    "every": Label(zh="每", en="every"),
}


def text(key: str, lang: str) -> str:
    """A fixed diagram text (`TEXTS`) in `lang`."""
    return TEXTS[key].text(lang)


class NodeKind(StrEnum):
    INITIAL = "initial"  # the initial state when it is a plain state (`DiagramNode.initial` says it otherwise)
    NORMAL = "normal"
    FINAL = "final"
    TIMER = "timer"  # left by its timer's event (or cancel)
    CALL = "call"  # runs a child process; `DiagramNode.child` names it
    ANY = "any"  # the pseudo-node standing for every non-final state (`*` rows)


class EdgeKind(StrEnum):
    TRANSITION = "transition"
    TIMER = "timer"  # fired by a timer with `fire:`; `DiagramEdge.timer` and `.due` say which and when


@dataclass(frozen=True, slots=True)
class DiagramRole:
    id: str
    label: str
    on_states: bool  # some state lists it (these get a fill colour and a legend entry)


@dataclass(frozen=True, slots=True)
class TimerNote:
    """An escalation timer (it changes no state), shown as a note on each state of its scope."""

    timer: str
    due: str  # e.g. "P3D", "PT1H, every PT1H", "due_at - PT2H"
    effect: str  # what the escalation does, e.g. "notify manager; set overdue"
    scope: tuple[str, ...]  # the states it runs in
    label: str | None = None


@dataclass(frozen=True, slots=True)
class DiagramNode:
    id: str  # the state id, or ANY_STATE
    label: str
    kind: NodeKind
    roles: tuple[str, ...] = ()
    initial: bool = False
    child: str | None = None  # call states: the child process
    outcomes: tuple[tuple[str, str], ...] = ()  # call states: (child final state, parent event)
    timers: tuple[str, ...] = ()  # every timer whose scope holds this state
    notes: tuple[TimerNote, ...] = ()  # the escalation timers among them
    description: str | None = None


@dataclass(frozen=True, slots=True)
class DiagramEdge:
    key: str  # unique in the graph; "T3@in_service"-like, stable for one definition
    source: str  # a state id, or ANY_STATE for a collapsed `*` row
    target: str  # equals source for a self-loop (ANY_STATE for a `*` self-loop such as add_note)
    kind: EdgeKind
    event: str
    event_label: str
    roles: tuple[str, ...]
    transition: str | None  # the definition's transition id (T-number), if it has one
    index: int  # position of the row in `transitions`
    condition: str | None = None  # the row's `if`, as text
    guards: tuple[str, ...] = ()
    self_loop: bool = False
    timer: str | None = None  # timer edges: the timer id
    due: str | None = None  # timer edges: the due rule
    outcome: str | None = None  # outcome events of call states: the child final state that fires it

    @property
    def wildcard(self) -> bool:
        return self.source == ANY_STATE


@dataclass(frozen=True, slots=True)
class Highlight:
    """The instance overlay: where it is, where it has been, what it can do now."""

    current: str | None = None
    visited: frozenset[str] = frozenset()
    taken: frozenset[str] = frozenset()  # edge keys
    allowed: frozenset[str] = frozenset()  # event ids that can be fired now


@dataclass(frozen=True, slots=True)
class DiagramGraph:
    process: str
    title: str
    lang: str
    initial: str
    nodes: tuple[DiagramNode, ...]
    edges: tuple[DiagramEdge, ...]
    roles: tuple[DiagramRole, ...]
    highlight: Highlight = field(default_factory=Highlight)

    def node(self, node_id: str) -> DiagramNode:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def role_label(self, role: str) -> str:
        return next((r.label for r in self.roles if r.id == role), role)

    @property
    def finals(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.nodes if n.kind is NodeKind.FINAL)

    @property
    def escalations(self) -> tuple[TimerNote, ...]:
        """Each escalation timer once (a node lists those whose scope holds it)."""
        seen: dict[str, TimerNote] = {}
        for n in self.nodes:
            for note in n.notes:
                seen.setdefault(note.timer, note)
        return tuple(seen.values())

    def is_current(self, node_id: str) -> bool:
        return self.highlight.current == node_id

    def is_visited(self, node_id: str) -> bool:
        return node_id in self.highlight.visited

    def is_taken(self, edge: DiagramEdge) -> bool:
        return edge.key in self.highlight.taken

    def is_allowed(self, edge: DiagramEdge) -> bool:
        """A person can fire this edge's event now (timer edges fire themselves, so never)."""
        current = self.highlight.current
        if current is None or edge.kind is not EdgeKind.TRANSITION or edge.event not in self.highlight.allowed:
            return False
        return edge.source == current or (edge.wildcard and current not in self.finals)


# --- building -----------------------------------------------------------------------------------


def extract(spec: ProcessSpec, lang: str | None = None, *, current: str | None = None,
            history: Sequence[HistoryEntry] = (), allowed: Iterable[str] | None = None) -> DiagramGraph:
    """Build the diagram of `spec` in `lang` (default: the definition's `lang`).

    `*` rows (every non-final state, e.g. `cancel`, `add_note`) become ONE edge each, from the
    `ANY_STATE` pseudo-node, instead of one arrow per state. A timer with `fire:` adds a dashed
    timer edge from each scope state (a system-only row it fires is drawn as that timer edge, not
    twice); an escalation timer is a `TimerNote` on each scope state (drawn once per timer, see
    `DiagramGraph.escalations`).

    With `current` (an instance's state) and `history`, the graph carries a `Highlight`: visited
    states, taken edges, and the events allowed now (`allowed`, default: every event with a row
    from `current`).
    """
    lang = lang or spec.lang
    edge_list = _edges(spec, lang)
    graph = DiagramGraph(spec.process, spec.title.text(lang), lang, spec.initial, _nodes(spec, lang), edge_list,
                         _roles(spec, lang, edge_list))
    if current is None and not history:
        return graph
    return replace(graph, highlight=_highlight(spec, graph, current, history, allowed))


def _nodes(spec: ProcessSpec, lang: str) -> tuple[DiagramNode, ...]:
    nodes: list[DiagramNode] = []
    for sid, state in spec.states.items():
        kind = NodeKind(state.kind)
        if sid == spec.initial and kind is NodeKind.NORMAL:
            kind = NodeKind.INITIAL
        in_scope = [(tid, t) for tid, t in spec.timers.items() if sid in t.scope]
        notes = tuple(_note(tid, t, lang) for tid, t in in_scope if t.escalate is not None)
        call = state.call
        nodes.append(DiagramNode(
            sid, state.label.text(lang), kind, tuple(state.roles), initial=sid == spec.initial,
            child=call.process if call else None,
            outcomes=tuple((final, o.event) for final, o in call.outcomes.items()) if call else (),
            timers=tuple(tid for tid, _ in in_scope), notes=notes, description=state.description))
    if any(WILDCARD in t.from_ for t in spec.transitions):
        nodes.append(DiagramNode(ANY_STATE, text("any_state", lang), NodeKind.ANY,
                                 description=text("any_state_hint", lang)))
    return tuple(nodes)


def _note(tid: str, timer: TimerSpec, lang: str) -> TimerNote:
    return TimerNote(tid, due_text(timer, lang), _effect(timer.escalate or ()), tuple(timer.scope),
                     timer.label.text(lang) if timer.label else None)


def _transition_edge(spec: ProcessSpec, lang: str, t: TransitionSpec, index: int, source: str,
                     target: str, self_loop: bool) -> DiagramEdge:
    tag = t.id or f"#{index}"
    return DiagramEdge(
        key=f"{tag}@{source}", source=source, target=target, kind=EdgeKind.TRANSITION, event=t.event,
        event_label=spec.events[t.event].label.text(lang) if t.event in spec.events else t.event,
        roles=tuple(t.roles), transition=t.id, index=index,
        condition=t.if_.describe() if t.if_ is not None else None,
        guards=tuple(g.describe() for g in t.guard), self_loop=self_loop,
        outcome=_outcome_of(spec, source, t.event))


def _outcome_of(spec: ProcessSpec, source: str, event: str) -> str | None:
    call = spec.states[source].call if source in spec.states else None
    if call is None:
        return None
    return next((final for final, o in call.outcomes.items() if o.event == event), None)


def _edges(spec: ProcessSpec, lang: str) -> tuple[DiagramEdge, ...]:
    by_key: dict[str, DiagramEdge] = {}
    collapsed: set[int] = set()
    for e in edges(spec):
        t = e.transition
        if WILDCARD in t.from_:
            if e.index in collapsed:
                continue
            collapsed.add(e.index)
            loop = t.to is None
            edge = _transition_edge(spec, lang, t, e.index, ANY_STATE, ANY_STATE if loop else e.target, loop)
        else:
            edge = _transition_edge(spec, lang, t, e.index, e.source, e.target, e.self_loop)
        by_key[edge.key] = edge

    extra: list[DiagramEdge] = []
    for tid, timer in spec.timers.items():
        if timer.fire is None:
            continue
        due = due_text(timer, lang)
        for source in timer.scope:
            for index, t in enumerate(spec.transitions):
                if t.event != timer.fire or source not in expand_sources(spec, t.from_):
                    continue
                target = t.to if t.to is not None else source
                if target not in spec.states:
                    continue
                own = by_key.get(f"{t.id or f'#{index}'}@{source}")
                if own is not None and own.kind is EdgeKind.TRANSITION and set(t.roles) <= {SYSTEM_ROLE}:
                    # Nobody but the timer fires this row here: draw it once, as the timer edge.
                    by_key[own.key] = replace(own, kind=EdgeKind.TIMER, timer=tid, due=due)
                    continue
                base = _transition_edge(spec, lang, t, index, source, target, target == source)
                extra.append(replace(base, key=f"{tid}:{base.key}", kind=EdgeKind.TIMER, timer=tid, due=due))
    return (*by_key.values(), *extra)


def _roles(spec: ProcessSpec, lang: str, edge_list: Sequence[DiagramEdge]) -> tuple[DiagramRole, ...]:
    on_states = list(dict.fromkeys(r for s in spec.states.values() for r in s.roles))
    on_edges = [r for r in dict.fromkeys(r for e in edge_list for r in e.roles) if r not in on_states]
    return tuple(DiagramRole(r, spec.roles[r].text(lang) if r in spec.roles else r, r in on_states)
                 for r in (*on_states, *on_edges))


def due_text(timer: TimerSpec, lang: str) -> str:
    """The due rule as written: `P3D`, `due_at - PT2H`, `promised_on + 1 working day`, `PT1H, every PT1H`."""
    if timer.after is not None:
        due = timer.after
    else:
        due = timer.at or ""
        offset = timer.offset
        if offset:
            sign = "-" if offset.startswith("-") else "+"
            due += f" {sign} {offset.lstrip('+-').strip()}"
    if timer.repeat:
        due += f", {text('every', lang)} {timer.repeat}"
    return due


def _effect(actions: Sequence[Action]) -> str:
    parts: list[str] = []
    for a in actions:
        if a.notify is not None:
            parts.append(f"notify {', '.join(a.notify)}")
        elif a.set_ is not None:
            parts.append(f"set {', '.join(a.set_)}")
        elif a.increment is not None:
            parts.append(f"increment {a.increment}")
        elif a.clear is not None:
            parts.append(f"clear {', '.join(a.clear)}")
        elif a.run is not None:
            parts.append(f"run {a.run}")
        elif a.start is not None:
            parts.append(f"start {a.start.process}")
        elif a.outbox is not None:
            parts.append(f"outbox {a.outbox.topic}")
        else:
            parts.append(f"{a.verb} {a.create_form or a.create_new_form or ''}".strip())
    return "; ".join(parts)


# --- instance overlay ---------------------------------------------------------------------------


def _highlight(spec: ProcessSpec, graph: DiagramGraph, current: str | None, history: Sequence[HistoryEntry],
               allowed: Iterable[str] | None) -> Highlight:
    finals = final_states(spec)
    visited: set[str] = set()
    taken: set[str] = set()
    for entry in history:
        visited.add(entry.target)
        if entry.source is None:
            continue
        visited.add(entry.source)
        found = _taken_edges(graph, entry, finals)
        taken.update(e.key for e in found)
    if current is not None:
        visited.add(current)
        if allowed is None:
            allowed = () if current in finals else [
                t.event for t in spec.transitions if current in expand_sources(spec, t.from_)]
    return Highlight(current, frozenset(visited), frozenset(taken), frozenset(allowed or ()))


def _taken_edges(graph: DiagramGraph, entry: HistoryEntry, finals: set[str]) -> list[DiagramEdge]:
    source, target = entry.source, entry.target

    def covers(e: DiagramEdge) -> bool:
        if e.event != entry.event:
            return False
        if e.source == source:
            return e.target == target
        if e.wildcard and source not in finals:
            return e.target == target or (e.target == ANY_STATE and source == target)
        return False

    found = [e for e in graph.edges if covers(e)]
    row = entry.details.get("transition")
    if row and any(e.transition == row for e in found):
        found = [e for e in found if e.transition == row]
    timer = entry.details.get("timer")
    preferred = [e for e in found if (e.timer == timer if entry.kind == "timer" else e.kind is EdgeKind.TRANSITION)]
    return preferred or found


__all__ = ["ANY_STATE", "DiagramEdge", "DiagramGraph", "DiagramNode", "DiagramRole", "EdgeKind", "Highlight",
           "NodeKind", "TEXTS", "TimerNote", "due_text", "extract", "text"]

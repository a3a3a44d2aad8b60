"""Pure walks over a process's state graph; shared by the checks, the compiler and the renderers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from flowengine.definition.schema import ProcessSpec, TransitionSpec

WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str  # equals source for a self-loop
    index: int  # position in `transitions`
    transition: TransitionSpec

    @property
    def self_loop(self) -> bool:
        return self.transition.to is None or self.transition.to == self.source


def final_states(spec: ProcessSpec) -> set[str]:
    return {sid for sid, s in spec.states.items() if s.kind == "final"}


def expand_sources(spec: ProcessSpec, sources: list[str]) -> list[str]:
    """State ids a `from` list names; `*` means every non-final state, in declaration order."""
    if WILDCARD in sources:
        finals = final_states(spec)
        return [sid for sid in spec.states if sid not in finals]
    return [s for s in sources if s in spec.states]


def edges(spec: ProcessSpec) -> Iterator[Edge]:
    for index, t in enumerate(spec.transitions):
        for source in expand_sources(spec, t.from_):
            target = t.to if t.to is not None else source
            if target in spec.states:
                yield Edge(source, target, index, t)


def reachable(spec: ProcessSpec) -> set[str]:
    """States reachable from the initial state."""
    out: dict[str, set[str]] = {}
    for e in edges(spec):
        out.setdefault(e.source, set()).add(e.target)
    seen = {spec.initial}
    todo = [spec.initial]
    while todo:
        for nxt in out.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def can_finish(spec: ProcessSpec) -> set[str]:
    """States from which some final state can be reached (final states included)."""
    back: dict[str, set[str]] = {}
    for e in edges(spec):
        back.setdefault(e.target, set()).add(e.source)
    seen = final_states(spec)
    todo = list(seen)
    while todo:
        for prev in back.get(todo.pop(), ()):
            if prev not in seen:
                seen.add(prev)
                todo.append(prev)
    return seen

"""Flow diagrams: the extracted graph, Mermaid and DOT text, SVG/PNG through Graphviz, the CLI command.

Runs over the fixture processes, a definition with hostile labels, and every shipped process in
`processes/` (both languages). Graphviz tests skip locally without `dot`, but must run under CI=true.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pydot
import pytest
from click.testing import CliRunner

from flowengine import Actor, Engine, ManualClock
from flowengine.cli import main
from flowengine.definition.graph import WILDCARD, edges, expand_sources
from flowengine.definition.loader import Definition, load_directory, load_process_text
from flowengine.render import RenderError, diagram, render, render_instance
from flowengine.render.dot import FONT, TIMER_SYMBOL, render_dot, to_image
from flowengine.render.extract import ANY_STATE, EdgeKind, NodeKind, extract
from flowengine.render.mermaid import escape, render_mermaid
from flowengine.shipped import hooks as shipped_hooks
from tests.conftest import FIXTURES, PROCESSES, ROOT, fixture_hooks

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT and os.environ.get("CI") != "true",
                               reason="Graphviz 'dot' is not installed (scripts/test.sh installs it)")
SHIPPED = sorted(p for p in PROCESSES.glob("*.yaml") if p.name != "_catalog.yaml")
MAIN_PROCESSES = ("remote_service", "onsite_service", "repair_service", "complaint_handling", "order_to_cash")
DOC_DIAGRAMS = ROOT / "docs" / "diagrams"
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
CLERK, ENGINEER = Actor("c1", {"clerk"}), Actor("e1", {"engineer"})

HOSTILE_LABEL = 'Say "hi" [now] : a; b # c <tags> & %% d \\N 中文 direction TB end note {x} |y| `z`'
HOSTILE = f"""
format: 1
process: hostile
title: {{zh: "敌意 \\"标签\\" [测试]", en: "Hostile: \\"labels\\" <test>; #1"}}
initial: note
start_roles: [clerk]
data:
  amount: {{type: int, start: optional}}
  kind: {{type: enum, values: ["a;b", "c]d"], start: optional}}
states:
  note: {{label: {{zh: '{HOSTILE_LABEL}', en: '{HOSTILE_LABEL}'}}, roles: [clerk]}}
  default_route: {{label: {{zh: '默认 "路线"', en: 'Default: "route" [1]'}}}}
  state: {{label: {{zh: '<状态 "x">', en: '<b>State</b>; #2 <i>x</i>'}}}}  # not HTML-like labels
  done: {{label: {{zh: '完成 #3;', en: 'Done #3;'}}, kind: final}}
  cancelled: {{label: {{zh: '已取消 "x"', en: 'Cancelled "x"'}}, kind: final}}
events:
  go: {{label: {{zh: '去 "走" [a]: b; c', en: 'Go "now" [a]: b; c # <d>'}}}}
  finish: {{label: {{zh: '完成 <end>', en: 'Finish: end note; %% x'}}}}
  cancel: {{label: {{zh: '取消 [全部]', en: 'Cancel [all] "*"'}}, payload: {{reason: required}}}}
transitions:
  - {{id: T1, from: note, event: go, to: default_route, if: {{field: amount, gt: 5}}, roles: [clerk]}}
  - {{id: T2, from: note, event: go, to: state, guard: {{field: kind, in: ["a;b", "c]d"]}}, roles: [clerk]}}
  - {{id: T3, from: [default_route, state], event: finish, to: done, roles: [clerk]}}
  - {{id: T4, from: "*", event: cancel, to: cancelled, roles: [clerk]}}
roles:
  clerk: {{zh: '文员 "A"', en: 'Clerk [A]; <b>'}}
"""


@cache
def fixture_definitions() -> dict[str, Definition]:
    return load_directory(FIXTURES, hooks=fixture_hooks().names())


@cache
def shipped_definitions() -> dict[str, Definition]:
    return load_directory(PROCESSES, hooks=shipped_hooks.names())


@cache
def hostile() -> Definition:
    return load_process_text(HOSTILE, hooks=fixture_hooks().names())


def shipped(path: Path) -> Definition:
    return shipped_definitions()[path.stem]


# --- a small Mermaid reader: enough of the stateDiagram-v2 grammar to check what we write -----------

STATE_DECL = re.compile(r'^    state "([^"\n]*)" as ([A-Za-z0-9_]+)$')
EDGE = re.compile(r"^    (\S+) --> (\S+)(?: : (.*))?$")
ENTITY = re.compile(r"#(\d+);")
RAW_FORBIDDEN = set('"[]{}<>;:#%&\\|`')


def decode(text: str) -> str:
    return ENTITY.sub(lambda m: chr(int(m.group(1))), text)


def raw_leftovers(text: str) -> set[str]:
    """Characters that would reach Mermaid's grammar unescaped."""
    return set(ENTITY.sub("", text)) & RAW_FORBIDDEN


def read_mermaid(text: str) -> tuple[dict[str, list[str]], list[tuple[str, str, str]], list[str]]:
    lines = text.splitlines()
    assert lines[0] == "---" and lines[2] == "---" and lines[3] == "stateDiagram-v2", lines[:4]
    states: dict[str, list[str]] = {}
    rels: list[tuple[str, str, str]] = []
    notes: list[str] = []
    in_note = False
    for line in lines[4:]:
        if in_note:
            if line == "    end note":
                in_note = False
            else:
                notes.append(line.strip())
            continue
        if m := STATE_DECL.match(line):
            states.setdefault(m.group(2), []).append(m.group(1))
        elif m := EDGE.match(line):
            rels.append((m.group(1), m.group(2), m.group(3) or ""))
        elif line.startswith("    note right of "):
            in_note = True
        else:
            assert re.match(r"^    (classDef|class) \w", line), f"unexpected Mermaid line: {line!r}"
    assert not in_note, "unterminated note"
    return states, rels, notes


def check_mermaid(definition: Definition, lang: str) -> None:
    spec = definition.spec
    graph = extract(spec, lang)
    text = render_mermaid(graph)
    states, rels, notes = read_mermaid(text)
    # Every state (and the `*` pseudo-node when used) declared exactly once, label round-trips.
    assert all(len(labels) == 1 for labels in states.values()), states
    assert len(states) == len(graph.nodes)
    wildcard_rows = [t for t in spec.transitions if WILDCARD in t.from_]
    assert (ANY_STATE in {n.id for n in graph.nodes}) == bool(wildcard_rows)
    declared = {decode(label[0]) for label in states.values()}
    for sid, state in spec.states.items():
        assert any(state.label.text(lang) in d for d in declared), (sid, declared)
    for labels in states.values():
        assert not raw_leftovers(labels[0]), labels[0]
    # Start and end markers.
    assert sum(1 for r in rels if r[0] == "[*]") == 1
    assert sum(1 for r in rels if r[1] == "[*]") == len([s for s in spec.states.values() if s.kind == "final"])
    # Every transition row appears as many times as it has drawn sources: once for a `*` row.
    transitions = [r for r in rels if "[*]" not in r[:2]]
    assert all(s in states and t in states for s, t, _ in transitions)
    for label in [r[2] for r in transitions] + notes:
        assert not raw_leftovers(label), label
    labels = [decode(r[2]) for r in transitions]
    for index, t in enumerate(spec.transitions):
        expected = 1 if WILDCARD in t.from_ else len(expand_sources(spec, t.from_))
        if t.id:
            drawn = [x for x in labels if re.search(rf"(^| ){re.escape(t.id)} ", x)]
            fired_extra = sum(1 for tm in spec.timers.values() if tm.fire == t.event for s in tm.scope
                              if s in expand_sources(spec, t.from_) and (WILDCARD in t.from_ or
                                                                         not set(t.roles) <= {"system"}))
            assert len(drawn) == expected + fired_extra, (t.id, drawn)
        tag = t.id or f"#{index}"
        own = [e for e in graph.edges if e.index == index and e.key == f"{tag}@{e.source}"]  # not extra timer edges
        assert len(own) == expected, (tag, own)
    assert len(transitions) == len(graph.edges)


def test_extract_collapses_wildcards_and_marks_kinds() -> None:
    spec = fixture_definitions()["ticket"].spec
    graph = extract(spec)
    assert graph.lang == "zh" and graph.title == "工单"  # the definition's lang by default
    kinds = {n.id: n.kind for n in graph.nodes}
    assert kinds == {"open": NodeKind.INITIAL, "assigned": NodeKind.NORMAL, "review": NodeKind.NORMAL,
                     "waiting": NodeKind.TIMER, "delegated": NodeKind.CALL, "closed": NodeKind.FINAL,
                     "cancelled": NodeKind.FINAL, ANY_STATE: NodeKind.ANY}
    assert graph.node("delegated").child == "subtask"
    assert graph.node("delegated").outcomes == (("done", "sub_done"), ("cancelled", "sub_cancelled"))
    wild = [e for e in graph.edges if e.wildcard]
    assert [(e.transition, e.target, e.self_loop) for e in wild] == [("T5", ANY_STATE, True),
                                                                     ("T11", "cancelled", False)]
    # Without collapsing, T11 alone would be 5 edges (every non-final state).
    assert sum(1 for e in edges(spec) if e.transition.id == "T11") == 5
    t2 = next(e for e in graph.edges if e.transition == "T2")
    assert (t2.condition, t2.guards, t2.roles) == ("big", (), ("engineer",))
    t4 = next(e for e in graph.edges if e.transition == "T4")
    assert t4.guards == ("has_engineer", "amount ≤ 5000")
    assert next(e for e in graph.edges if e.transition == "T9").outcome == "done"
    # wake is fired only by the wake_up timer (roles: system): one dashed timer edge, not two.
    wake = [e for e in graph.edges if e.event == "wake"]
    assert [(e.kind, e.timer, e.due, e.source, e.target) for e in wake] == [
        (EdgeKind.TIMER, "wake_up", "PT1H", "waiting", "assigned")]
    deadline = graph.node("assigned").notes
    assert [(n.timer, n.due, n.scope) for n in deadline] == [("deadline", "due_at", ("open", "assigned", "review"))]
    assert "notify manager" in deadline[0].effect
    assert extract(spec, "en").node("open").label == "Open"


def test_timer_edges_and_escalation_notes() -> None:
    graph = extract(fixture_definitions()["chase"].spec, "en")
    timer_edges = [e for e in graph.edges if e.kind is EdgeKind.TIMER]
    # give_up fires `cancel`, which the clerk can also fire: the transition stays and a timer edge is added.
    assert [(e.timer, e.due, e.source, e.target) for e in timer_edges] == [("give_up", "P30D", "waiting", "cancelled")]
    assert any(e.kind is EdgeKind.TRANSITION and e.event == "cancel" for e in graph.edges)
    notes = {n.timer: n.due for n in graph.node("waiting").notes}
    assert notes == {"nag": "PT1H, every PT1H", "sla": "2 working days", "promise": "promised_on + 1 working day"}
    text = render_mermaid(graph)
    assert "waiting --> cancelled : ⏲ give_up#58; P30D → Cancel" in text
    assert "⏲ nag#58; PT1H, every PT1H" in text


@pytest.mark.parametrize("name", ["ticket", "chase", "subtask"])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_mermaid_structure_of_fixtures(name: str, lang: str) -> None:
    check_mermaid(fixture_definitions()[name], lang)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_mermaid_hostile_labels_are_escaped(lang: str) -> None:
    definition = hostile()
    check_mermaid(definition, lang)
    text = render_mermaid(extract(definition.spec, lang))
    states, rels, _ = read_mermaid(text)
    decoded = {mid: decode(labels[0]) for mid, labels in states.items()}
    # Ids that are Mermaid keywords are renamed; labels survive byte for byte.
    assert "note" not in decoded and "state" not in decoded and "default_route" not in decoded
    assert " ".join(HOSTILE_LABEL.split()) in decoded.values()
    for line in text.splitlines()[4:]:
        assert "direction" not in line.lower() and ("end note" not in line or line == "    end note"), line
    event = definition.spec.events["go"].label.text(lang)
    assert [decode(r[2]) for r in rels if "T1" in decode(r[2])] == [f"T1 {event} [amount > 5]"]
    t2 = next(decode(r[2]) for r in rels if decode(r[2]).startswith("T2 "))
    assert t2.endswith("[kind in [a;b, c]d]]")
    assert json.loads(text.splitlines()[1].removeprefix("title: ")).startswith(definition.spec.title.text(lang))


def test_escape_leaves_no_grammar_characters() -> None:
    for label in (HOSTILE_LABEL, "a::b", "#quot;", "x %%{init}%% y", "line\nbreak", "Direction\tLR"):
        out = escape(label)
        assert not raw_leftovers(out) and "\n" not in out and "direction" not in out.lower()
        assert decode(out) == " ".join(label.split())


@pytest.mark.skipif(not os.environ.get("FLOWENGINE_TEST_MERMAID"),
                    reason="set FLOWENGINE_TEST_MERMAID to a directory with node_modules/mermaid and jsdom")
def test_mermaid_parser_accepts_hostile_labels(tmp_path: Path) -> None:
    """The real Mermaid parser (Node), when available: same states, relations and decoded labels."""
    home = Path(os.environ["FLOWENGINE_TEST_MERMAID"])
    graph = extract(hostile().spec, "en")
    source = tmp_path / "hostile.mmd"
    source.write_text(render_mermaid(graph), encoding="utf-8")
    script = home / "flowengine_check.mjs"
    script.write_text(MERMAID_CHECK, encoding="utf-8")
    done = subprocess.run(["node", str(script), str(source)], capture_output=True, text=True, cwd=home, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    parsed = json.loads(done.stdout)
    labels = {n.label for n in graph.nodes}
    assert {d for d in parsed["states"].values() if d} >= {
        label for label in labels if label in parsed["states"].values()}
    assert " ".join(HOSTILE_LABEL.split()) in parsed["states"].values()
    assert len(parsed["relations"]) == len(graph.edges) + 1 + len(graph.finals)


MERMAID_CHECK = """
import { JSDOM } from 'jsdom';
import fs from 'fs';
const dom = new JSDOM('<!DOCTYPE html><body></body>');
globalThis.window = dom.window; globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });
const decode = (s) => (s || '').replace(/ﬂ°°(\\d+)¶ß/g, (_, n) => String.fromCodePoint(+n));
const diag = await mermaid.mermaidAPI.getDiagramFromText(fs.readFileSync(process.argv[2], 'utf8'));
const states = {};
for (const [id, s] of diag.db.getStates()) states[id] = decode((s.descriptions || []).join(' '));
const relations = diag.db.getRelations().map(r => [r.id1, r.id2, decode(r.relationTitle)]);
console.log(JSON.stringify({ states, relations }));
"""


# --- DOT, SVG, PNG ------------------------------------------------------------------------------


def check_dot(definition: Definition, lang: str) -> str:
    graph = extract(definition.spec, lang)
    text = render_dot(graph)
    parsed = pydot.graph_from_dot_data(text)
    assert parsed is not None and len(parsed) == 1
    g = parsed[0]
    names = {n.get_name() for n in g.get_nodes()} | {n.get_name() for s in g.get_subgraphs() for n in s.get_nodes()}
    assert set(definition.spec.states) <= names
    drawn = [(e.get_source(), e.get_destination()) for e in g.get_edges()
             if not str(e.get_source()).startswith("__note")]
    ids = {ANY_STATE: "__any__"}
    assert sorted(drawn) == sorted([("__start__", definition.spec.initial)] + [
        (ids.get(e.source, e.source), ids.get(e.target, e.target)) for e in graph.edges])
    for node in graph.nodes:
        if node.kind is NodeKind.FINAL:
            assert g.get_node(node.id)[0].get("shape") == "doubleoctagon"
    assert g.get_node("__start__")[0].get("shape") == "point"
    return text


def dot_ok(text: str, fmt: str = "svg") -> bytes:
    done = subprocess.run(["dot", f"-T{fmt}"], input=text.encode("utf-8"), capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def svg_texts(svg: str | bytes) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]


def check_svg_labels(definition: Definition, lang: str, svg: str | bytes) -> None:
    texts = svg_texts(svg)
    for sid, state in definition.spec.states.items():
        label = " ".join(state.label.text(lang).split())
        assert label in texts or f"{TIMER_SYMBOL} {label}" in texts, (sid, label)


@needs_dot
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_dot_of_hostile_labels_parses_and_renders(lang: str) -> None:
    text = check_dot(hostile(), lang)
    svg = dot_ok(text)
    check_svg_labels(hostile(), lang, svg)
    assert any(t == "[amount > 5]" for t in svg_texts(svg))
    assert render(hostile(), format="svg", lang=lang).startswith("<?xml")


@needs_dot
@pytest.mark.parametrize("name", ["ticket", "chase", "subtask"])
def test_dot_of_fixtures(name: str) -> None:
    text = check_dot(fixture_definitions()[name], "zh")
    dot_ok(text)
    assert f'fontname="{FONT}"' in text


def test_dot_shapes_and_legend() -> None:
    text = render(fixture_definitions()["ticket"], format="dot", lang="en")
    assert 'delegated [label="Delegated\\n⇢ subtask"' in text and "shape=box3d" in text
    assert 'waiting [label="◷ Waiting"' in text and "shape=hexagon" in text
    assert re.search(r'waiting -> assigned \[label="◷ wake_up: PT1H\\nT7 Wake"[^\]]*style=dashed', text)
    assert re.search(r'assigned -> review \[label="T2 Resolve\\n\[big\]\\n\(Engineer\)"', text)
    assert "subgraph cluster_legend" in text and "label=Roles" in text
    for role in ("Clerk", "Engineer", "Manager"):
        assert re.search(rf"__role_\d \[label={role} ", text), role


@needs_dot
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_shipped_processes_render(path: Path, lang: str) -> None:
    definition = shipped(path)
    check_mermaid(definition, lang)
    text = check_dot(definition, lang)
    check_svg_labels(definition, lang, dot_ok(text))


def test_shipped_processes_exist() -> None:
    assert {p.stem for p in SHIPPED} >= set(MAIN_PROCESSES)


@pytest.mark.parametrize("pid", MAIN_PROCESSES)
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_docs_diagrams_are_current(pid: str, lang: str) -> None:
    """docs/diagrams/ holds the main processes' pictures, and they show every state and transition."""
    svg = DOC_DIAGRAMS / f"{pid}.{lang}.svg"
    redraw = f"draw it again: flowengine render {pid} --format svg --lang {lang} -o docs/diagrams/{svg.name}"
    assert svg.is_file(), redraw
    definition = shipped_definitions()[pid]
    check_svg_labels(definition, lang, svg.read_bytes())
    texts = svg_texts(svg.read_bytes())
    for t in definition.spec.transitions:
        assert not t.id or any(x.startswith(f"{t.id} ") for x in texts), (t.id, redraw)


@needs_dot
def test_png_with_chinese_labels(tmp_path: Path) -> None:
    # A CJK font must be installed, or the Chinese labels below come out as empty boxes.
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=False).stdout
    assert fonts.strip(), "no Chinese font installed (scripts/test.sh installs fonts-wqy-zenhei)"
    png = render(fixture_definitions()["ticket"], format="png", lang="zh")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    (tmp_path / "ticket.zh.png").write_bytes(png)


def test_missing_dot_is_a_render_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RenderError, match="'dot' program is not installed"):
        to_image("digraph { a }", "svg")
    # Text formats need no Graphviz.
    assert render(fixture_definitions()["ticket"], format="dot").startswith("digraph ticket {")
    assert render(fixture_definitions()["ticket"], format="mermaid").startswith("---\n")


# --- instance overlay ---------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = Engine(f"sqlite:///{tmp_path / 'flow.db'}", processes=FIXTURES, hooks=fixture_hooks(),
               clock=ManualClock(T0))
    yield e
    e.dispose()


def test_overlay_marks_current_state_and_taken_edges(engine: Engine) -> None:
    tid = engine.start("ticket", data={"customer": "A"}, actor=CLERK, instance_id="TK-1").id
    engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK)
    engine.fire(tid, "park", actor=ENGINEER)
    inst = engine.get(tid)
    graph = diagram(engine.compiled("ticket"), instance=inst, history=engine.history(tid))
    assert graph.highlight.current == "waiting"
    assert graph.highlight.visited == {"open", "assigned", "waiting"}
    assert graph.highlight.taken == {"T1@open", "T6@assigned"}
    allowed = {e.key for e in graph.edges if graph.is_allowed(e)}
    assert allowed == {"T5@*", "T11@*"}  # wake is the timer's, not a person's

    mermaid = render_instance(engine, tid, format="mermaid")
    assert isinstance(mermaid, str)
    assert "    class waiting current" in mermaid and re.search(r"class open,assigned visited", mermaid)
    assert "open --> assigned : ✓ T1 分派" in mermaid and "assigned --> waiting : ✓ T6 挂起" in mermaid
    assert "any_state --> cancelled : ▶ T11 取消" in mermaid
    assert "assigned --> closed : T3 解决" in mermaid  # not taken

    dot = render_instance(engine, tid, format="dot", lang="en")
    assert isinstance(dot, str)
    graphs = pydot.graph_from_dot_data(dot)
    assert graphs is not None
    g = graphs[0]
    assert g.get_node("waiting")[0].get("penwidth") == "4"
    assert g.get_node("assigned")[0].get("penwidth") == "2"
    assert g.get_node("review")[0].get("penwidth") is None
    taken = {(e.get_source(), e.get_destination()) for e in g.get_edges() if e.get("penwidth") == "3"}
    assert taken == {("open", "assigned"), ("assigned", "waiting")}
    bold = {(e.get_source(), e.get_destination()) for e in g.get_edges() if e.get("style") == "bold"}
    assert bold == {("__any__", "__any__"), ("__any__", "cancelled")}


def test_overlay_follows_a_timer_and_a_wildcard_row(engine: Engine) -> None:
    tid = engine.start("ticket", data={"customer": "A"}, actor=CLERK).id
    engine.fire(tid, "assign", data={"engineer": "e1"}, actor=CLERK)
    engine.fire(tid, "park", actor=ENGINEER)
    engine.tick(T0 + dt.timedelta(hours=2))  # wake_up fires `wake`: waiting → assigned
    engine.fire(tid, "note", data={"note": "n"}, actor=CLERK)
    engine.fire(tid, "cancel", data={"reason": "r"}, actor=CLERK)
    history = engine.history(tid)
    assert [h.kind for h in history][3] == "timer"
    graph = diagram(engine.compiled("ticket"), instance=engine.get(tid), history=history)
    assert graph.highlight.taken == {"T1@open", "T6@assigned", "T7@waiting", "T5@*", "T11@*"}
    assert graph.highlight.current == "cancelled" and not any(graph.is_allowed(e) for e in graph.edges)


# --- CLI ----------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    base = ["--db", f"sqlite:///{tmp_path / 'cli.db'}", "--processes", str(FIXTURES), "--hooks",
            "tests.fixture_hooks_module"]

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(main, [*base, *args], catch_exceptions=False, env={"FLOWENGINE_LANG": None})
    return invoke


def test_cli_prints_text_formats(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("render", "ticket")
    assert result.exit_code == 0, result.output
    assert result.output.startswith('---\ntitle: "工单 (ticket)"') and "stateDiagram-v2" in result.output
    result = cli("--lang", "en", "render", "ticket", "--format", "dot")  # the global --lang counts
    assert result.exit_code == 0, result.output
    assert 'label="Ticket (ticket)"' in result.output
    result = cli("--lang", "en", "render", "ticket", "--lang", "zh")
    assert '"工单 (ticket)"' in result.output


@needs_dot
def test_cli_writes_files(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    result = cli("render", "--all", "-o", str(out), "--format", "svg")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [f"{p}.{lang}.svg" for p in ("chase", "subtask", "ticket")
                                                    for lang in ("en", "zh")]
    check_svg_labels(fixture_definitions()["ticket"], "en", (out / "ticket.en.svg").read_bytes())
    result = cli("render", "--all", "-o", str(out / "dot"), "--format", "dot", "--lang", "en")
    assert sorted(p.name for p in (out / "dot").iterdir()) == ["chase.en.dot", "subtask.en.dot", "ticket.en.dot"]
    result = cli("render", "ticket", "--format", "png", "-o", str(tmp_path / "t.png"))
    assert result.exit_code == 0 and (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_renders_an_instance(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("start", "ticket", "--id", "TK-9", "--role", "clerk", "--data", '{"customer": "A"}').exit_code == 0
    assert cli("fire", "TK-9", "assign", "--role", "clerk", "--data", '{"engineer": "e1"}').exit_code == 0
    result = cli("render", "--instance", "TK-9")
    assert result.exit_code == 0, result.output
    assert "class assigned current" in result.output and "✓ T1" in result.output
    result = cli("render", "chase", "--instance", "TK-9")
    assert result.exit_code == 2 and "belongs to 'ticket'" in result.output


@pytest.mark.parametrize(("args", "code", "message"), [
    (["render"], 2, "name a PROCESS"),
    (["render", "ticket", "--format", "svg"], 2, "-o FILE"),
    (["render", "--all"], 2, "--all needs -o DIR"),
    (["render", "--all", "ticket", "-o", "x"], 2, "give no PROCESS"),
    (["render", "nope"], 3, "unknown process 'nope'"),
    (["render", "ticket", "--format", "gif"], 2, "Invalid value for '--format'"),
])
def test_cli_usage_errors(cli, args: list[str], code: int, message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert message in result.output

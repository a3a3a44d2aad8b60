"""Every rejected class of mistake has a file in tests/bad/ whose first line says where and what."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from flowengine.definition.checks import HookNames
from flowengine.definition.loader import load_process_text
from flowengine.definition.yamlsafe import read_yaml
from flowengine.errors import DefinitionError

BAD = sorted((Path(__file__).parent.parent / "bad").glob("*.yaml"))
HOOKS = HookNames(frozenset({"has_engineer"}), frozenset({"stamp"}))
EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$")


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_file_is_rejected_at_its_location(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    match = EXPECT.match(text.splitlines()[0])
    assert match, f"{path.name} needs a '# expect: LINE:COL: message' header"
    line, col, message = int(match[1]), int(match[2]), match[3]
    with pytest.raises(DefinitionError) as info:
        load_process_text(text, path, hooks=HOOKS)
    found = [(p.line, p.col, p.message) for p in info.value.problems]
    assert any(p[:2] == (line, col) and message in p[2] for p in found), found
    assert all(p.file == path for p in info.value.problems)
    assert str(path) in str(info.value)


def test_the_corpus_covers_every_rejected_class() -> None:
    names = {p.stem for p in BAD}
    assert {"syntax_error", "duplicate_key", "unknown_key", "yes_no_boolean", "wrong_type", "unknown_target",
            "event_from_final", "unreachable_state", "no_way_to_final", "duplicate_transition_id", "unknown_hook",
            "undeclared_field", "alias_bomb", "python_tag"} <= names


def test_all_problems_of_a_file_are_reported_at_once() -> None:
    text = (Path(__file__).parent.parent / "bad" / "unknown_hook.yaml").read_text()
    text = text.replace("roles: [clerk], guard", "roles: [clark], guard")
    with pytest.raises(DefinitionError) as info:
        load_process_text(text, hooks=HOOKS)
    messages = " | ".join(p.message for p in info.value.problems)
    assert "unknown role 'clark'" in messages and "unknown condition or guard 'credit_okk'" in messages


def test_oversized_file_is_refused_before_parsing() -> None:
    with pytest.raises(DefinitionError, match="larger than"):
        read_yaml("a: " + "x" * 2_000_000)


def test_alias_bomb_is_refused_fast() -> None:
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    started = time.perf_counter()
    with pytest.raises(DefinitionError, match="alias bomb"):
        read_yaml(bomb)
    assert time.perf_counter() - started < 1  # sized over the node graph before anything is built


def test_recursive_alias_is_refused_where_it_starts() -> None:
    with pytest.raises(DefinitionError, match=r"1:4: .*recursive structure"):
        read_yaml("a: &x [1, *x]\n")


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(DefinitionError, match="nest"):
        read_yaml("a: " + "[" * 200 + "]" * 200)


def test_unknown_hook_suggests_a_registered_name() -> None:
    text = (Path(__file__).parent.parent / "bad" / "unknown_hook.yaml").read_text()
    with pytest.raises(DefinitionError) as info:
        load_process_text(text.replace("credit_okk", "has_enginer"), hooks=HOOKS)
    assert any(p.hint and "did you mean 'has_engineer'" in p.hint for p in info.value.problems)


def test_quoted_yes_is_text_and_true_is_a_boolean() -> None:
    doc = read_yaml("a: 'yes'\nb: true\nc: 2026-03-02\n")
    assert doc.data == {"a": "yes", "b": True, "c": "2026-03-02"}

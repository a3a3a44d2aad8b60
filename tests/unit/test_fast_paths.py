"""The hot path's specialised forms against the general functions they stand in for.

Each fast form (`Effects` built attribute by attribute, `iso_text`, `reader`, `coercer`, the checks a
passing guard shares) must give exactly what the general one gives; hypothesis looks for a difference.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowengine import Actor
from flowengine.calendar import WorkingCalendar
from flowengine.clock import iso_text
from flowengine.compile import compile_process
from flowengine.datatypes import Invalid, coerce, coercer, reader, typed
from flowengine.definition.loader import load_directory
from flowengine.definition.schema import FieldSpec
from flowengine.effects import Effects
from flowengine.hooks import ActionContext, GuardContext, Outbox
from flowengine.results import GuardCheck
from flowengine.runtime import Snapshot, decide
from flowengine.store.tables import read_instant, sqlite_text
from tests.conftest import FIXTURES, fixture_hooks

ZONES = [ZoneInfo(z) for z in ("Asia/Shanghai", "America/New_York", "Europe/London", "Asia/Kolkata",
                              "Australia/Lord_Howe", "UTC", "America/St_Johns")]
SHANGHAI = ZONES[0]
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)


class Services:
    calendar = WorkingCalendar()
    instances = None

    def next_number(self, prefix: str, year: int, *, gap_free: bool) -> int:
        return 7


@pytest.fixture(scope="module")
def compiled() -> Any:
    hooks = fixture_hooks()
    return compile_process(load_directory(FIXTURES, hooks=hooks.names())["ticket"], hooks, 1)


# --- the one context of a decision ---------------------------------------------------------------

def test_effects_sets_every_context_field_as_the_constructors_would(compiled: Any) -> None:
    services, actor, data = Services(), Actor("m1", {"manager"}), {"customer": "C-1"}
    effects = Effects(compiled.constants, "t-1", "review", "c1", "approve", data, {"x": 1}, actor, T0, services,
                      frozenset({"manager"}), "closed")
    common = dict(instance_id="t-1", process="ticket", version=1, state="review", event="approve", data=data,
                  payload={"x": 1}, actor=actor, now=T0, params=compiled.spec.parameters, fields=compiled.fields,
                  tz=compiled.tz, calendar=services.calendar, instances=None)
    for cls, expected in ((GuardContext, GuardContext(**common)),
                          (ActionContext, ActionContext(**common, target="closed", outbox=Outbox(compiled.tz)))):
        names = [f.name for f in dataclasses.fields(cls)]
        assert {n: getattr(effects, n) for n in names} == {n: getattr(expected, n) for n in names}, cls
    assert isinstance(effects, GuardContext) and isinstance(effects, ActionContext)
    assert effects.data is data  # actions change the decision's own dict, and later conditions see it


def test_effects_now_text_is_the_stored_form(compiled: Any) -> None:
    effects = Effects(compiled.constants, "t-1", "open", None, "note", {}, {}, Actor("c1", {"clerk"}),
                      T0, Services(), frozenset(), "open")
    assert effects.now_text() == "2026-03-02T09:00:00+08:00"


def test_guard_checks_of_a_fire_name_each_guard_in_order(compiled: Any) -> None:
    snap = Snapshot("t-1", "ticket", 1, "review", "running", {"customer": "C", "amount": "10", "engineer": "e"},
                    3, None, "c1", T0)
    decision = decide(compiled, snap, "approve", {}, Actor("m1", {"manager"}), T0, Services())
    assert list(decision.guards) == [GuardCheck("has_engineer", True), GuardCheck("amount ≤ 5000", True)]
    assert decision.data["note"] == "stamped by m1" and decision.data["approved"] is True
    assert decision.data["closed_at"] == "2026-03-02T09:00:00+08:00"
    assert decision.status == "completed" and decision.cancel_timers == frozenset({"deadline"})


# --- instants as stored ---------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(moment=st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                           timezones=st.sampled_from([dt.UTC, *ZONES])),
       zone=st.sampled_from(ZONES))
def test_iso_text_is_isoformat_in_the_zone(moment: dt.datetime, zone: ZoneInfo) -> None:
    assert iso_text(moment, zone) == moment.astimezone(zone).isoformat()


@pytest.mark.parametrize("moment", [
    dt.datetime(1900, 1, 1, tzinfo=dt.UTC),  # local mean time: an offset with seconds
    dt.datetime(1988, 4, 17, 18, 0, 0, 1, tzinfo=dt.UTC),  # Shanghai's summer time, one microsecond
    dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC),
])
def test_iso_text_edge_instants(moment: dt.datetime) -> None:
    assert iso_text(moment, SHANGHAI) == moment.astimezone(SHANGHAI).isoformat()


# --- typed reads and coercion, specialised per field ----------------------------------------------

SPECS = [FieldSpec(type=t) for t in ("string", "text", "bool", "int", "decimal", "date", "datetime", "duration")]
SPECS += [FieldSpec(type="enum", values=["low", "high"]), FieldSpec(type="decimal", default="1.5"),
          FieldSpec(type="int", default=3), FieldSpec(type="list", items=FieldSpec(type="int"))]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
                   st.sampled_from(["low", "high", "12.50", "1e3", "2026-03-02", "2026-03-02T09:00:00+08:00",
                                    "PT5H", "P1D", "日本", "abc\ud800", " 7 ", "NaN", "Infinity"]),
                   st.decimals(allow_nan=False, allow_infinity=False), st.lists(st.integers(), max_size=3))


@settings(max_examples=400, deadline=None)
@given(spec=st.sampled_from([None, *SPECS]), value=VALUES)
def test_reader_reads_as_typed(spec: FieldSpec | None, value: Any) -> None:
    expected, got = typed(spec, value, SHANGHAI), reader(spec, SHANGHAI)(value)
    assert repr(got) == repr(expected) and type(got) is type(expected)  # repr: Decimal('NaN') != itself


def _outcome(fn: Any, value: Any) -> Any:
    try:
        result = fn(value)
    except Invalid as exc:
        return ("invalid", str(exc))
    return ("ok", result, type(result))


@settings(max_examples=400, deadline=None)
@given(spec=st.sampled_from(SPECS), value=VALUES)
def test_coercer_coerces_as_coerce(spec: FieldSpec, value: Any) -> None:
    assert _outcome(coercer(spec, SHANGHAI, "f"), value) == _outcome(lambda v: coerce(spec, v, SHANGHAI, "f"),
                                                                      value)


def test_decimal_reader_keeps_unparsable_text() -> None:
    read = reader(FieldSpec(type="decimal"), SHANGHAI)
    assert read("12.50") == Decimal("12.50") and read("lots") == "lots"



# --- instants in the store ------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(moment=st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)))
def test_sqlite_text_is_what_sqlalchemy_stores_and_reads_back(moment: dt.datetime) -> None:
    utc = moment.replace(tzinfo=dt.UTC)
    text = sqlite_text(utc)
    assert text == moment.isoformat(sep=" ", timespec="microseconds")
    back = read_instant(text)
    assert back == utc and back.tzinfo is dt.UTC


@pytest.mark.parametrize(("stored", "expected"), [
    ("2026-03-02 01:00:00", dt.datetime(2026, 3, 2, 1, tzinfo=dt.UTC)),
    ("2026-03-02T09:00:00+08:00", dt.datetime(2026, 3, 2, 1, tzinfo=dt.UTC)),  # text with its own offset
    (dt.datetime(2026, 3, 2, 1), dt.datetime(2026, 3, 2, 1, tzinfo=dt.UTC)),  # a driver's naive datetime
    (dt.datetime(2026, 3, 2, 9, tzinfo=SHANGHAI), dt.datetime(2026, 3, 2, 1, tzinfo=dt.UTC)),
])
def test_read_instant_any_stored_form(stored: Any, expected: dt.datetime) -> None:
    got = read_instant(stored)
    assert got == expected and got.utcoffset() == dt.timedelta(0)


def test_read_instant_refuses_what_is_not_a_time() -> None:
    with pytest.raises(ValueError):
        read_instant("not a time")


def test_compiling_with_an_action_hook_missing_is_a_definition_error() -> None:
    # A stored version compiled against a registry that no longer has its hook: refused, never a KeyError.
    from flowengine import DefinitionError, HookRegistry

    with_hooks = fixture_hooks()
    definition = load_directory(FIXTURES, hooks=with_hooks.names())["ticket"]
    without_stamp = HookRegistry("partial")
    without_stamp.guard(with_hooks.predicate("has_engineer"))
    with pytest.raises(DefinitionError, match="action 'stamp' is not registered"):
        compile_process(definition, without_stamp, 1)

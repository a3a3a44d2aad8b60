from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowengine.clock import (
    Clock,
    ManualClock,
    NaiveDatetimeError,
    NonMonotonicTime,
    SystemClock,
    UnknownTimeZone,
    parse_instant,
    zone,
)

SH = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 3, 2, 9, 0, tzinfo=SH)


def test_system_clock_is_aware_utc_and_current() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    after = datetime.now(UTC)
    assert now.utcoffset() == timedelta(0)
    assert before <= now <= after


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(ManualClock(START), Clock)


def test_manual_clock_starts_where_told_and_moves_forward() -> None:
    clock = ManualClock(START)
    assert clock.now() == START
    clock.advance(timedelta(hours=2, minutes=30))
    assert clock.now() == datetime(2026, 3, 2, 11, 30, tzinfo=SH)
    clock.set(datetime(2026, 3, 5, 0, 0, tzinfo=UTC))
    assert clock.now() == datetime(2026, 3, 5, 8, 0, tzinfo=SH)


def test_manual_clock_allows_standing_still() -> None:
    clock = ManualClock(START)
    clock.advance(timedelta(0))
    clock.set(START)
    # The same instant written in another zone is not going backwards.
    clock.set(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    assert clock.now() == START


def test_manual_clock_refuses_to_go_backwards() -> None:
    clock = ManualClock(START)
    with pytest.raises(NonMonotonicTime, match="Time must be monotonic"):
        clock.set(START - timedelta(microseconds=1))
    with pytest.raises(NonMonotonicTime, match="Time must be monotonic"):
        clock.advance(timedelta(seconds=-1))
    assert clock.now() == START


def test_manual_clock_refuses_naive_datetimes() -> None:
    with pytest.raises(NaiveDatetimeError, match="no time zone"):
        ManualClock(datetime(2026, 3, 2, 9, 0))
    clock = ManualClock(START)
    with pytest.raises(NaiveDatetimeError):
        clock.set(datetime(2026, 3, 3, 9, 0))
    assert clock.now() == START


def test_non_monotonic_and_naive_are_value_errors() -> None:
    assert issubclass(NonMonotonicTime, ValueError)
    assert issubclass(NaiveDatetimeError, ValueError)


@given(st.lists(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)), max_size=20))
def test_manual_clock_never_decreases(steps: list[timedelta]) -> None:
    clock = ManualClock(START)
    seen = [clock.now()]
    for step in steps:
        clock.advance(step)
        seen.append(clock.now())
    assert seen == sorted(seen)
    assert seen[-1] - START == sum(steps, timedelta(0))


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-03-02T09:00", datetime(2026, 3, 2, 9, 0, tzinfo=SH)),
    ("2026-03-02T09:00:30", datetime(2026, 3, 2, 9, 0, 30, tzinfo=SH)),
    ("2026-03-02", datetime(2026, 3, 2, 0, 0, tzinfo=SH)),
    ("  2026-03-02T09:00  ", datetime(2026, 3, 2, 9, 0, tzinfo=SH)),
    ("2026-03-02T09:00+08:00", datetime(2026, 3, 2, 9, 0, tzinfo=SH)),
    ("2026-03-02T01:00Z", datetime(2026, 3, 2, 9, 0, tzinfo=SH)),
    ("2026-03-02T09:00-05:00", datetime(2026, 3, 2, 22, 0, tzinfo=SH)),
])
def test_parse_instant(text: str, expected: datetime) -> None:
    parsed = parse_instant(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_parse_instant_keeps_a_written_offset() -> None:
    assert parse_instant("2026-03-02T09:00-05:00").utcoffset() == timedelta(hours=-5)


def test_parse_instant_reads_missing_offset_in_the_given_zone() -> None:
    assert parse_instant("2026-03-02T09:00", tz="UTC") == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    # Berlin is on winter time in March before the 29th: +01:00.
    assert parse_instant("2026-03-02", tz="Europe/Berlin") == datetime(
        2026, 3, 1, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "   ", "tomorrow", "2026-13-01", "2026-02-30T09:00",
                                  "2026-03-02T25:00", "09:00", "2026/03/02"])
def test_parse_instant_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not an ISO 8601 instant"):
        parse_instant(text)


def test_unknown_zone_is_a_clear_value_error() -> None:
    with pytest.raises(UnknownTimeZone, match="unknown time zone 'Mars/Olympus'"):
        parse_instant("2026-03-02", tz="Mars/Olympus")
    with pytest.raises(ValueError):
        zone("")
    assert zone("Asia/Shanghai") == SH

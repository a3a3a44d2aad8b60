from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowengine.calendar import WorkingCalendar
from flowengine.clock import NaiveDatetimeError
from flowengine.durations import Duration, parse_duration

SH = ZoneInfo("Asia/Shanghai")
CN = WorkingCalendar()


def sh(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


@pytest.mark.parametrize(("text", "expected", "canonical"), [
    ("PT1H", Duration(seconds=3600), "PT1H"),
    ("PT30M", Duration(seconds=1800), "PT30M"),
    ("PT90M", Duration(seconds=5400), "PT1H30M"),
    ("PT45S", Duration(seconds=45), "PT45S"),
    ("P3D", Duration(days=3), "P3D"),
    ("P1W", Duration(days=7), "P7D"),
    ("P1DT2H", Duration(days=1, seconds=7200), "P1DT2H"),
    ("-PT2H", Duration(seconds=-7200), "-PT2H"),
    ("+P3D", Duration(days=3), "P3D"),
    ("P1M", Duration(months=1), "P1M"),
    ("P1Y", Duration(months=12), "P1Y"),
    ("P1Y2M3DT4H5M6S", Duration(months=14, days=3, seconds=4 * 3600 + 5 * 60 + 6), "P1Y2M3DT4H5M6S"),
    ("P0D", Duration(), "PT0S"),
    ("  PT1H ", Duration(seconds=3600), "PT1H"),
    ("3 working days", Duration(working_days=3), "3 working days"),
    ("1 working day", Duration(working_days=1), "1 working day"),
    ("-2 working days", Duration(working_days=-2), "-2 working days"),
    ("+4 Working Hours", Duration(working_hours=4), "4 working hours"),
    ("1 working hour", Duration(working_hours=1), "1 working hour"),
    ("1 working hours", Duration(working_hours=1), "1 working hour"),
])
def test_parse_and_canonical_text(text: str, expected: Duration, canonical: str) -> None:
    parsed = parse_duration(text)
    assert parsed == expected
    assert str(parsed) == canonical
    assert parse_duration(str(parsed)) == parsed


@pytest.mark.parametrize("text", [
    "", "P", "PT", "P1DT", "1P", "1H", "PT1H30", "P-1D", "P1H", "PT1D", "P1M1Y",
    "pt1h", "1 day", "2 days", "2 working weeks", "working days", "two working days",
    "2.5 working days", "-P-1D", "P1D2H",
])
def test_bad_durations_are_rejected_with_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="accepted: ISO 8601 durations") as info:
        parse_duration(text)
    assert "working days" in str(info.value)


def test_fractions_get_a_specific_hint() -> None:
    with pytest.raises(ValueError, match="fractions aren't accepted"):
        parse_duration("PT1.5H")


def test_duration_refuses_mixed_signs_and_mixed_kinds() -> None:
    with pytest.raises(ValueError, match="one sign"):
        Duration(days=1, seconds=-60)
    with pytest.raises(ValueError, match="not a mix"):
        Duration(days=1, working_days=1)
    with pytest.raises(ValueError, match="not a mix"):
        Duration(working_days=1, working_hours=1)


def test_negation() -> None:
    assert -parse_duration("P1DT2H") == parse_duration("-P1DT2H")
    assert str(-parse_duration("2 working days")) == "-2 working days"


# --- apply --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "start", "expected"), [
    ("PT1H", sh(2026, 3, 2, 9), sh(2026, 3, 2, 10)),
    ("PT30M", sh(2026, 3, 2, 23, 45), sh(2026, 3, 3, 0, 15)),
    ("-PT2H", sh(2026, 3, 2, 1), sh(2026, 3, 1, 23)),
    ("P3D", sh(2026, 3, 6, 9), sh(2026, 3, 9, 9)),  # calendar days ignore the weekend
    ("P1W", sh(2026, 9, 30, 9), sh(2026, 10, 7, 9)),
    ("P1DT2H", sh(2026, 3, 2, 9), sh(2026, 3, 3, 11)),
    ("P1M", sh(2026, 1, 31, 9), sh(2026, 2, 28, 9)),
    ("P1M", sh(2028, 1, 31, 9), sh(2028, 2, 29, 9)),  # leap year
    ("-P1M", sh(2026, 3, 31, 9), sh(2026, 2, 28, 9)),
    ("P1Y", sh(2028, 2, 29, 9), sh(2029, 2, 28, 9)),
    ("P13M", sh(2026, 12, 15, 9), sh(2028, 1, 15, 9)),
    ("2 working days", sh(2026, 9, 30, 10), sh(2026, 10, 9, 10)),
    ("-1 working day", sh(2026, 10, 8, 10), sh(2026, 9, 30, 10)),
    ("4 working hours", sh(2026, 3, 6, 16), sh(2026, 3, 9, 11)),
    ("-3 working hours", sh(2026, 3, 9, 10), sh(2026, 3, 6, 16)),
])
def test_apply(text: str, start: datetime, expected: datetime) -> None:
    assert parse_duration(text).apply(start, CN) == expected


def test_apply_works_in_the_calendar_zone() -> None:
    # 20:00 UTC Jan 30 is 04:00 Jan 31 in Shanghai, so P1M clamps to Feb 28 there (not Feb 28 UTC+0 math).
    result = parse_duration("P1M").apply(datetime(2026, 1, 30, 20, 0, tzinfo=UTC), CN)
    assert result == sh(2026, 2, 28, 4)
    assert result.utcoffset() == timedelta(hours=8)


def test_one_day_is_24_hours_in_shanghai() -> None:
    start = sh(2026, 3, 28, 12)
    later = parse_duration("P1D").apply(start, CN)
    assert later == sh(2026, 3, 29, 12)
    assert later.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=24)


def test_days_are_wall_clock_and_hours_elapsed_in_a_dst_zone() -> None:
    berlin = WorkingCalendar("Europe/Berlin", base="none")
    start = datetime(2026, 3, 28, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # DST starts on the 29th
    one_day = parse_duration("P1D").apply(start, berlin)
    assert one_day == datetime(2026, 3, 29, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    # Same-tzinfo subtraction in Python is wall-clock; compare in UTC for elapsed time.
    assert one_day.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)
    assert parse_duration("PT24H").apply(start, berlin) == datetime(2026, 3, 29, 13, 0,
                                                                    tzinfo=ZoneInfo("Europe/Berlin"))


def test_apply_refuses_naive_datetimes() -> None:
    with pytest.raises(NaiveDatetimeError):
        parse_duration("PT1H").apply(datetime(2026, 3, 2, 9), CN)


# --- properties ---------------------------------------------------------------------------------


def _durations() -> st.SearchStrategy[Duration]:
    n = st.integers(min_value=0, max_value=10_000)
    sign = st.sampled_from([1, -1])
    calendar_time = st.builds(lambda s, m, d, sec: Duration(months=s * m, days=s * d, seconds=s * sec),
                              sign, n, n, st.integers(min_value=0, max_value=10**7))
    working = st.one_of(st.builds(lambda k: Duration(working_days=k), st.integers(-500, 500)),
                        st.builds(lambda k: Duration(working_hours=k), st.integers(-500, 500)))
    return st.one_of(calendar_time, working)


@given(_durations())
def test_canonical_text_round_trips(duration: Duration) -> None:
    assert parse_duration(str(duration)) == duration


@settings(deadline=None)
@given(st.datetimes(min_value=datetime(2004, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(SH)),
       st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=10**6))
def test_days_and_seconds_undo_each_other(t: datetime, days: int, seconds: int) -> None:
    forward = Duration(days=days, seconds=seconds)
    assert (-forward).apply(forward.apply(t, CN), CN) == t
    assert forward.apply(t, CN).astimezone(UTC) - t.astimezone(UTC) == timedelta(days=days, seconds=seconds)

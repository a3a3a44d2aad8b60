from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowengine.calendar import WorkingCalendar
from flowengine.clock import NaiveDatetimeError
from flowengine.errors import DefinitionError

SH = ZoneInfo("Asia/Shanghai")
CN = WorkingCalendar()
PLAIN = WorkingCalendar(base="none")


def sh(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


# --- working days -------------------------------------------------------------------------------


def test_five_working_days_skip_a_weekend() -> None:
    # Wed 2026-03-04 → Thu, Fri, Mon, Tue, Wed.
    assert CN.add_working_days(sh(2026, 3, 4, 10, 15), 5) == sh(2026, 3, 11, 10, 15)
    assert PLAIN.add_working_days(sh(2026, 3, 4, 10, 15), 5) == sh(2026, 3, 11, 10, 15)


def test_weekend_anchor_counts_from_the_next_working_day() -> None:
    assert CN.add_working_days(sh(2026, 3, 7, 10), 1) == sh(2026, 3, 9, 10)  # Sat → Mon
    assert CN.add_working_days(sh(2026, 3, 6, 10), 1) == sh(2026, 3, 9, 10)  # Fri → Mon


def test_date_anchor_counts_as_midnight_in_the_calendar_zone() -> None:
    assert CN.add_working_days(date(2026, 3, 4), 2) == sh(2026, 3, 6, 0, 0)


def test_result_is_the_same_wall_clock_time_in_the_calendar_zone() -> None:
    # 02:00 UTC on Fri 2026-03-06 is 10:00 in Shanghai.
    result = CN.add_working_days(datetime(2026, 3, 6, 2, 0, tzinfo=UTC), 1)
    assert result == sh(2026, 3, 9, 10)
    assert result.utcoffset() == timedelta(hours=8)


def test_chinese_calendar_2026_national_day_as_shipped() -> None:
    # What chinese_calendar ships for 2026: National Day holiday Oct 1–7 (Oct 8 is an ordinary
    # working Thursday), Mid-Autumn Sep 25–27, make-up working days Sun Sep 20 and Sat Oct 10.
    for day in range(1, 8):
        assert not CN.is_working_day(date(2026, 10, day))
    assert CN.is_working_day(date(2026, 10, 8))
    assert CN.is_working_day(date(2026, 10, 10))
    assert CN.is_working_day(date(2026, 9, 20))
    assert not CN.is_working_day(date(2026, 9, 25))
    assert not CN.is_working_day(date(2026, 10, 11))


def test_working_days_skip_the_2026_national_day_holiday() -> None:
    start = sh(2026, 9, 30, 10)  # Wednesday, last working day before the holiday
    assert CN.add_working_days(start, 1) == sh(2026, 10, 8, 10)
    assert CN.add_working_days(start, 3) == sh(2026, 10, 10, 10)  # Saturday make-up day
    assert CN.add_working_days(start, 4) == sh(2026, 10, 12, 10)
    # Without the Chinese base the same span is plain weekdays.
    assert PLAIN.add_working_days(start, 1) == sh(2026, 10, 1, 10)


def test_working_days_skip_mid_autumn_and_use_the_sunday_make_up_day() -> None:
    assert CN.add_working_days(sh(2026, 9, 18, 9), 1) == sh(2026, 9, 20, 9)  # Fri → Sun (调休)
    assert CN.add_working_days(sh(2026, 9, 24, 9), 1) == sh(2026, 9, 28, 9)  # Thu → Mon


def test_negative_working_days_go_backwards() -> None:
    assert CN.add_working_days(sh(2026, 3, 9, 10), -1) == sh(2026, 3, 6, 10)  # Mon → Fri
    assert CN.add_working_days(sh(2026, 3, 7, 10), -1) == sh(2026, 3, 6, 10)  # Sat → Fri
    assert CN.add_working_days(sh(2026, 10, 8, 10), -1) == sh(2026, 9, 30, 10)
    assert CN.add_working_days(sh(2026, 10, 12, 10), -2) == sh(2026, 10, 9, 10)


def test_zero_working_days_is_identity() -> None:
    assert CN.add_working_days(sh(2026, 10, 3, 10), 0) == sh(2026, 10, 3, 10)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(NaiveDatetimeError):
        CN.add_working_days(datetime(2026, 3, 4, 10), 1)
    with pytest.raises(NaiveDatetimeError):
        CN.add_working_hours(datetime(2026, 3, 4, 10), 1)


def test_is_working_day_judges_a_datetime_in_the_calendar_zone() -> None:
    # 20:00 UTC on Friday is already Saturday in Shanghai.
    assert not CN.is_working_day(datetime(2026, 3, 6, 20, 0, tzinfo=UTC))
    assert CN.is_working_day(datetime(2026, 3, 6, 15, 0, tzinfo=UTC))


# --- years chinese_calendar has no data for --------------------------------------------------------


@pytest.mark.parametrize("year", [2003, 2099])
def test_year_outside_chinese_calendar_data_falls_back_to_weekdays(year: int) -> None:
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(year, 10, 1))
    oct1 = date(year, 10, 1)  # a Wednesday in 2003, a Thursday in 2099
    assert CN.is_working_day(oct1)
    assert CN.add_working_days(sh(year, 9, 30, 10), 1) == sh(year, 10, 1, 10)
    assert not CN.is_working_day(date(year, 10, 4))  # Saturday in 2003, Sunday in 2099
    assert not CN.is_working_day(date(year, 10, 3 if year == 2099 else 5))  # Saturday 2099 / Sunday 2003


def test_fallback_year_still_honours_overrides() -> None:
    cal = WorkingCalendar(holidays=[date(2099, 10, 1)], workdays=[date(2099, 10, 3)])
    assert cal.add_working_days(sh(2099, 9, 30, 10), 1) == sh(2099, 10, 2, 10)
    assert cal.add_working_days(sh(2099, 9, 30, 10), 2) == sh(2099, 10, 3, 10)  # a Saturday made a workday


# --- overrides ----------------------------------------------------------------------------------


def test_constructor_overrides_win_over_the_base() -> None:
    cal = WorkingCalendar(holidays=[date(2026, 3, 4)], workdays=[date(2026, 3, 7), date(2026, 10, 7)])
    assert not cal.is_working_day(date(2026, 3, 4))
    assert cal.is_working_day(date(2026, 3, 7))
    assert cal.is_working_day(date(2026, 10, 7))  # a National Day holiday, worked anyway
    assert cal.add_working_days(sh(2026, 3, 3, 10), 1) == sh(2026, 3, 5, 10)
    assert cal.add_working_days(sh(2026, 3, 3, 10), 3) == sh(2026, 3, 7, 10)


def test_constructor_rejects_contradictions() -> None:
    with pytest.raises(ValueError, match="both a holiday and a working day: 2026-03-04"):
        WorkingCalendar(holidays=[date(2026, 3, 4)], workdays=[date(2026, 3, 4)])
    with pytest.raises(ValueError, match="start before they end"):
        WorkingCalendar(day_start=time(18), day_end=time(9))
    with pytest.raises(ValueError, match="unknown calendar base"):
        WorkingCalendar(base="us")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown time zone"):
        WorkingCalendar("Asia/Nowhere")
    with pytest.raises(TypeError):
        WorkingCalendar(holidays=[datetime(2026, 3, 4, tzinfo=SH)])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "calendar.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_override_file_adds_a_holiday_and_a_make_up_workday(tmp_path: Path) -> None:
    path = write(tmp_path, """\
base: cn
timezone: Asia/Shanghai
holidays: [2026-03-04]
workdays:
  - 2026-03-07
hours: {start: "08:30", end: "17:30"}
""")
    cal = WorkingCalendar.from_file(path)
    assert not cal.is_working_day(date(2026, 3, 4))
    assert cal.is_working_day(date(2026, 3, 7))
    assert not cal.is_working_day(date(2026, 10, 1))  # the cn base is still there
    assert cal.add_working_days(sh(2026, 3, 3, 10), 3) == sh(2026, 3, 7, 10)
    assert (cal.day_start, cal.day_end) == (time(8, 30), time(17, 30))
    # Tue 17:00 + 1h: 30 min on Tuesday; Wednesday is the added holiday; 30 min on Thursday.
    assert cal.add_working_hours(sh(2026, 3, 3, 17), 1) == sh(2026, 3, 5, 9, 0)


def test_override_file_defaults_and_base_none(tmp_path: Path) -> None:
    cal = WorkingCalendar.from_file(write(tmp_path, "base: none\ntimezone: UTC\n"))
    assert cal.is_working_day(date(2026, 10, 1))
    assert (cal.day_start, cal.day_end) == (time(9), time(18))
    oct1 = datetime(2026, 10, 1, 10, tzinfo=UTC)
    assert cal.add_working_days(datetime(2026, 9, 30, 10, tzinfo=UTC), 1) == oct1


def one_problem(path: Path) -> tuple[int, int, str, str, str | None]:
    with pytest.raises(DefinitionError) as info:
        WorkingCalendar.from_file(path)
    assert len(info.value.problems) == 1, info.value.problems
    p = info.value.problems[0]
    assert p.file == path
    return p.line, p.col, p.path, p.message, p.hint


def test_bad_file_unknown_key_is_located(tmp_path: Path) -> None:
    line, col, where, message, hint = one_problem(write(tmp_path, "base: cn\nholiday: [2026-03-04]\n"))
    assert (line, col, where) == (2, 1, "holiday")
    assert message == "unknown key 'holiday'"
    assert hint is not None and "holidays" in hint


def test_bad_file_bad_date_is_located(tmp_path: Path) -> None:
    line, col, where, message, _ = one_problem(write(tmp_path, "holidays:\n  - 2026-03-04\n  - 2026-02-30\n"))
    assert (line, col, where) == (3, 5, "holidays[1]")
    assert "'2026-02-30' is not a date" in message


@pytest.mark.parametrize(("text", "where", "fragment"), [
    ("base: us\n", "base", "'us' is not allowed"),
    ("timezone: Asia/Nowhere\n", "timezone", "unknown time zone"),
    ("hours: {start: \"18:00\", end: \"09:00\"}\n", "hours", "start before they end"),
    ("hours: {start: 9am}\n", "hours.start", "not a time of day"),
    ("hours: {start: \"09:00\", lunch: \"12:00\"}\n", "hours.lunch", "unknown key 'lunch'"),
    ("holidays: 2026-03-04\n", "holidays", "must be a list of dates"),
    ("holidays: [2026-03-04]\nworkdays: [2026-03-04]\n", "workdays", "both a holiday and a working day"),
    ("- 2026-03-04\n", "", "must be a mapping"),
])
def test_bad_files_raise_definition_error(tmp_path: Path, text: str, where: str, fragment: str) -> None:
    _, _, path, message, _ = one_problem(write(tmp_path, text))
    assert path == where
    assert fragment in message


def test_bad_file_yaml_syntax_and_missing_file(tmp_path: Path) -> None:
    line, _, _, message, _ = one_problem(write(tmp_path, "holidays: [2026-03-04\nbase: cn\n"))
    assert "YAML syntax error" in message
    assert line >= 2
    _, _, _, message, _ = one_problem(tmp_path / "missing.yaml")
    assert "can't read file" in message


# --- working hours ------------------------------------------------------------------------------


def test_working_hours_cross_a_night() -> None:
    assert CN.add_working_hours(sh(2026, 3, 3, 17), 3) == sh(2026, 3, 4, 11)  # Tue → Wed


def test_working_hours_cross_a_weekend() -> None:
    assert CN.add_working_hours(sh(2026, 3, 6, 16), 4) == sh(2026, 3, 9, 11)  # Fri → Mon
    assert CN.add_working_hours(sh(2026, 3, 6, 16), 20) == sh(2026, 3, 10, 18)


def test_working_hours_cross_the_national_day_holiday() -> None:
    assert CN.add_working_hours(sh(2026, 9, 30, 17), 2) == sh(2026, 10, 8, 10)


def test_working_hours_start_counting_at_the_next_window() -> None:
    assert CN.add_working_hours(sh(2026, 3, 3, 7), 1) == sh(2026, 3, 3, 10)  # before opening
    assert CN.add_working_hours(sh(2026, 3, 3, 20), 1) == sh(2026, 3, 4, 10)  # after closing
    assert CN.add_working_hours(sh(2026, 3, 7, 12), 1) == sh(2026, 3, 9, 10)  # Saturday


def test_working_hours_landing_on_closing_time_stay_that_day() -> None:
    assert CN.add_working_hours(sh(2026, 3, 9, 9), 9) == sh(2026, 3, 9, 18)
    assert CN.add_working_hours(sh(2026, 3, 9, 9), 10) == sh(2026, 3, 10, 10)


def test_negative_working_hours_go_backwards() -> None:
    assert CN.add_working_hours(sh(2026, 3, 9, 10), -3) == sh(2026, 3, 6, 16)  # Mon → Fri
    assert CN.add_working_hours(sh(2026, 3, 7, 12), -1) == sh(2026, 3, 6, 17)  # Sat → Fri
    assert CN.add_working_hours(sh(2026, 3, 9, 7), -1) == sh(2026, 3, 6, 17)  # before Monday opening
    assert CN.add_working_hours(sh(2026, 3, 10, 18), -9) == sh(2026, 3, 10, 9)
    assert CN.add_working_hours(sh(2026, 10, 8, 10), -2) == sh(2026, 9, 30, 17)


def test_zero_working_hours_is_identity() -> None:
    assert CN.add_working_hours(sh(2026, 3, 7, 12), 0) == sh(2026, 3, 7, 12)


# --- properties ---------------------------------------------------------------------------------


anchors = st.datetimes(min_value=datetime(2004, 1, 1), max_value=datetime(2030, 12, 31),
                       timezones=st.just(SH))
offsets = st.integers(min_value=-40, max_value=40)


@settings(max_examples=200, deadline=None)
@given(anchors, offsets)
def test_adding_working_days_lands_on_a_working_day_and_counts_back(t: datetime, n: int) -> None:
    result = CN.add_working_days(t, n)
    assert result.time() == t.time()
    if n != 0:
        assert CN.is_working_day(result.date())
    assert CN.working_days_between(t, result) == n


@settings(max_examples=200, deadline=None)
@given(anchors, offsets)
def test_working_day_steps_compose(t: datetime, n: int) -> None:
    # Only from a working day: stepping n and then m is stepping n + m when both go the same way.
    start = CN.add_working_days(t, 1)
    m = 3 if n >= 0 else -3
    assert CN.add_working_days(CN.add_working_days(start, n), m) == CN.add_working_days(start, n + m)


@settings(max_examples=200, deadline=None)
@given(anchors, st.integers(min_value=-60, max_value=60))
def test_working_hours_land_inside_the_window(t: datetime, n: int) -> None:
    result = CN.add_working_hours(t, n)
    if n != 0:
        assert CN.is_working_day(result.date())
        assert time(9) <= result.time() <= time(18)
        assert (result > t) == (n > 0)


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(2004, 1, 1), max_value=date(2030, 12, 31)),
       st.integers(min_value=0, max_value=9 * 60 - 1), st.integers(min_value=1, max_value=60))
def test_working_hours_forward_then_back_is_identity_inside_the_window(d: date, minute: int, n: int) -> None:
    day = CN.add_working_days(d, 1).date()
    t = datetime.combine(day, time(9), tzinfo=SH) + timedelta(minutes=minute)
    assert CN.add_working_hours(CN.add_working_hours(t, n), -n) == t

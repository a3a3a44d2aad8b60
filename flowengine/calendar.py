"""The business calendar: which days are working days, and arithmetic in working days and hours.

Mainland-China public holidays and make-up working days (调休) come from `chinese_calendar`; for years
it has no data for, plain Monday–Friday is used. An override file adds holidays and make-up days
on top, and sets the time zone and the daily working window.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import chinese_calendar
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from flowengine.clock import DEFAULT_TZ, require_aware, zone
from flowengine.definition.yamlsafe import Document, format_path, read_yaml_file
from flowengine.errors import DefinitionError, Problem

__all__ = ["CalendarFile", "WorkingCalendar"]

Base = Literal["cn", "none"]
_ONE_DAY = timedelta(days=1)


class WorkingCalendar:
    """Working days and working hours in one time zone.

    A day is a working day if the override `workdays` list it; otherwise not if the override
    `holidays` list it; otherwise what the base says (`cn`: the official mainland-China calendar,
    `none` or a year without official data: Monday–Friday).
    """

    def __init__(self, tz: str = DEFAULT_TZ, *, base: Base = "cn", holidays: Iterable[date] = (),
                 workdays: Iterable[date] = (), day_start: time = time(9), day_end: time = time(18)) -> None:
        if base not in ("cn", "none"):
            raise ValueError(f"unknown calendar base {base!r}; expected 'cn' or 'none'")
        self.tz = zone(tz)
        self.base: Base = base
        self.holidays = frozenset(_plain_date(d, "holidays") for d in holidays)
        self.workdays = frozenset(_plain_date(d, "workdays") for d in workdays)
        both = self.holidays & self.workdays
        if both:
            raise ValueError("a day can't be both a holiday and a working day: "
                             + ", ".join(d.isoformat() for d in sorted(both)))
        for name, value in (("day_start", day_start), ("day_end", day_end)):
            if value.tzinfo is not None:
                raise ValueError(f"{name} must be a plain wall-clock time: the calendar sets the zone")
        if not day_start < day_end:
            raise ValueError(f"working hours must start before they end: {day_start:%H:%M}–{day_end:%H:%M}")
        self.day_start = day_start
        self.day_end = day_end

    def __repr__(self) -> str:
        return (f"WorkingCalendar({self.tz.key!r}, base={self.base!r}, holidays={len(self.holidays)}, "
                f"workdays={len(self.workdays)}, hours={self.day_start:%H:%M}–{self.day_end:%H:%M})")

    @classmethod
    def from_file(cls, path: Path) -> WorkingCalendar:
        """Read a calendar override file; any problem raises `DefinitionError` located in the file."""
        doc = read_yaml_file(path)
        try:
            spec = CalendarFile.model_validate(doc.data)
        except ValidationError as exc:
            raise DefinitionError(_problems(exc, doc)) from None
        return cls(spec.timezone, base=spec.base, holidays=spec.holidays, workdays=spec.workdays,
                   day_start=spec.hours.start, day_end=spec.hours.end)

    def is_working_day(self, d: date) -> bool:
        """Whether `d` is a working day; an aware datetime is judged by its date in this calendar's zone."""
        if isinstance(d, datetime):
            d = require_aware(d, "is_working_day").astimezone(self.tz).date()
        if d in self.workdays:
            return True
        if d in self.holidays:
            return False
        if self.base == "cn":
            try:
                return bool(chinese_calendar.is_workday(d))
            except NotImplementedError:
                # The package only ships the years the State Council has announced; a deadline
                # computed next year must still work, so fall back to Mon–Fri (plus overrides).
                pass
        return d.weekday() < 5

    def add_working_days(self, t: date, n: int) -> datetime:
        """The same wall-clock time on the n-th working day after `t` (before it, if n < 0).

        A `date` counts as 00:00 in this calendar's zone. `t` itself needn't be a working day:
        Saturday + 1 working day is Monday. n == 0 returns `t` unchanged (in this zone).
        """
        local = self._local(t)
        day = local.date()
        step = _ONE_DAY if n > 0 else -_ONE_DAY
        for _ in range(abs(n)):
            day += step
            while not self.is_working_day(day):
                day += step
        return datetime.combine(day, local.time(), tzinfo=self.tz)

    def working_days_between(self, start: date, end: date) -> int:
        """How many working days you step onto going from `start` to `end`: the inverse of
        `add_working_days`, so `working_days_between(t, add_working_days(t, n)) == n`.

        Forwards, the start day is excluded and the end day included; backwards (end < start,
        negative result), the end day is included and the start day excluded.
        """
        a, b = self._local(start).date(), self._local(end).date()
        if b >= a:
            return sum(1 for i in range(1, (b - a).days + 1) if self.is_working_day(a + i * _ONE_DAY))
        return -sum(1 for i in range((a - b).days) if self.is_working_day(b + i * _ONE_DAY))

    def add_working_hours(self, t: date, n: int) -> datetime:
        """`t` plus n hours of working time (minus, if n < 0), counted only inside the daily window.

        Outside the window, counting starts at the next window start (for n < 0: at the previous
        window end). Landing exactly on a window edge stays on that day: Monday 09:00 + 9 hours
        is Monday 18:00, not Tuesday 09:00. n == 0 returns `t` unchanged (in this zone).
        """
        local = self._local(t)
        if n == 0:
            return local
        # Wall-clock arithmetic: a working hour is an hour on the office clock, and the window is
        # defined in wall-clock terms; the zone is attached again at the end.
        cur = local.replace(tzinfo=None)
        remaining = timedelta(hours=abs(n))
        if n > 0:
            while True:
                start, end = self._window(cur.date())
                if not self.is_working_day(cur.date()) or cur >= end:
                    cur = self._next_working_start(cur.date())
                    continue
                cur = max(cur, start)
                if remaining <= end - cur:
                    return (cur + remaining).replace(tzinfo=self.tz)
                remaining -= end - cur
                cur = self._next_working_start(cur.date())
        while True:
            start, end = self._window(cur.date())
            if not self.is_working_day(cur.date()) or cur <= start:
                cur = self._previous_working_end(cur.date())
                continue
            cur = min(cur, end)
            if remaining <= cur - start:
                return (cur - remaining).replace(tzinfo=self.tz)
            remaining -= cur - start
            cur = self._previous_working_end(cur.date())

    def _local(self, t: date) -> datetime:
        if isinstance(t, datetime):
            return require_aware(t).astimezone(self.tz)
        return datetime.combine(t, time(0), tzinfo=self.tz)

    def _window(self, day: date) -> tuple[datetime, datetime]:
        return datetime.combine(day, self.day_start), datetime.combine(day, self.day_end)

    def _next_working_start(self, day: date) -> datetime:
        day += _ONE_DAY
        while not self.is_working_day(day):
            day += _ONE_DAY
        return datetime.combine(day, self.day_start)

    def _previous_working_end(self, day: date) -> datetime:
        day -= _ONE_DAY
        while not self.is_working_day(day):
            day -= _ONE_DAY
        return datetime.combine(day, self.day_end)


def _plain_date(d: date, what: str) -> date:
    # A datetime is a date subclass but never equal to one, so it would sit in the set unmatched.
    if isinstance(d, datetime) or not isinstance(d, date):
        raise TypeError(f"{what}: expected dates, got {type(d).__name__} {d!r}")
    return d


# --- the override file -------------------------------------------------------------------------


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_CLOCK_TIME = re.compile(r"(\d{1,2}):(\d{2})")


def _day(value: Any) -> Any:
    # yamlsafe keeps dates as text; only a full YYYY-MM-DD is a day (not a datetime, not a number).
    if isinstance(value, str):
        try:
            if _DAY.fullmatch(value):
                return date.fromisoformat(value)
        except ValueError:
            pass
        raise ValueError(f"'{value}' is not a date; write YYYY-MM-DD, e.g. 2026-10-09")
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise ValueError(f"expected a date YYYY-MM-DD, got {type(value).__name__} {value!r}")


def _clock_time(value: Any) -> Any:
    if isinstance(value, str):
        match = _CLOCK_TIME.fullmatch(value)
        try:
            if match:
                return time(int(match[1]), int(match[2]))
        except ValueError:
            pass
        raise ValueError(f"'{value}' is not a time of day; write HH:MM, e.g. \"09:00\"")
    if isinstance(value, time) and value.tzinfo is None:
        return value
    raise ValueError(f"expected a time of day \"HH:MM\", got {type(value).__name__} {value!r}")


Day = Annotated[date, BeforeValidator(_day)]
ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class WorkingHours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: ClockTime = time(9)
    end: ClockTime = time(18)

    @model_validator(mode="after")
    def _ordered(self) -> WorkingHours:
        if not self.start < self.end:
            raise ValueError(f"working hours must start before they end: {self.start:%H:%M}–{self.end:%H:%M}")
        return self


class CalendarFile(BaseModel):
    """The shape of a calendar override file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: Base = "cn"
    timezone: str = DEFAULT_TZ
    holidays: list[Day] = Field(default_factory=list)
    workdays: list[Day] = Field(default_factory=list)
    hours: WorkingHours = Field(default_factory=WorkingHours)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("workdays")
    @classmethod
    def _not_also_holidays(cls, value: list[date], info: ValidationInfo) -> list[date]:
        both = sorted(set(value) & set(info.data.get("holidays", ())))
        if both:
            raise ValueError("listed as both a holiday and a working day: "
                             + ", ".join(d.isoformat() for d in both))
        return value


def _problems(exc: ValidationError, doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = ", ".join(_allowed(loc[:-1]))
            problems.append(doc.problem(loc, f"unknown key '{loc[-1]}'", f"allowed: {allowed}", key=True))
        elif kind == "literal_error":
            problems.append(doc.problem(loc, f"'{err.get('input')}' is not allowed; expected "
                                        f"{err.get('ctx', {}).get('expected', 'cn or none')}"))
        elif kind == "list_type":
            problems.append(doc.problem(loc, f"{format_path(loc)} must be a list of dates",
                                        "e.g. [2026-10-09, 2026-10-10]"))
        elif kind == "model_type":
            keys = ", ".join(_allowed(loc))
            problems.append(doc.problem(loc, f"{format_path(loc) or 'the calendar file'} must be a mapping",
                                        f"keys: {keys}"))
        else:
            problems.append(doc.problem(loc, err["msg"].removeprefix("Value error, ")))
    return problems


def _allowed(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = WorkingHours if loc == ("hours",) else CalendarFile
    return list(model.model_fields)

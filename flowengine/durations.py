"""Durations as written in process files (`PT1H`, `P3D`, `P1M`, `2 working days`) and adding them to instants.

`parse_duration` turns text into a `Duration`; `Duration.apply` adds it to an aware datetime using a
`WorkingCalendar` for the zone and for working time; `str(duration)` is the canonical spelling.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from flowengine.calendar import WorkingCalendar
from flowengine.clock import require_aware

__all__ = ["Duration", "parse_duration"]

_ISO = re.compile(
    r"(?P<sign>[+-])?P"
    r"(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?")
_ISO_FRACTION = re.compile(r"[+-]?P[\dYMWDTHS]*\d[.,]\d+[YMWDHS][\dYMWDTHS]*")
_WORKING = re.compile(r"(?P<sign>[+-])?\s*(?P<n>\d+)\s+working\s+(?P<unit>day|hour)s?", re.IGNORECASE)

ACCEPTED = ("ISO 8601 durations with an optional sign and whole numbers (PT30M, PT1H, P3D, P1W, P1DT2H, "
            "P1M, P1Y, -PT2H), or 'N working days' / 'N working hours' (e.g. '2 working days', "
            "'1 working hour', '-2 working days')")


@dataclass(frozen=True, slots=True)
class Duration:
    """A signed span of time, either calendar time or working time, never both.

    Calendar time is `months` (years are 12 months), `days` and `seconds`; all non-zero parts share
    one sign. Working time is `working_days` or `working_hours`, counted by a `WorkingCalendar`.
    """

    months: int = 0
    days: int = 0
    seconds: int = 0
    working_days: int = 0
    working_hours: int = 0

    def __post_init__(self) -> None:
        parts = (self.months, self.days, self.seconds, self.working_days, self.working_hours)
        if any(type(p) is not int for p in parts):
            raise TypeError(f"Duration parts must be int: {parts}")
        if len({p > 0 for p in parts if p}) > 1:
            raise ValueError(f"Duration parts must share one sign: {self!r}")
        calendar_part = bool(self.months or self.days or self.seconds)
        if sum((calendar_part, bool(self.working_days), bool(self.working_hours))) > 1:
            raise ValueError(f"a Duration is calendar time, working days or working hours, not a mix: "
                             f"{self!r}")

    @property
    def is_working_time(self) -> bool:
        return bool(self.working_days or self.working_hours)

    def __neg__(self) -> Duration:
        return Duration(-self.months, -self.days, -self.seconds, -self.working_days, -self.working_hours)

    def apply(self, t: datetime, calendar: WorkingCalendar) -> datetime:
        """`t` plus this duration, as an aware datetime in the calendar's zone.

        Months and days move the wall-clock date in the calendar's zone (a month clamps the day:
        Jan 31 + P1M is Feb 28 or 29); hours, minutes and seconds are elapsed time. In a zone
        without DST, like Asia/Shanghai, P1D is therefore exactly 24 hours.
        """
        local = require_aware(t, "Duration.apply").astimezone(calendar.tz)
        if self.working_days:
            return calendar.add_working_days(local, self.working_days)
        if self.working_hours:
            return calendar.add_working_hours(local, self.working_hours)
        wall = local.replace(tzinfo=None)
        if self.months:
            wall = datetime.combine(_add_months(wall.date(), self.months), wall.time())
        wall += timedelta(days=self.days)
        shifted = wall.replace(tzinfo=calendar.tz)
        # Elapsed time is added in UTC so that, in zones with DST, PT1H is one real hour.
        return (shifted.astimezone(UTC) + timedelta(seconds=self.seconds)).astimezone(calendar.tz)

    def __str__(self) -> str:
        if self.working_days:
            return _plural(self.working_days, "working day")
        if self.working_hours:
            return _plural(self.working_hours, "working hour")
        sign = "-" if min(self.months, self.days, self.seconds) < 0 else ""
        years, months = divmod(abs(self.months), 12)
        minutes, seconds = divmod(abs(self.seconds), 60)
        hours, minutes = divmod(minutes, 60)
        date_part = "".join(f"{v}{u}" for v, u in ((years, "Y"), (months, "M"), (abs(self.days), "D")) if v)
        time_part = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if v)
        if not date_part and not time_part:
            return "PT0S"
        return f"{sign}P{date_part}" + (f"T{time_part}" if time_part else "")


@functools.lru_cache(maxsize=1024)  # a definition names a few durations; every scheduled timer parses one
def parse_duration(text: str) -> Duration:
    """Parse an ISO 8601 duration or 'N working days/hours'; ValueError says what is accepted."""
    stripped = text.strip()
    iso = _ISO.fullmatch(stripped)
    if iso and any(iso[g] is not None for g in ("years", "months", "weeks", "days", "hours", "minutes",
                                                 "seconds")):
        sign = -1 if iso["sign"] == "-" else 1
        n = {k: int(v) if v is not None else 0 for k, v in iso.groupdict().items() if k != "sign"}
        return Duration(months=sign * (12 * n["years"] + n["months"]),
                        days=sign * (7 * n["weeks"] + n["days"]),
                        seconds=sign * (3600 * n["hours"] + 60 * n["minutes"] + n["seconds"]))
    working = _WORKING.fullmatch(stripped)
    if working:
        n_signed = int(working["n"]) * (-1 if working["sign"] == "-" else 1)
        if working["unit"].lower() == "day":
            return Duration(working_days=n_signed)
        return Duration(working_hours=n_signed)
    if _ISO_FRACTION.fullmatch(stripped):
        raise ValueError(f"not a duration: {text!r}: fractions aren't accepted, use a smaller unit "
                         f"(PT90M, not PT1.5H); accepted: {ACCEPTED}")
    raise ValueError(f"not a duration: {text!r}; accepted: {ACCEPTED}")


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if abs(n) == 1 else "s")


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + (d.month - 1) + months
    year, month0 = divmod(index, 12)
    last = _stdlib_calendar.monthrange(year, month0 + 1)[1]
    return d.replace(year=year, month=month0 + 1, day=min(d.day, last))


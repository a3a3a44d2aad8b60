"""Where "now" comes from, and how a written instant becomes an aware datetime.

The engine asks a `Clock` instead of calling `datetime.now()`, so tests and simulations can
travel in time with `ManualClock`. Every datetime that crosses this boundary is timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "Clock",
    "ManualClock",
    "NaiveDatetimeError",
    "NonMonotonicTime",
    "SystemClock",
    "UnknownTimeZone",
    "parse_instant",
    "require_aware",
    "zone",
]

DEFAULT_TZ = "Asia/Shanghai"


class NaiveDatetimeError(ValueError):
    """A datetime without a time zone reached code that must know which instant it means."""


class NonMonotonicTime(ValueError):
    """A `ManualClock` was asked to move backwards."""


class UnknownTimeZone(ValueError):
    """A time zone name that the IANA database (zoneinfo) does not know."""


@runtime_checkable
class Clock(Protocol):
    """Source of the current instant; `now()` is always timezone-aware."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to, and only forwards.

    Timers and deadlines already computed from an earlier `now()` would fire out of order if time
    could go back, so `set` and `advance` refuse that instead of silently rewinding.
    """

    def __init__(self, start: datetime) -> None:
        self._now = require_aware(start, "ManualClock start")

    def now(self) -> datetime:
        return self._now

    def set(self, t: datetime) -> None:
        """Jump to `t`, which must not be earlier than the current time."""
        require_aware(t, "ManualClock.set")
        if t < self._now:
            raise NonMonotonicTime(
                f"Time must be monotonic: can't set the clock back from {self._now.isoformat()} "
                f"to {t.isoformat()}")
        self._now = t

    def advance(self, delta: timedelta) -> None:
        """Move forward by `delta` (zero is allowed, negative is not)."""
        if delta < timedelta(0):
            raise NonMonotonicTime(f"Time must be monotonic: can't advance the clock by {delta}")
        self._now = self._now + delta

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"


def require_aware(t: datetime, what: str = "datetime") -> datetime:
    """Return `t` if it carries a UTC offset; raise `NaiveDatetimeError` otherwise."""
    if not isinstance(t, datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise NaiveDatetimeError(
            f"{what}: {t.isoformat()} has no time zone; a naive datetime could mean any instant "
            f"(attach one, e.g. t.replace(tzinfo=ZoneInfo('{DEFAULT_TZ}')))")
    return t


def zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`, or `UnknownTimeZone` (a ValueError) naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimeZone(f"unknown time zone {name!r}; expected an IANA name such as "
                              f"'{DEFAULT_TZ}' or 'UTC'") from exc


def parse_instant(text: str, tz: str = DEFAULT_TZ) -> datetime:
    """Parse an ISO 8601 date or date-time into an aware datetime.

    `2026-03-02T09:00+08:00` keeps its offset; `2026-03-02T09:00` is read in `tz`; a bare date
    `2026-03-02` means 00:00 in `tz`.
    """
    zone_info = zone(tz)
    stripped = text.strip()
    try:
        parsed = datetime.fromisoformat(stripped) if stripped else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"not an ISO 8601 instant: {text!r}; expected e.g. '2026-03-02T09:00', "
                         f"'2026-03-02T09:00+08:00', '2026-03-02T01:00Z' or '2026-03-02'")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=zone_info)
    return parsed


TWO_DIGITS = tuple(f"{i:02d}" for i in range(61))
_DATES: dict[int, str] = {}
_OFFSETS: dict[timedelta | None, str] = {}


def date_text(moment: datetime) -> str:
    """`moment.date().isoformat()`, kept per day: instants are formatted on every step, days change rarely."""
    day = moment.toordinal()
    text = _DATES.get(day)
    if text is None:
        if len(_DATES) > 4096:
            _DATES.clear()
        text = _DATES[day] = moment.date().isoformat()
    return text


def iso_text(moment: datetime, tz: ZoneInfo) -> str:
    """`moment.astimezone(tz).isoformat()`, the form every stored instant takes, at a third of its cost.

    `datetime.isoformat` formats through printf on every call; a fire stores several instants, so the
    date and offset parts are kept (a few hundred entries at most) and the time is joined from a table.
    """
    local = moment.astimezone(tz)
    offset = local.utcoffset()
    offset_text = _OFFSETS.get(offset)
    if offset_text is None:
        whole = local.replace(microsecond=0)
        offset_text = _OFFSETS[offset] = whole.isoformat()[len(whole.replace(tzinfo=None).isoformat()):]
    micro = local.microsecond
    two = TWO_DIGITS
    return (f"{date_text(local)}T{two[local.hour]}:{two[local.minute]}:{two[local.second]}"
            f"{f'.{micro:06d}' if micro else ''}{offset_text}")

"""Instance data: validation against a process's data schema, and typed reads.

Instance data is stored JSON-native so every database and the CLI see the same thing: decimals as
canonical strings ("5000.00": money is never a float), dates as "YYYY-MM-DD", datetimes as ISO 8601
with offset in the process's zone, durations as ISO 8601. `typed()` turns them into Python values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError

from flowengine.clock import iso_text
from flowengine.definition.schema import FieldSpec

_DURATION = TypeAdapter(dt.timedelta)


class _Invalid(Exception):
    pass


def coerce(spec: FieldSpec, value: Any, tz: ZoneInfo, path: str) -> Any:
    """Return the JSON-native form of `value` for `spec`, or raise _Invalid with a message."""
    if value is None:
        return None
    t = spec.type
    if t in ("string", "text"):
        if not isinstance(value, str):
            raise _Invalid(f"{path}: expected text, got {_kind(value)}")
        return _unicode(value, path)
    if t == "enum":
        if not isinstance(value, str) or value not in (spec.values or []):
            raise _Invalid(f"{path}: '{value}' is not one of {', '.join(spec.values or [])}")
        return value
    if t == "bool":
        if not isinstance(value, bool):
            raise _Invalid(f"{path}: expected true or false, got {_kind(value)}")
        return value
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"{path}: expected a whole number, got {_kind(value)}")
        return value
    if t == "decimal":
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise _Invalid(f"{path}: expected a decimal number, got {_kind(value)}")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise _Invalid(f"{path}: '{value}' is not a decimal number") from None
        if not number.is_finite():
            raise _Invalid(f"{path}: '{value}' is not a finite number")
        return str(number)
    if t in ("date", "datetime"):
        try:
            return (_date if t == "date" else _datetime)(value, tz, path).isoformat()
        except OverflowError:
            raise _Invalid(f"{path}: '{value}' is out of the supported range of dates") from None
    if t == "duration":
        if isinstance(value, dt.timedelta):
            return format_duration(value)
        try:
            return format_duration(_DURATION.validate_python(value))
        except ValidationError:
            raise _Invalid(f"{path}: '{value}' is not an ISO 8601 duration (PT5H)") from None
    if t == "list":
        if not isinstance(value, list):
            raise _Invalid(f"{path}: expected a list, got {_kind(value)}")
        assert spec.items is not None
        return [coerce(spec.items, v, tz, f"{path}[{i}]") for i, v in enumerate(value)]
    if t == "map":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _Invalid(f"{path}: expected a mapping, got {_kind(value)}")
        assert spec.items is not None
        return {_unicode(k, path): coerce(spec.items, v, tz, f"{path}.{k}") for k, v in value.items()}
    if t == "object":
        if not isinstance(value, dict):
            raise _Invalid(f"{path}: expected a mapping, got {_kind(value)}")
        assert spec.fields is not None
        unknown = sorted(set(value) - set(spec.fields))
        if unknown:
            raise _Invalid(f"{path}: unknown key {', '.join(unknown)}; allowed: {', '.join(spec.fields)}")
        missing = [k for k, f in spec.fields.items() if k not in value and f.default is None]
        if missing:
            raise _Invalid(f"{path}: missing {', '.join(missing)}")
        return {k: coerce(f, value.get(k, f.default), tz, f"{path}.{k}") for k, f in spec.fields.items()}
    raise _Invalid(f"{path}: unknown type {t}")  # pragma: no cover - schema forbids it


def _unicode(value: str, path: str) -> str:
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Invalid(f"{path}: not valid Unicode text ({exc.reason} at character {exc.start})") from None
    return value


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: f"text '{value}'", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _date(value: Any, tz: ZoneInfo, path: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.astimezone(tz).date() if value.tzinfo else value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise _Invalid(f"{path}: '{value}' is not a date (YYYY-MM-DD)")


def _datetime(value: Any, tz: ZoneInfo, path: str) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise _Invalid(f"{path}: '{value}' is not a date-time (2026-03-02T09:00, +08:00 if no offset)") from None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), tz)
    raise _Invalid(f"{path}: expected a date-time, got {_kind(value)}")


def format_duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "")
    return text + (f"T{clock}" if clock else ("" if days else "T0S"))


def validate_fields(fields: Mapping[str, FieldSpec], values: Mapping[str, Any], tz: ZoneInfo,
                    where: str) -> tuple[dict[str, Any], list[str]]:
    """Coerce every value in `values` by its field; unknown names are errors naming the allowed ones."""
    out: dict[str, Any] = {}
    errors: list[str] = []
    for name, value in values.items():
        spec = fields.get(name)
        if spec is None:
            errors.append(f"'{name}' is not a field {where}; allowed: {', '.join(sorted(fields)) or 'none'}")
            continue
        try:
            out[name] = coerce(spec, value, tz, name)
        except _Invalid as exc:
            errors.append(str(exc))
    return out, errors


Coercer = Callable[[Any], Any]


def coercer(spec: FieldSpec, tz: ZoneInfo, path: str) -> Coercer:
    """`coerce` for one field with its common case decided once: the same result, or the same `Invalid`."""
    def full(value: Any) -> Any:
        return coerce(spec, value, tz, path)
    kind = spec.type
    if kind in ("string", "text"):
        return lambda value: value if type(value) is str and value.isascii() else full(value)
    if kind == "enum":
        allowed = frozenset(spec.values or ())
        return lambda value: value if type(value) is str and value in allowed else full(value)
    if kind in ("bool", "int"):
        exact = bool if kind == "bool" else int
        return lambda value: value if type(value) is exact else full(value)
    return full


def coerce_all(coercers: Mapping[str, Coercer], values: Mapping[str, Any]) -> dict[str, Any] | None:
    """Every value coerced by its field; None if one is unknown or invalid (`validate_fields` then says which)."""
    try:
        return {name: coercers[name](value) for name, value in values.items()}
    except (KeyError, _Invalid):
        return None


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def typed(spec: FieldSpec | None, value: Any, tz: ZoneInfo) -> Any:
    """The Python value of a stored field: Decimal, date, datetime, timedelta; unset per the spec's rules."""
    if value is None:
        if spec is None:
            return None
        if spec.default is not None:
            value = spec.default
        else:
            return {"bool": False, "int": 0, "list": [], "map": {}}.get(spec.type)
    if spec is None:
        return value
    try:
        if spec.type == "decimal":
            return Decimal(str(value))
        if spec.type == "date":
            return _date(value, tz, "")
        if spec.type == "datetime":
            return _datetime(value, tz, "")
        if spec.type == "duration":
            return _DURATION.validate_python(value)
    except (_Invalid, InvalidOperation, ValidationError):
        return value
    return value


def reader(spec: FieldSpec | None, tz: ZoneInfo) -> Callable[[Any], Any]:
    """`typed` for one field, chosen once: `reader(spec, tz)(value) == typed(spec, value, tz)` for every value."""
    if spec is None:
        return lambda value: value
    if spec.type == "decimal":
        def decimal(value: Any) -> Any:
            if value is None:
                return typed(spec, None, tz)
            try:
                return Decimal(value if type(value) is str else str(value))
            except InvalidOperation:
                return value
        return decimal
    if spec.type in ("date", "datetime", "duration"):
        return lambda value: typed(spec, value, tz)
    return lambda value: typed(spec, None, tz) if value is None else value


_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_json_native(value: Any, tz: ZoneInfo) -> Any:
    """A hook's Python value (Decimal, datetime…) as stored JSON, without a schema."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return iso_text(value if value.tzinfo else value.replace(tzinfo=tz), tz)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    if isinstance(value, dict):
        for k, v in value.items():
            if type(k) is not str or type(v) not in _PLAIN:
                return {str(k): to_json_native(v, tz) for k, v in value.items()}
        return dict(value)  # the common case: a flat message of text and numbers
    if isinstance(value, list | tuple):
        return [to_json_native(v, tz) for v in value]
    return value


Invalid = _Invalid

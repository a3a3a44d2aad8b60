"""Pydantic v2 models of the process YAML format (format 1): shape only, strict and frozen.

Shorthands an analyst writes (a bare hook name for a condition, a role instead of a list, a field
name in a data mapping) are normalised here by `BeforeValidator`s, so every later layer sees one
shape. Meaning (do states exist, are hooks registered) is `checks.py`'s job. Imports only pydantic.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

ID_PATTERN = r"^[a-z][a-z0-9_]*$"
Id = Annotated[str, Field(pattern=ID_PATTERN)]
FORMAT_VERSION = 1

# ISO 8601 durations (optionally signed) or "N working days|hours".
DURATION_RE = re.compile(
    r"^(?P<iso>[+-]?P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?)$"
    r"|^(?P<sign>[+-]?)\s*(?P<n>\d+)\s+working\s+(?P<unit>days?|hours?)$"
)


def _check_duration(value: str) -> str:
    if not DURATION_RE.match(value.strip()):
        raise ValueError(f"'{value}' is not a duration: use ISO 8601 (PT1H, P3D, -PT2H) or 'N working days'")
    return value.strip()


Duration = Annotated[str, Field(json_schema_extra={"examples": ["PT1H", "P3D", "-PT2H", "5 working days"]})]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


StrList = Annotated[list[str], BeforeValidator(_as_list)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class Label(Model):
    """Bilingual text: both languages are required, so diagrams and the CLI can show either."""

    zh: Annotated[str, Field(min_length=1)]
    en: Annotated[str, Field(min_length=1)]

    def text(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


# --- values -------------------------------------------------------------------------------------


class Value(Model):
    """An expression for a value: exactly one key is set.

    In `set:` a bare YAML value is a literal (`repair_route: in_house`); in data mappings (`call.data`,
    `start.data`, `copy`) a bare string names a field of the other instance.
    """

    const: Any = None
    field: str | None = None
    offset: str | None = None  # with `field`: a duration added to a date/datetime field
    param: str | None = None
    now: bool | None = None
    actor: Literal["id"] | None = None
    condition: str | None = None
    form_number: str | None = None
    has_const: SkipJsonSchema[bool] = Field(default=False, exclude=True)  # internal: `const: null` was written

    @model_validator(mode="before")
    @classmethod
    def _mark_const(cls, data: Any) -> Any:
        if isinstance(data, dict) and "has_const" in data:
            raise ValueError("unknown key 'has_const'")
        if isinstance(data, dict) and "const" in data:
            return {**data, "has_const": True}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Value:
        chosen = [k for k in ("field", "param", "now", "actor", "condition", "form_number")
                  if getattr(self, k) is not None]
        if self.has_const:
            chosen.append("const")
        if len(chosen) != 1:
            raise ValueError("a value needs exactly one of const, field, param, now, actor, condition, "
                             f"form_number; got {', '.join(chosen) or 'none'}")
        if self.offset is not None:
            if self.field is None:
                raise ValueError("offset goes with field")
            _check_duration(self.offset)
        return self


def _literal_value(data: Any) -> Any:
    if isinstance(data, dict) and data.keys() & {"const", "field", "param", "now", "actor", "condition",
                                                   "form_number"}:
        return data
    return {"const": data}


def _field_value(data: Any) -> Any:
    return {"field": data} if isinstance(data, str) else _literal_value(data)


SetValue = Annotated[Value, BeforeValidator(_literal_value)]
MapValue = Annotated[Value, BeforeValidator(_field_value)]


# --- conditions ---------------------------------------------------------------------------------

Operand = Annotated[Value, BeforeValidator(_literal_value)]


class Condition(Model):
    """A declarative test on instance data, or a reference to a named condition or registered hook.

    Forms: `name` (a `conditions:` entry or a registered condition hook), `{all: [...]}`,
    `{any: [...]}`, `{not: ...}`, or `{field: f, <op>: operand}` with op one of eq, ne, lt, le, gt,
    ge, in, not_in, set (true: present and non-empty), empty.
    """

    ref: str | None = None
    all_: list[CondArg] | None = Field(default=None, alias="all")
    any_: list[CondArg] | None = Field(default=None, alias="any")
    not_: CondArg | None = Field(default=None, alias="not")
    field: str | None = None
    eq: Operand | None = None
    ne: Operand | None = None
    lt: Operand | None = None
    le: Operand | None = None
    gt: Operand | None = None
    ge: Operand | None = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    set_: bool | None = Field(default=None, alias="set")
    empty: bool | None = None

    COMPARISONS: ClassVar[tuple[str, ...]] = ("eq", "ne", "lt", "le", "gt", "ge", "in_", "not_in", "set_", "empty")

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        forms = [k for k in ("ref", "all_", "any_", "not_", "field") if getattr(self, k) is not None]
        ops = [k for k in self.COMPARISONS if getattr(self, k) is not None]
        if len(forms) != 1:
            raise ValueError("a condition is a name, or exactly one of all, any, not, field")
        if self.field is not None and len(ops) != 1:
            raise ValueError(f"'field: {self.field}' needs exactly one of eq, ne, lt, le, gt, ge, in, "
                             "not_in, set, empty")
        if self.field is None and ops:
            raise ValueError("comparison operators go with 'field'")
        return self

    @property
    def op(self) -> str | None:
        for k in self.COMPARISONS:
            if getattr(self, k) is not None:
                return k.rstrip("_")
        return None

    def describe(self) -> str:
        """Human text for diagrams and refusal messages."""
        if self.ref is not None:
            return self.ref
        if self.all_ is not None:
            return " and ".join(_paren(c) for c in self.all_)
        if self.any_ is not None:
            return " or ".join(_paren(c) for c in self.any_)
        if self.not_ is not None:
            return f"not {_paren(self.not_)}"
        op = self.op
        symbols = {"eq": "=", "ne": "≠", "lt": "<", "le": "≤", "gt": ">", "ge": "≥"}
        if op in symbols:
            operand: Value = getattr(self, op)
            return f"{self.field} {symbols[op]} {_describe_value(operand)}"
        if op in ("in", "not_in"):
            values = getattr(self, "in_" if op == "in" else "not_in")
            return f"{self.field} {'in' if op == 'in' else 'not in'} [{', '.join(map(str, values))}]"
        if op == "set":
            return f"{self.field} {'set' if self.set_ else 'not set'}"
        return f"{self.field} {'empty' if self.empty else 'not empty'}"


def _paren(c: Condition) -> str:
    text = c.describe()
    return f"({text})" if c.all_ is not None or c.any_ is not None else text


def _describe_value(v: Value) -> str:
    if v.has_const:
        return "true" if v.const is True else "false" if v.const is False else str(v.const)
    if v.field is not None:
        return v.field + (f" {v.offset}" if v.offset else "")
    if v.param is not None:
        return f"param.{v.param}"
    if v.condition is not None:
        return v.condition
    if v.form_number is not None:
        return f"{v.form_number} number"
    return "now" if v.now else "actor id"


def _condition_shorthand(data: Any) -> Any:
    return {"ref": data} if isinstance(data, str) else data


CondArg = Annotated[Condition, BeforeValidator(_condition_shorthand)]
Condition.model_rebuild()


# --- data schema --------------------------------------------------------------------------------

FieldType = Literal["string", "text", "int", "decimal", "bool", "date", "datetime", "duration", "enum",
                    "list", "map", "object"]


class FieldSpec(Model):
    """One instance-data field. `start` says whether start data must or may carry it."""

    type: FieldType
    label: Label | None = None
    description: str | None = None
    values: list[str] | None = None  # enum
    items: FieldSpec | None = None  # list items / map values
    fields: dict[str, FieldSpec] | None = None  # object
    start: Literal["required", "optional"] | None = None
    default: Any = None

    @model_validator(mode="after")
    def _shape(self) -> FieldSpec:
        if self.type == "enum" and not self.values:
            raise ValueError("an enum needs 'values'")
        if self.type != "enum" and self.values is not None:
            raise ValueError("'values' goes with type enum")
        if self.type in ("list", "map") and self.items is None:
            raise ValueError(f"a {self.type} needs 'items'")
        if self.type not in ("list", "map") and self.items is not None:
            raise ValueError("'items' goes with type list or map")
        if self.type == "object" and not self.fields:
            raise ValueError("an object needs 'fields'")
        if self.type != "object" and self.fields is not None:
            raise ValueError("'fields' goes with type object")
        return self


FieldSpec.model_rebuild()

PayloadSpec = dict[str, Literal["required", "optional"]]


# --- actions ------------------------------------------------------------------------------------


class StartSpec(Model):
    """A hand-off: start another process with mapped data and go on without waiting."""

    process: Id
    data: dict[str, MapValue] = {}


class OutboxSpec(Model):
    """A message to another system, written to the outbox and delivered after commit."""

    topic: Annotated[str, Field(min_length=1)]
    data: dict[str, MapValue] = {}


class Action(Model):
    """One step run by a transition, a timer or `on_start`; exactly one verb is set.

    Verbs: create_form, create_new_form, notify (+ channel, message), set, increment, clear, run (a
    registered action hook), start (hand-off), outbox. `when` makes the action conditional.
    """

    create_form: str | None = None
    create_new_form: str | None = None
    notify: StrList | None = None
    channel: Literal["message", "sms", "email"] | None = None
    message: str | None = None
    set_: dict[str, SetValue] | None = Field(default=None, alias="set")
    increment: str | None = None
    clear: StrList | None = None
    run: str | None = None
    start: StartSpec | None = None
    outbox: OutboxSpec | None = None
    when: CondArg | None = None

    VERBS: ClassVar[tuple[str, ...]] = ("create_form", "create_new_form", "notify", "set_", "increment", "clear",
                                        "run", "start", "outbox")

    @model_validator(mode="after")
    def _one_verb(self) -> Action:
        verbs = [v for v in self.VERBS if getattr(self, v) is not None]
        if len(verbs) != 1:
            raise ValueError(f"an action needs exactly one of {', '.join(v.rstrip('_') for v in self.VERBS)}; "
                             f"got {', '.join(v.rstrip('_') for v in verbs) or 'none'}")
        if self.notify is None and self.channel is not None:
            raise ValueError("'channel' goes with notify")
        if self.notify is None and self.message is not None:
            raise ValueError("'message' goes with notify")
        return self

    @property
    def verb(self) -> str:
        return next(v.rstrip("_") for v in self.VERBS if getattr(self, v) is not None)


# --- states, events, transitions, timers ---------------------------------------------------------


class Outcome(Model):
    """What the parent does when the child reaches one final state."""

    event: Id
    copy_: dict[str, str] = Field(default={}, alias="copy")  # parent field ← child field

    @field_validator("copy_", mode="before")
    @classmethod
    def _list_means_same_name(cls, value: Any) -> Any:
        if isinstance(value, list) and all(isinstance(name, str) for name in value):
            return {name: name for name in value}
        return value


class CallSpec(Model):
    """A `call` state's child process: data passed down and, per child final state, the outcome."""

    process: Id
    data: dict[str, MapValue] = {}
    outcomes: dict[str, Outcome]


class StateSpec(Model):
    label: Label
    kind: Literal["normal", "final", "timer", "call"] = "normal"
    roles: StrList = []  # who acts here (documentation, swimlanes, inbox hints)
    description: str | None = None
    call: CallSpec | None = None
    dead_end_ok: bool = False  # allowed to have no way to a final state

    @model_validator(mode="after")
    def _call_iff_kind(self) -> StateSpec:
        if self.kind == "call" and self.call is None:
            raise ValueError("a call state needs 'call'")
        if self.kind != "call" and self.call is not None:
            raise ValueError("'call' goes with kind: call")
        return self


class EventSpec(Model):
    label: Label
    payload: PayloadSpec = {}
    description: str | None = None


class TransitionSpec(Model):
    """One row of the transition table. Rows with the same from-state and event are tried in order."""

    id: str | None = None  # the spec's T-number
    from_: StrList = Field(alias="from")  # state ids or "*" (every non-final state)
    event: Id
    to: str | None = None  # omitted: a self-loop, no exit or entry
    if_: CondArg | None = Field(default=None, alias="if")
    guard: Annotated[list[CondArg], BeforeValidator(lambda v: [v] if isinstance(v, str | dict) else v)] = []
    actions: list[Action] = []
    roles: StrList
    payload: PayloadSpec | None = None  # overrides the event's payload for this row
    tag: Literal["source", "decided"] | None = None
    note: str | None = None


class TimerSpec(Model):
    """A due time over a scope of states, and what happens when it passes.

    Due: `after` a duration from entering the scope, or `at` a data field plus `offset`.
    On expiry: `fire` an event as `system`, or `escalate` (actions; the state does not change).
    `repeat` re-arms an escalation (reminders) while the instance stays in scope.
    """

    scope: StrList
    label: Label | None = None
    after: Duration | None = None
    at: str | None = None
    offset: Duration | None = None
    fire: Id | None = None
    payload: dict[str, Any] = {}  # with `fire`: the event's payload (e.g. a cancel reason)
    escalate: list[Action] | None = None
    repeat: Duration | None = None
    tag: Literal["source", "decided"] | None = None

    @model_validator(mode="after")
    def _due_and_effect(self) -> TimerSpec:
        if (self.after is None) == (self.at is None):
            raise ValueError("a timer needs exactly one of 'after' (duration from entering the scope) or "
                             "'at' (a data field)")
        if self.offset is not None and self.at is None:
            raise ValueError("'offset' goes with 'at'")
        if (self.fire is None) == (self.escalate is None):
            raise ValueError("a timer needs exactly one of 'fire' (an event) or 'escalate' (actions)")
        if self.payload and self.fire is None:
            raise ValueError("'payload' goes with 'fire'")
        if self.repeat is not None and self.escalate is None:
            raise ValueError("'repeat' goes with 'escalate'")
        for d in (self.after, self.offset, self.repeat):
            if d is not None:
                _check_duration(d)
        return self


class FormSpec(Model):
    label: Label
    prefix: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]*$")]
    gap_free: bool = False  # numbers without gaps (archive numbers)


class ProcessSpec(Model):
    """One process definition file."""

    format: Literal[1]
    process: Id
    title: Label
    description: str | None = None
    source: str | None = None
    lang: Literal["zh", "en"] = "zh"
    timezone: Annotated[str, AfterValidator(lambda v: _check_zone(v))] = "Asia/Shanghai"
    initial: Id
    start_roles: StrList
    on_start: list[Action] = []
    parameters: dict[str, Any] = {}
    roles: dict[str, Label] = {}
    role_groups: dict[str, list[str]] = {}
    forms: dict[str, FormSpec] = {}
    data: dict[str, FieldSpec] = {}
    conditions: dict[str, CondArg] = {}
    states: dict[str, StateSpec]
    events: dict[str, EventSpec]
    transitions: list[TransitionSpec]
    timers: dict[str, TimerSpec] = {}


def _check_zone(name: str) -> str:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
    except Exception:  # unknown key, malformed key, or no tz database at all
        raise ValueError(f"'{name}' is not a known time zone (IANA name, e.g. Asia/Shanghai)") from None
    return name


class CatalogSpec(Model):
    """`_catalog.yaml`: roles and forms shared by every process in the directory."""

    format: Literal[1]
    roles: dict[str, Label] = {}
    forms: dict[str, FormSpec] = {}

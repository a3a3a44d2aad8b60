"""The flowengine exception family and the `Problem` record of a definition mistake.

Imports nothing from flowengine, so every layer can raise these.

    FlowEngineError                      exit 1
    ├── DefinitionError(problems)        exit 1   a process YAML (or scenario) is wrong
    ├── HookError                        exit 1   a registered hook raised; cause chained
    ├── UnknownProcess                   exit 3
    ├── UnknownInstance                  exit 3
    ├── InstanceExists                   exit 5
    ├── EventNotAllowed                  exit 4   wrong state / role / final instance
    │   ├── RoleNotAllowed               exit 4
    │   └── GuardRejected                exit 4
    ├── DataValidationError              exit 6   start data, payload or data after actions
    ├── ConcurrencyConflict              exit 5   optimistic lock lost
    ├── MigrationError                   exit 1
    └── StoreError                       exit 7   database unreachable, locked, full
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake in a definition, located as an editor shows it."""

    file: Path | None
    line: int  # 1-based, as editors show it; PyYAML marks are 0-based
    col: int
    path: str  # where in the document, e.g. "transitions[2].guard"
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file or '<string>'}:{self.line}:{self.col}"
        text = f"{where}: {self.path + ': ' if self.path else ''}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class FlowEngineError(Exception):
    """Base of every error flowengine raises on purpose."""

    exit_code: ClassVar[int] = 1


class DefinitionError(FlowEngineError):
    """A definition (process YAML, catalogue, scenario) is invalid; holds every problem found."""

    exit_code: ClassVar[int] = 1

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        files = {p.file for p in self.problems}
        summary = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} in {len(files)} file"
        summary += "s" if len(files) != 1 else ""
        super().__init__("\n".join(str(p) for p in self.problems) + "\n" + summary)


class HookError(FlowEngineError):
    """A registered guard, condition or action raised; the original exception is `__cause__`."""

    def __init__(self, hook: str, kind: str, instance_id: str | None, cause: BaseException) -> None:
        self.hook, self.kind, self.instance_id = hook, kind, instance_id
        super().__init__(f"{kind} hook '{hook}' failed on {instance_id or 'a new instance'}: "
                         f"{type(cause).__name__}: {cause}")


class UnknownProcess(FlowEngineError):
    exit_code: ClassVar[int] = 3

    def __init__(self, process_id: str, known: Sequence[str] = (), version: int | None = None) -> None:
        self.process_id, self.known, self.version = process_id, tuple(known), version
        what = f"'{process_id}'" + (f" version {version}" if version is not None else "")
        text = f"unknown process {what}"
        if known:
            text += f"; known: {', '.join(sorted(known))}"
        super().__init__(text)


class UnknownInstance(FlowEngineError):
    exit_code: ClassVar[int] = 3

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(f"unknown instance '{instance_id}'")


class InstanceExists(FlowEngineError):
    exit_code: ClassVar[int] = 5

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(f"an instance with id '{instance_id}' already exists")


class EventNotAllowed(FlowEngineError):
    """The event can't be fired now; `allowed` lists what can, as data to branch on."""

    exit_code: ClassVar[int] = 4

    def __init__(self, instance_id: str, state: str, event: str, allowed: Sequence[str],
                 message: str | None = None) -> None:
        self.instance_id, self.state, self.event = instance_id, state, event
        self.allowed: tuple[str, ...] = tuple(allowed)
        super().__init__(message or (
            f"can't fire '{event}' on {instance_id}: it is in '{state}'; allowed: "
            f"{', '.join(self.allowed) if self.allowed else 'none'}"))


class RoleNotAllowed(EventNotAllowed):
    def __init__(self, instance_id: str, state: str, event: str, allowed: Sequence[str],
                 roles: Sequence[str], allowed_roles: Sequence[str]) -> None:
        self.roles, self.allowed_roles = tuple(roles), tuple(allowed_roles)
        super().__init__(instance_id, state, event, allowed, (
            f"can't fire '{event}' on {instance_id}: actor roles "
            f"{', '.join(self.roles) or '(none)'} may not; allowed roles: {', '.join(self.allowed_roles)}"))


class GuardRejected(EventNotAllowed):
    def __init__(self, instance_id: str, state: str, event: str, allowed: Sequence[str],
                 guard: str, reason: str) -> None:
        self.guard, self.reason = guard, reason
        super().__init__(instance_id, state, event, allowed,
                         f"can't fire '{event}' on {instance_id}: guard '{guard}' rejected it: {reason}")


class DataValidationError(FlowEngineError):
    """Start data, a payload, or instance data after actions does not fit the process's data schema."""

    exit_code: ClassVar[int] = 6

    def __init__(self, errors: Sequence[str], *, where: str = "data") -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        self.where = where
        super().__init__(f"invalid {where}: " + "; ".join(self.errors))


class ConcurrencyConflict(FlowEngineError):
    exit_code: ClassVar[int] = 5

    def __init__(self, instance_id: str, expected_revision: int, actual_revision: int | None) -> None:
        self.instance_id = instance_id
        self.expected_revision, self.actual_revision = expected_revision, actual_revision
        super().__init__(f"conflict on {instance_id}: expected revision {expected_revision}, "
                         f"it is now {actual_revision}; read it again and retry")


class MigrationError(FlowEngineError):
    pass


class StoreError(FlowEngineError):
    exit_code: ClassVar[int] = 7

"""Process files → validated `Definition`s: safe YAML, pydantic shape, semantic checks, catalogue merge.

`load_directory` is the one entry point the engine uses; `load_process_text` serves tests and stored
versions. Every problem of every file is collected before one `DefinitionError` is raised.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from flowengine.definition.checks import HookNames, check_process
from flowengine.definition.schema import CatalogSpec, FormSpec, Label, ProcessSpec
from flowengine.definition.yamlsafe import Document, format_path, read_yaml, read_yaml_file
from flowengine.errors import DefinitionError, Problem

CATALOG_FILE = "_catalog.yaml"
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Definition:
    """One validated process definition, with what it was read from."""

    spec: ProcessSpec
    source: str  # the YAML text as written
    file: Path | None
    content_hash: str  # of the resolved definition, so a catalogue change is a new version too

    @property
    def process_id(self) -> str:
        return self.spec.process

    def canonical_json(self) -> str:
        return canonical_json(self.spec)


def canonical_json(spec: ProcessSpec) -> str:
    return json.dumps(spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def definition_from_json(text: str, source: str = "", file: Path | None = None) -> Definition:
    """Rebuild a stored version; it was validated when it was first loaded."""
    spec = ProcessSpec.model_validate(json.loads(text))
    return Definition(spec, source, file, _hash(spec))


def _hash(spec: ProcessSpec) -> str:
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def validate_model(model: type[M], doc: Document) -> M:
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise DefinitionError(pydantic_problems(exc, doc, model)) from None


def pydantic_problems(exc: ValidationError, doc: Document, model: type[BaseModel]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            allowed = sorted(_allowed_keys(model, loc[:-1]))
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = (f"did you mean '{close[0]}'? " if close else "") + (
                f"allowed: {', '.join(allowed)}" if allowed else "")
            problem = doc.problem(loc, f"unknown key '{key}'", hint or None, key=True)
        elif kind == "missing":
            problem = doc.problem(loc[:-1], f"missing key '{loc[-1]}'", key=True)
        else:
            message = err["msg"].removeprefix("Value error, ")
            if kind == "literal_error" and "expected" in err.get("ctx", {}):
                message = f"'{err.get('input')}' is not allowed; expected {err['ctx']['expected']}"
            elif kind == "string_pattern_mismatch":
                message = f"'{err.get('input')}' is not a valid id: lower snake_case ASCII ([a-z][a-z0-9_]*)"
            elif kind.endswith("_type") and "input" in err:
                message += f", got {_yaml_type(err['input'])}"
            problem = doc.problem(loc, message)
        marker = (problem.path, problem.message)
        if marker not in seen:
            seen.add(marker)
            problems.append(problem)
    return problems


def _yaml_type(value: Any) -> str:
    names = {str: "text", bool: "a boolean", int: "a number", float: "a number", list: "a list",
             dict: "a mapping", type(None): "nothing"}
    return f"{names.get(type(value), type(value).__name__)} {json.dumps(value, default=str)[:40]}"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> set[str]:
    """Field names (as written in YAML) of the model found at `loc`, for did-you-mean hints."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for name, f in current.model_fields.items()
                          if (f.alias or name) == part or name == part), None)
            if field is None:
                return set()
            current = field.annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return set()
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return {f.alias or name for name, f in current.model_fields.items() if not f.exclude}
    return set()


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        else:
            return tp


def load_catalog(path: Path) -> tuple[CatalogSpec, Document]:
    doc = read_yaml_file(path)
    return validate_model(CatalogSpec, doc), doc


def resolve(spec: ProcessSpec, catalog: CatalogSpec | None) -> ProcessSpec:
    """Copy the catalogue roles and forms a process uses into it, so a stored version stands alone."""
    if catalog is None:
        return spec
    used_roles = _roles_used(spec)
    roles: dict[str, Label] = {r: catalog.roles[r] for r in sorted(used_roles) if r in catalog.roles}
    roles.update(spec.roles)
    used_forms = {f for a in _all_actions(spec) for f in (a.create_form, a.create_new_form, *_form_refs(a))
                  if f}
    forms: dict[str, FormSpec] = {f: catalog.forms[f] for f in sorted(used_forms) if f in catalog.forms}
    forms.update(spec.forms)
    return spec.model_copy(update={"roles": roles, "forms": forms})


def _form_refs(action: Any) -> list[str]:
    refs: list[str] = []
    for mapping in ((action.start.data if action.start else {}), (action.outbox.data if action.outbox else {}),
                    (action.set_ or {})):
        refs.extend(v.form_number for v in mapping.values() if v.form_number)
    return refs


def _roles_used(spec: ProcessSpec) -> set[str]:
    roles = set(spec.start_roles)
    for t in spec.transitions:
        roles.update(t.roles)
    for s in spec.states.values():
        roles.update(s.roles)
    for group in spec.role_groups.values():
        roles.update(group)
    for a in _all_actions(spec):
        roles.update(a.notify or ())
    return roles


def _all_actions(spec: ProcessSpec) -> Iterable[Any]:
    yield from spec.on_start
    for t in spec.transitions:
        yield from t.actions
    for timer in spec.timers.values():
        yield from timer.escalate or ()


def load_process_text(text: str, file: Path | None = None, *, hooks: HookNames | None = None,
                      catalog: CatalogSpec | None = None,
                      others: Mapping[str, ProcessSpec] | None = None) -> Definition:
    doc = read_yaml(text, file)
    spec = resolve(validate_model(ProcessSpec, doc), catalog)
    problems = check_process(spec, doc, hooks, others)
    if problems:
        raise DefinitionError(problems)
    return Definition(spec, text, file, _hash(spec))


def load_directory(directory: Path, *, hooks: HookNames | None = None,
                   files: Iterable[Path] | None = None) -> dict[str, Definition]:
    """Load `*.yaml`/`*.yml` process files (and `_catalog.yaml`); all problems of all files at once."""
    if not directory.is_dir() and files is None:
        raise DefinitionError([Problem(directory, 1, 1, "", "no such directory of process files")])
    catalog = None
    problems: list[Problem] = []
    catalog_path = directory / CATALOG_FILE
    if catalog_path.exists():
        try:
            catalog, _ = load_catalog(catalog_path)
        except DefinitionError as exc:
            problems.extend(exc.problems)
    paths = sorted(files) if files is not None else sorted(
        p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("_"))
    parsed: dict[str, tuple[ProcessSpec, Document, str, Path]] = {}
    for path in paths:
        try:
            doc = read_yaml_file(path)
            spec = resolve(validate_model(ProcessSpec, doc), catalog)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            continue
        if spec.process in parsed:
            problems.append(doc.problem(("process",), f"process id '{spec.process}' is also defined in "
                                        f"{parsed[spec.process][3]}"))
            continue
        if path.stem != spec.process:
            problems.append(doc.problem(("process",), f"process '{spec.process}' is in a file named "
                                        f"{path.name}", f"name the file {spec.process}.yaml"))
        parsed[spec.process] = (spec, doc, path.read_text("utf-8"), path)
    others = {pid: item[0] for pid, item in parsed.items()}
    result: dict[str, Definition] = {}
    for pid, (spec, doc, text, path) in parsed.items():
        found = check_process(spec, doc, hooks, others)
        problems.extend(found)
        if not found:
            result[pid] = Definition(spec, text, path, _hash(spec))
    if problems:
        raise DefinitionError(problems)
    return result


__all__ = ["Definition", "canonical_json", "definition_from_json", "format_path", "load_directory",
           "load_process_text"]

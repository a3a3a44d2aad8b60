"""Safe YAML reading with a location for every node; the only place flowengine parses YAML.

Refuses, with file:line:column: syntax errors, duplicate keys, tags (`!!python/object` and any
other), merge keys, YAML 1.1 booleans written plainly (yes/no/on/off: YAML 1.1 "silently mangles"
them into True/False, YAML 1.2 keeps them strings, so either reading surprises someone), oversized
files, alias bombs and deep nesting. Dates stay strings: field types give them meaning later.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from flowengine.errors import DefinitionError, Problem

MAX_BYTES = 1_000_000
MAX_NODES = 200_000  # after alias expansion
MAX_DEPTH = 64

YAML11_BOOLS = re.compile(r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")
STANDARD_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}

Path_ = tuple[str | int, ...]


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.2-style core schema: only true/false are booleans; timestamps stay strings."""


_Resolver.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in [
    ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")),
    ("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?0|[-+]?[1-9][0-9_]*)$"), list("-+0123456789")),
    ("tag:yaml.org,2002:float",
     re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
     list("-+0123456789.")),
    ("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]),
]:
    _Resolver.add_implicit_resolver(_tag, _regexp, _first)


class _PyEventSource(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's pure-Python scanner and parser, for a PyYAML built without libyaml."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


_EventSource: Any = getattr(yaml.cyaml, "CParser", None) or _PyEventSource


# libyaml (when present) scans and parses; composing stays in Python so written tags, duplicate keys and
# every node's location are seen. The pure-Python scanner was 90% of the load time of a process file.
# libyaml marks a plain scalar with style "" where PyYAML uses None: test `not node.style`.
class _Composer(yaml.composer.Composer, _EventSource, yaml.constructor.SafeConstructor, _Resolver):  # type: ignore[misc]
    def __init__(self, stream: str) -> None:
        _EventSource.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _Resolver.__init__(self)

    # Composed nodes forget whether a tag was written; remember it, since every written tag is refused.
    def compose_scalar_node(self, anchor: Any) -> ScalarNode:
        explicit = self.peek_event().tag not in (None, "!")
        node = super().compose_scalar_node(anchor)
        node.explicit_tag = explicit  # type: ignore[attr-defined]
        return node

    def compose_sequence_node(self, anchor: Any) -> SequenceNode:
        explicit = self.peek_event().tag not in (None, "!")
        node = super().compose_sequence_node(anchor)
        node.explicit_tag = explicit  # type: ignore[attr-defined]
        return node

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        explicit = self.peek_event().tag not in (None, "!")
        node = super().compose_mapping_node(anchor)
        node.explicit_tag = explicit  # type: ignore[attr-defined]
        return node


@dataclass
class Document:
    """Plain data read from YAML, with where each value and key stands."""

    data: Any
    file: Path | None
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """The closest known location of `path` (1-based line, column), walking up to the root."""
        table = self.keys if key else self.values
        for n in range(len(path), -1, -1):
            p = path[:n]
            if p in table:
                return table[p]
            if key and p in self.values:
                return self.values[p]
            if p in self.values:
                return self.values[p]
        return (1, 1)

    def problem(self, path: Path_, message: str, hint: str | None = None, *, key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, format_path(path), message, hint)


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _pos(node: Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, doc: Document, loader: _Composer) -> None:
        self.doc, self.loader = doc, loader
        self.count = 0
        self.problems: list[Problem] = []

    def build(self, node: Node, path: Path_, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig(f"document expands to more than {MAX_NODES} nodes (an alias bomb?)", node)
        if depth > MAX_DEPTH:
            raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels", node)
        self.doc.values.setdefault(path, _pos(node))
        if node.tag not in STANDARD_TAGS or getattr(node, "explicit_tag", False):
            self.problems.append(self.doc.problem(path, f"tag '{node.tag}' is not allowed",
                                                  "process files are plain data: remove the tag"))
            return None
        if isinstance(node, ScalarNode):
            if not node.style and node.tag.endswith(":str") and YAML11_BOOLS.match(node.value):
                self.problems.append(self.doc.problem(
                    path, f"'{node.value}' is a YAML 1.1 boolean",
                    f"write true/false for a flag, or quote it ('{node.value}') for text"))
                return node.value
            return self.loader.construct_object(node)
        if isinstance(node, SequenceNode):
            return [self.build(child, (*path, i), depth + 1) for i, child in enumerate(node.value)]
        assert isinstance(node, MappingNode)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or getattr(key_node, "explicit_tag", False):
                self.problems.append(Problem(self.doc.file, *_pos(key_node), format_path(path),
                                             "a key must be a plain scalar, without a tag"))
                continue
            if key_node.value == "<<" and not key_node.style:
                self.problems.append(Problem(self.doc.file, *_pos(key_node), format_path(path),
                                             "merge keys (<<) are not allowed", "write the keys out"))
                continue
            if not key_node.style and YAML11_BOOLS.match(key_node.value):
                self.problems.append(Problem(
                    self.doc.file, *_pos(key_node), format_path(path), f"'{key_node.value}' is a YAML 1.1 boolean",
                    f"quote the key ('{key_node.value}') if it is a name"))
            raw_key = self.loader.construct_object(key_node)
            key = raw_key if isinstance(raw_key, str) else str(raw_key).lower()
            kpath = (*path, key)
            if key in out:
                first = self.doc.keys.get(kpath, (0, 0))
                self.problems.append(Problem(self.doc.file, *_pos(key_node), format_path(kpath),
                                             f"duplicate key '{key}' (first at line {first[0]})"))
                continue
            self.doc.keys[kpath] = _pos(key_node)
            out[key] = self.build(value_node, kpath, depth + 1)
        return out


def _check_expanded_size(root: Node) -> None:
    """Refuse an alias bomb before building it: sizes are summed over the node graph, where an alias
    is the same node object again, so the cost is that of the distinct nodes, not of the expansion."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: deep nesting is refused later, with its own message
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = ([] if isinstance(node, ScalarNode) else
                    list(node.value) if isinstance(node, SequenceNode) else
                    [part for pair in node.value for part in pair])
        if not children_done:
            if id(node) in visiting:
                raise _TooBig("an alias refers to a node that contains it (a recursive structure)", node)
            visiting.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        visiting.discard(id(node))
        size = 1 + sum(sizes.get(id(child), 1) for child in children)
        if size > MAX_NODES:
            raise _TooBig(f"document expands to more than {MAX_NODES} nodes (an alias bomb?)", node)
        sizes[id(node)] = size


class _TooBig(Exception):
    def __init__(self, message: str, node: Node) -> None:
        super().__init__(message)
        self.node = node


def read_yaml(text: str, file: Path | None = None, *, max_bytes: int = MAX_BYTES) -> Document:
    """Parse one YAML document into plain data with locations; raise DefinitionError on any problem."""
    doc = Document(None, file)
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise DefinitionError([Problem(file, 1, 1, "", f"file is larger than {max_bytes} bytes",
                                       "split the process or remove generated content")])
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DefinitionError([Problem(file, 1, 1, "", f"not valid Unicode text: {exc.reason} at character "
                                                       f"{exc.start}")]) from None
    loader = _Composer(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise DefinitionError([Problem(file, line, col, "", f"YAML syntax error: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise DefinitionError([Problem(file, 1, 1, "", f"YAML error: {exc}")]) from None
    except RecursionError:
        # PyYAML composes recursively: a document nested thousands deep overflows before our own limit.
        raise DefinitionError([Problem(file, 1, 1, "", f"nesting deeper than {MAX_DEPTH} levels")]) from None
    finally:
        loader.dispose()
    if node is None:
        raise DefinitionError([Problem(file, 1, 1, "", "the file is empty")])
    builder = _Builder(doc, loader)
    try:
        _check_expanded_size(node)
        doc.data = builder.build(node, (), 0)
    except _TooBig as exc:
        raise DefinitionError([Problem(file, *_pos(exc.node), "", str(exc))]) from None
    except RecursionError:
        raise DefinitionError([Problem(file, 1, 1, "", "document is nested too deeply")]) from None
    if builder.problems:
        raise DefinitionError(builder.problems)
    return doc


def read_yaml_file(path: Path, *, max_bytes: int = MAX_BYTES) -> Document:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DefinitionError([Problem(path, 1, 1, "", f"file is larger than {max_bytes} bytes")])
        raw = path.read_bytes()
    except OSError as exc:
        raise DefinitionError([Problem(path, 1, 1, "", f"can't read file: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError([Problem(path, 1, 1, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}")]) from None
    return read_yaml(text, path, max_bytes=max_bytes)


def walk_paths(data: Any, path: Path_ = ()) -> Iterator[Path_]:
    yield path
    if isinstance(data, dict):
        for k, v in data.items():
            yield from walk_paths(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from walk_paths(v, (*path, i))

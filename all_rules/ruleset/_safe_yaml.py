"""A YAML loader that remembers where every value came from.

Ruleset errors must name the file and line; PyYAML's composed node tree carries marks, so
the document is composed once, constructed with the safe constructor (never executing
anything), and walked in parallel to record the line of every path. Duplicate keys, which
PyYAML silently collapses, are refused.

Bounded: a file over ``MAX_FILE_BYTES`` is refused unread; anchors and aliases (``&a``,
``*a``, merge keys) are refused — an alias can expand a few lines into billions of nodes
("billion laughs") or into a cycle — and so is nesting deeper than ``MAX_DEPTH`` levels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from all_rules.exceptions import RulesetLoadError

PathKey = tuple[str | int, ...]
MAX_FILE_BYTES = 4 * 2**20
"""The largest ruleset or overlay file read (4 MiB; the shipped files are under 40 KB)."""
MAX_DEPTH = 50
"""Levels of nesting a ruleset file may have (the shipped files need at most 13)."""


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing anchors and aliases and nesting deeper than MAX_DEPTH."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.MarkedYAMLError(None, None, "anchors and aliases (&name, *name, <<) "
                                       "are not allowed in rulesets; write the value out",
                                       event.start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(None, None, f"nested deeper than {MAX_DEPTH} "
                                           "levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class Located:
    """A loaded document plus the line (1-based) of each path inside it."""

    def __init__(self, data: Any, lines: dict[PathKey, int], file: str) -> None:
        self.data = data
        self.lines = lines
        self.file = file

    def line_of(self, path: PathKey) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], file: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise RulesetLoadError(file, key_node.start_mark.line + 1,
                                       f"duplicate key {key!r} (first at line {seen[key]})")
            seen[key] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines, file)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines, file)


def load_text(text: str, file: str) -> Located:
    """Parse one YAML document with positions; raises RulesetLoadError on bad YAML."""
    try:
        loader = _BoundedLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return Located(None, {}, file)
            lines: dict[PathKey, int] = {}
            _walk(node, (), lines, file)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise RulesetLoadError(file, line, f"invalid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise RulesetLoadError(file, None, f"invalid YAML: {error}") from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH stops nesting long before
        raise RulesetLoadError(file, None, f"nested deeper than {MAX_DEPTH} levels") from None
    return Located(data, lines, file)


def load_file(path: Path, display: str | None = None) -> Located:
    """Read and parse one YAML file; ``display`` is the name used in messages."""
    name = display or str(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise RulesetLoadError(name, None, f"larger than {MAX_FILE_BYTES:,} bytes")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise RulesetLoadError(name, None, "no such file") from None
    except UnicodeDecodeError as error:
        raise RulesetLoadError(name, None, f"not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise RulesetLoadError(name, None, f"cannot read ({error.strerror})") from None
    return load_text(text, name)

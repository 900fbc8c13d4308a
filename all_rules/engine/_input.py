"""Untrusted input read within bounds: one JSON document, and what error text may echo.

Every command that reads one patient (``assess``, ``explain``) reads through
``read_bounded_json``: at most ``limit`` bytes are read (one more, to tell that there is
more), strictly (UTF-8, no duplicate keys, no ``NaN``/``Infinity``, no integers or decimals
longer than ``NUMBER_CHARS`` characters, at most ``MAX_DEPTH`` levels of nesting), and every
refusal is an ``UnreadableInputError`` whose text echoes at most ``EXCERPT_CHARS``
characters of the offending value. See docs/security.md.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, BinaryIO

from all_rules.exceptions import UnreadableInputError

__all__ = ["DEFAULT_LIMIT", "excerpt", "input_limit", "printable", "read_bounded_json"]

DEFAULT_LIMIT = 4 * 2**20
"""Bytes one patient document may have (4 MiB; a patient is about 1 KB)."""
LIMIT_VARIABLE = "ALL_RULES_MAX_INPUT_BYTES"
MAX_DEPTH = 64
"""Levels of nesting (objects and arrays) a document may have; facts need four."""
NUMBER_CHARS = 40
"""Characters a JSON number may have (``int()`` of 5,000 digits costs, and raises)."""
EXCERPT_CHARS = 60
"""Characters of an offending value an error message echoes at most."""


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters (saying how long it was) when longer."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<an integer of {value.bit_length():,} bits>"
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with control characters (and line and direction overrides) escaped as
    ``\\xNN`` / ``\\uNNNN``: an id written into text output cannot forge a line."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def input_limit(given: int | None = None) -> int:
    """The byte limit: ``given``, else ``$ALL_RULES_MAX_INPUT_BYTES``, else the default."""
    if given is not None:
        return given
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise UnreadableInputError(f"{LIMIT_VARIABLE}: not a positive number of bytes: "
                                   f"{excerpt(text)}")
    return int(text)


class _RefusedError(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _RefusedError(f"duplicate key {excerpt(key)}")
        result[key] = value
    return result


def _integer(text: str) -> int:
    if len(text) > NUMBER_CHARS:
        raise _RefusedError(f"a number of {len(text):,} digits (at most {NUMBER_CHARS} characters)")
    return int(text)


def _decimal(text: str) -> float:
    if len(text) > NUMBER_CHARS:
        raise _RefusedError(f"a number of {len(text):,} characters (at most {NUMBER_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        raise _RefusedError(f"the number {excerpt(text)} is out of range")
    return value


def _constant(name: str) -> Any:
    raise _RefusedError(f"{name} is not a number JSON allows")


def _too_deep(data: Any) -> bool:
    """Whether ``data`` nests deeper than ``MAX_DEPTH`` (walked level by level, no recursion)."""
    level, depth = [data], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            return True
        level = [child for item in level
                 for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, dict | list)]
    return False


def _read(handle: BinaryIO, limit: int, source: str) -> bytes:
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnreadableInputError(
            f"{source}: larger than the input limit of {limit:,} bytes (raise it with "
            f"--max-input-bytes or {LIMIT_VARIABLE}); nothing beyond the limit was read")
    return data


def parse_json(data: bytes, source: str) -> Any:
    """One JSON document from bytes, strictly (see the module docstring)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnreadableInputError(f"{source}: not UTF-8 text (byte {error.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_int=_integer,
                           parse_float=_decimal, parse_constant=_constant)
    except _RefusedError as error:
        raise UnreadableInputError(f"{source}: {error}") from None
    except json.JSONDecodeError as error:
        raise UnreadableInputError(f"{source}: not valid JSON: {error.msg} at line "
                                   f"{error.lineno}, column {error.colno}") from None
    except RecursionError:
        raise UnreadableInputError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    if isinstance(value, dict | list) and _too_deep(value):
        raise UnreadableInputError(f"{source}: nested deeper than {MAX_DEPTH} levels")
    return value


def read_bounded_json(source: str | Path, limit: int | None = None) -> Any:
    """Read one JSON document from a file, or from standard input for ``-``, within
    ``limit`` bytes (default: ``input_limit()``); raises UnreadableInputError (exit 2)."""
    limit = input_limit(limit)
    name = str(source)
    try:
        if name == "-":
            data = _read(sys.stdin.buffer, limit, "<stdin>")
        else:
            with Path(source).open("rb") as handle:
                data = _read(handle, limit, name)
    except FileNotFoundError:
        raise UnreadableInputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise UnreadableInputError(f"{name}: is a directory") from None
    except OSError as error:
        raise UnreadableInputError(f"{name}: cannot read: {error.strerror}") from None
    return parse_json(data, "<stdin>" if name == "-" else name)

"""Wording templates: ``{fact}``, ``{$parameter}``, and ``[[optional segments]]``.

A deliberately tiny language: no attribute access, no expressions, nothing executed. A
segment in ``[[ ]]`` is kept only when every placeholder inside it is known, which lets a
reason mention a value "when given" without ever printing a guess. Templates are parsed
once, when the ruleset loads; rendering is a join.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import attrs

_PLACEHOLDER = re.compile(r"\{(\$?[a-z_][a-z0-9_.]*)\}")
_SEGMENT = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)

#: Placeholders that are not facts or parameters; the renderer supplies them.
SPECIALS = ("evidence", "bsa_source")

# A part is a literal string, or a placeholder name wrapped in a 1-tuple, or a segment: a
# tuple of such parts wrapped in a list.
Part = str | tuple[str] | list["Part"]


def _parts(source: str) -> list[Part]:
    parts: list[Part] = []
    position = 0
    for match in _PLACEHOLDER.finditer(source):
        if match.start() > position:
            parts.append(source[position:match.start()])
        parts.append((match.group(1),))
        position = match.end()
    if position < len(source):
        parts.append(source[position:])
    return parts


def _compile(source: str) -> list[Part]:
    parts: list[Part] = []
    position = 0
    for match in _SEGMENT.finditer(source):
        parts.extend(_parts(source[position:match.start()]))
        parts.append(_parts(match.group(1)))
        position = match.end()
    parts.extend(_parts(source[position:]))
    return parts


def _tidy(text: str) -> str:
    return re.sub(r"\s{2,}", " ", text).replace(" .", ".").replace(" ,", ",").strip()


@attrs.frozen
class Template:
    source: str
    _parts: list[Part] = attrs.field(init=False, eq=False, repr=False)
    _static: str | None = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        parts = _compile(re.sub(r"\s+", " ", self.source).strip())
        object.__setattr__(self, "_parts", parts)
        static = _tidy(self.source) if all(isinstance(p, str) for p in parts) else None
        object.__setattr__(self, "_static", static)

    def names(self) -> Iterator[str]:
        """Every placeholder name, parameters with their leading ``$``."""
        for match in _PLACEHOLDER.finditer(self.source):
            yield match.group(1)

    def problems(self) -> list[str]:
        """Syntax problems: unbalanced braces or segments."""
        stripped = _PLACEHOLDER.sub("", _SEGMENT.sub(lambda m: m.group(1), self.source))
        found = []
        if "{" in stripped or "}" in stripped:
            found.append("stray `{` or `}` (placeholders look like {fact} or {$parameter})")
        if "[[" in stripped or "]]" in stripped:
            found.append("unbalanced `[[ ]]` segment")
        return found

    def render(self, lookup: Callable[[str], str | None]) -> str:
        """Fill placeholders; ``lookup`` returns None for an unknown value."""
        if self._static is not None:
            return self._static
        out: list[str] = []
        dropped = False
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, tuple):
                value = lookup(part[0])
                out.append("unknown" if value is None else value)
            else:
                filled = []
                for inner in part:
                    if isinstance(inner, tuple):
                        value = lookup(inner[0])
                        if value is None:
                            break
                        filled.append(value)
                    else:
                        filled.append(str(inner))
                else:
                    out.extend(filled)
                    continue
                dropped = True
        return _tidy("".join(out)) if dropped else "".join(out)

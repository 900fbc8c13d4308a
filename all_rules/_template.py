"""Wording templates: ``{fact}``, ``{$parameter}``, and ``[[optional segments]]``.

A deliberately tiny language: no attribute access, no expressions, nothing executed. A
segment in ``[[ ]]`` is kept only when every placeholder inside it is known, which lets a
reason mention a value "when given" without ever printing a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import attrs

_PLACEHOLDER = re.compile(r"\{(\$?[a-z_][a-z0-9_.]*)\}")
_SEGMENT = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)

#: Placeholders that are not facts or parameters; the renderer supplies them.
SPECIALS = ("evidence", "bsa_source")


@attrs.frozen
class Template:
    source: str

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

        def segment(match: re.Match[str]) -> str:
            body = match.group(1)
            if any(lookup(m.group(1)) is None for m in _PLACEHOLDER.finditer(body)):
                return ""
            return body

        def fill(match: re.Match[str]) -> str:
            value = lookup(match.group(1))
            return "unknown" if value is None else value

        text = _PLACEHOLDER.sub(fill, _SEGMENT.sub(segment, self.source))
        return re.sub(r"\s{2,}", " ", text).replace(" .", ".").replace(" ,", ",").strip()

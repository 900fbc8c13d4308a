"""HTML pages for tests: parsing and checking a report page, opening it in Chromium."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from .chromium import PageVisit, visit


class _Page(HTMLParser):
    """Collects headings, tables, external references and the visible text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[int] = []
        self.tables = 0
        self.tables_with_th = 0
        self.references: list[str] = []
        self.text: list[str] = []
        self._in_table_th = False
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "table":
            self.tables += 1
            self._in_table_th = False
        if tag == "th" and not self._in_table_th:
            self._in_table_th = True
            self.tables_with_th += 1
        if tag in ("style", "title"):
            self._skip += 1
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "data") and value and \
                    not value.startswith(("#", "data:")):
                self.references.append(value)
            if name == "style" and value and re.search(r"url\((?!#)", value):
                self.references.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def check_page(page: str) -> _Page:
    """Every report: headings never skip a level, every table has header cells, nothing is
    fetched (no reference out of the page, no @import or url() in the CSS), A4 print rules."""
    parsed = _parse(page)
    assert parsed.headings[0] == 1
    for before, after in zip(parsed.headings, parsed.headings[1:], strict=False):
        assert after <= before + 1, f"heading h{before} followed by h{after}"
    assert parsed.tables == parsed.tables_with_th
    assert parsed.references == []
    assert "@import" not in page
    assert not re.search(r"url\((?!#)", page), "a url() that is not an in-page reference"
    assert "<script" not in page
    assert "@page { size: A4" in page
    assert "break-inside: avoid" in page
    return parsed


SUMMARY: dict[str, Any] = {
    "patients": 1_000_000, "assessed": 999_990, "invalid_rows": 10, "engine_errors": 0,
    "risk_groups": {"high": 600_000, "indeterminate": 50_000, "provisional_standard": 100_000,
                    "standard": 200_000, "very_high": 49_990},
    "recommendations": {"cns.no_routine_cranial_irradiation": 870_123,
                        "data.ph_status": 12_345,
                        "audit.missing_cns_prophylaxis": 4_321,
                        "risk.ph_positive": 111_111},
}


def _screenshots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("ALL_RULES_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _open(page: Path, selectors: Sequence[str], shot: Path) -> PageVisit:
    seen = visit(page, selectors)
    shot.write_bytes(seen.screenshot)
    assert seen.screenshot.startswith(b"\x89PNG")
    assert seen.console_errors == ()
    assert seen.external_requests == ()
    return seen



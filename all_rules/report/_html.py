"""The page shell of every HTML report: one self-contained page, printable on A4.

Reports (patient, cohort, and any later one such as a ruleset diff) are a title and a list of
:class:`Section`; ``render_page`` wraps them in one HTML document with the house CSS inlined.
No external script, font, style or image: the page works offline and in an e-mail. Colour is
never the only signal (each coloured label also says its word), headings go in order (h1 for
the page, h2 per section, h3 inside), and every table has header cells.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = ["Section", "badge", "card", "definition_list", "escape", "render_page", "table",
           "write_page"]


def escape(value: Any) -> str:
    """Any value as HTML text (``None`` shows as *unknown*)."""
    if value is None:
        return '<span class="unknown">unknown</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return html.escape(str(value), quote=True)


@attrs.frozen
class Section:
    """One h2 section of a report; ``body`` is HTML (built with the helpers here)."""

    title: str
    body: str
    id: str = ""
    intro: str = ""
    """A sentence under the heading, plain text."""


CSS = """
:root { --ink: #1d2433; --muted: #5b6475; --line: #d5d9e0; --paper: #ffffff;
  --info: #1f5fa8; --info-bg: #e8f0fb; --warning: #8a5300; --warning-bg: #fff3dc;
  --critical: #a1142b; --critical-bg: #fde8eb; --held: #1d6b38; --held-bg: #e4f4e9;
  --failed: #a1142b; --failed-bg: #fde8eb; --unknown: #6b4f00; --unknown-bg: #fff5cc; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: var(--ink); background: var(--paper); margin: 0 auto; max-width: 60rem;
  padding: 1.5rem; line-height: 1.45; font-size: 15px; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 1.6rem 0 .6rem; border-bottom: 2px solid var(--line);
  padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin: .2rem 0 .4rem; }
h4 { font-size: .95rem; margin: .8rem 0 .3rem; }
p { margin: .3rem 0; }
.meta, .intro { color: var(--muted); font-size: .9rem; }
.card { border: 1px solid var(--line); border-left: 6px solid var(--info); border-radius: 6px;
  padding: .7rem .9rem; margin: .6rem 0; break-inside: avoid; page-break-inside: avoid; }
.card.sev-warning { border-left-color: var(--warning); }
.card.sev-critical { border-left-color: var(--critical); }
.badge { display: inline-block; font-size: .75rem; font-weight: 700; letter-spacing: .03em;
  text-transform: uppercase; border-radius: 3px; padding: .05rem .4rem; margin-right: .35rem;
  border: 1px solid currentColor; }
.badge.sev-info { color: var(--info); background: var(--info-bg); }
.badge.sev-warning { color: var(--warning); background: var(--warning-bg); }
.badge.sev-critical { color: var(--critical); background: var(--critical-bg); }
.badge.kind { color: var(--muted); background: #f3f4f6; }
.badge.out-held { color: var(--held); background: var(--held-bg); }
.badge.out-failed { color: var(--failed); background: var(--failed-bg); }
.badge.out-unknown { color: var(--unknown); background: var(--unknown-bg); }
.unknown { font-style: italic; color: var(--unknown); }
table { border-collapse: collapse; width: 100%; margin: .4rem 0; font-size: .88rem; }
caption { text-align: left; color: var(--muted); font-size: .85rem; padding-bottom: .2rem; }
th, td { border: 1px solid var(--line); padding: .25rem .45rem; text-align: left;
  vertical-align: top; overflow-wrap: break-word; }
td.num, th.num { white-space: nowrap; }
td small { color: var(--muted); }
th { background: #f3f4f6; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem .8rem;
  margin: .3rem 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
.risk { font-size: 1.3rem; font-weight: 700; }
ul.tree, ul.tree ul { list-style: none; padding-left: 1.1rem; margin: .15rem 0; }
ul.tree li { margin: .1rem 0; }
figure { margin: .6rem 0; break-inside: avoid; page-break-inside: avoid; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: .85rem; }
footer { margin-top: 2rem; color: var(--muted); font-size: .8rem;
  border-top: 1px solid var(--line); padding-top: .5rem; }
@page { size: A4; margin: 14mm 12mm; }
@media print { body { max-width: none; padding: 0; font-size: 11pt; }
  h2 { break-after: avoid; page-break-after: avoid; }
  a { color: inherit; text-decoration: none; } }
"""


def render_page(title: str, sections: Sequence[Section], *, subtitle: str = "",
                footer: str = "") -> str:
    """One complete, self-contained HTML page: ``title`` as h1, each section as an h2."""
    parts = ['<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
             '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
             # Nothing may be fetched: the page is a document, not an application.
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
             "style-src 'unsafe-inline'; img-src data:\">\n",
             f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
             f"<header>\n<h1>{escape(title)}</h1>\n"]
    if subtitle:
        parts.append(f'<p class="meta">{escape(subtitle)}</p>\n')
    parts.append("</header>\n<main>\n")
    for section in sections:
        anchor = f' id="{escape(section.id)}"' if section.id else ""
        parts.append(f"<section{anchor}>\n<h2>{escape(section.title)}</h2>\n")
        if section.intro:
            parts.append(f'<p class="intro">{escape(section.intro)}</p>\n')
        parts.append(section.body + "\n</section>\n")
    parts.append("</main>\n")
    if footer:
        parts.append(f"<footer>{escape(footer)}</footer>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts)


def badge(word: str, css: str) -> str:
    """A coloured label that also says its word (colour is never the only signal)."""
    return f'<span class="badge {escape(css)}">{escape(word)}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, caption: str = "",
          numeric: Sequence[int] = (), raw: Sequence[int] = ()) -> str:
    """A table with a header row (``th scope=col``); ``numeric`` columns are right-aligned,
    ``raw`` columns are HTML already."""
    head = "".join(f'<th scope="col"{" class=num" if i in numeric else ""}>{escape(h)}</th>'
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            shown = cell if i in raw else escape(cell)
            if i in numeric and isinstance(cell, int):
                shown = f"{cell:,}"
            cells.append(f'<td{" class=num" if i in numeric else ""}>{shown}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return (f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}"
            "</tbody></table>")


def definition_list(pairs: Iterable[tuple[str, Any]]) -> str:
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in pairs)
    return f'<dl class="facts">{items}</dl>'


def card(heading: str, body: str, *, css: str = "", level: int = 3) -> str:
    """A block that is never cut across pages; ``heading`` is HTML."""
    return (f'<article class="card {escape(css)}"><h{level}>{heading}</h{level}>'
            f"{body}</article>")


def write_page(path: Path, text: str) -> None:
    """Write a page next to its final name (``.NAME.partial``), then move it in place: a
    report is whole or absent, never half a page."""
    temp = path.with_name(f".{path.name}.partial")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise

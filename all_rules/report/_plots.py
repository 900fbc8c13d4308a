"""Plots for the reports: matplotlib figures inlined as SVG text (``pip install
'all-rules[report]'``).

Text stays text in the SVG (``svg.fonttype: none``), so a screen reader and a search find it;
each figure carries a ``<title>`` and ``role="img"`` with its description. The output is
deterministic (no date in the metadata) so two reports of one summary are byte-identical.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from all_rules.exceptions import AllRulesError

from ._html import escape

__all__ = ["PlotUnavailableError", "bar_chart", "figure", "require_matplotlib", "stacked_bar_chart"]

#: Colours readable by colour-blind readers (Okabe–Ito); bars also carry their numbers.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")


class PlotUnavailableError(AllRulesError, ImportError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Raise PlotUnavailableError (with the install line) unless matplotlib can be imported."""
    _pyplot()


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailableError("plots in reports need matplotlib: "
                              "pip install 'all-rules[report]'") from None
    matplotlib.use("svg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "all-rules",
                         "font.family": "DejaVu Sans", "font.size": 9})
    return plt


def _svg(figure: Any, description: str) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    # An accessible name, and no fixed size in pt: the CSS scales the figure to the page.
    text = re.sub(r"<svg ", f'<svg role="img" aria-label="{escape(description)}" ', text,
                  count=1)
    head_end = text.index(">") + 1
    return text[:head_end] + f"<title>{escape(description)}</title>" + text[head_end:]


def bar_chart(labels: Sequence[str], values: Sequence[float], *, description: str,
              xlabel: str = "patients", colors: Sequence[str] | None = None) -> str:
    """A horizontal bar chart as inline SVG, largest bar on top, each bar with its count."""
    plt = _pyplot()
    height = max(1.2, 0.28 * len(labels) + 0.6)
    figure, axes = plt.subplots(figsize=(7.2, height))
    positions = list(range(len(labels)))[::-1]
    bars = axes.barh(positions, values, color=list(colors) if colors else PALETTE[0])
    axes.set_yticks(positions, labels=list(labels))
    axes.set_xlabel(xlabel)
    axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=2, fontsize=8)
    _style(axes, len(labels))
    return _svg(figure, description)


def stacked_bar_chart(labels: Sequence[str], series: Mapping[str, Sequence[float]], *,
                      description: str, xlabel: str = "items") -> str:
    """Horizontal bars stacked by series (e.g. phases), with a legend and bar totals."""
    plt = _pyplot()
    height = max(1.4, 0.3 * len(labels) + 0.9)
    figure, axes = plt.subplots(figsize=(7.2, height))
    positions = list(range(len(labels)))[::-1]
    left = [0.0] * len(labels)
    hatches = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")
    for index, (name, values) in enumerate(series.items()):
        axes.barh(positions, values, left=left, label=name,
                  color=PALETTE[index % len(PALETTE)], hatch=hatches[index % len(hatches)],
                  edgecolor="white", linewidth=0.5)
        left = [a + b for a, b in zip(left, values, strict=True)]
    for position, total in zip(positions, left, strict=True):
        axes.text(total, position, f" {total:,.0f}", va="center", fontsize=8)
    axes.set_yticks(positions, labels=list(labels))
    axes.set_xlabel(xlabel)
    _style(axes, len(labels))
    axes.legend(loc="lower right", fontsize=8, frameon=False)
    return _svg(figure, description)


def _style(axes: Any, bars: int) -> None:
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    axes.spines[["top", "right"]].set_visible(False)
    axes.margins(x=0.12)
    # Counts: whole-number ticks only (no "0 0 1 1" on a small axis), and a bar as thick
    # with one label as with twenty.
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes.set_ylim(-0.6, bars - 0.4)


def figure(svg: str, caption: str) -> str:
    """An SVG plot in a captioned figure (kept whole on a printed page)."""
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"

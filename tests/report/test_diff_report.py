"""The diff report (``all-rules diff … --report``): the summary's numbers as a page with plots,
self-contained and accessible, also in a real browser."""

from __future__ import annotations

import copy
import html
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from all_rules.cli import main
from all_rules.report._diff import PLOTTED_RULES, diff_page

from ..conftest import FIXTURES
from ..support.chromium import chromium_path, in_ci
from ..support.pages import _open, _screenshots, check_page

DIFF = FIXTURES / "diff"


def _run(tmp_path: Path, *extra: str, old: Path = DIFF / "old", new: Path = DIFF / "new",
         source: Path = DIFF / "patients.jsonl") -> tuple[int, str, dict[str, Any]]:
    report, summary = tmp_path / "report.html", tmp_path / "summary.json"
    code = main(["diff", str(source), "--from", str(old), "--to", str(new),
                 "--out", str(tmp_path / "changes.jsonl"), "--summary", str(summary),
                 "--report", str(report), "--workers", "1", "--quiet", *extra])
    return code, report.read_text(encoding="utf-8"), json.loads(summary.read_text())


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    code, page, summary = _run(tmp_path_factory.mktemp("diff-report"))
    assert code == 0
    return page, summary


def _row(*cells: str) -> str:
    """A table row's cells as the page writes them (numbers right-aligned)."""
    return "".join(cells)


def _num(n: int) -> str:
    return f"<td class=num>{n:,}</td>"


def _td(text: str) -> str:
    return f"<td>{html.escape(text)}</td>"


def test_report_numbers_are_the_summary_numbers(
        fixture_report: tuple[str, dict[str, Any]]) -> None:
    """The hand-checked fixture pair (old → new, tests/cohort/test_diff.py): every count of the
    summary is in the page — overview, kinds, transitions, and each rule's added / removed /
    changed with its fields and example patients."""
    page, summary = fixture_report
    parsed = check_page(page)
    text = " ".join(parsed.text)
    # The hand-checked figures (tests/cohort/test_diff.py), then the summary's own, cell by cell.
    assert re.search(r"<dt>Patients \(rows read\)</dt><dd>8</dd>", page)
    assert re.search(r"<dt>Assessed \(under both\)</dt><dd>7</dd>", page)
    assert "<dt>Changed</dt><dd>5 (71.4 % of assessed)</dd>" in page
    assert "<dt>Unchanged</dt><dd>2</dd>" in page
    assert "<dt>Invalid rows</dt><dd>1</dd>" in page
    assert "<dt>Engine errors</dt><dd>0</dd>" in page
    for side in ("from", "to"):
        info = summary[side]
        assert f"<code>{info['digest']}</code>" in page.replace("<wbr>", "")
        assert f"<td>{info['version']}</td>" in page
    assert (summary["from"]["version"], summary["to"]["version"]) == ("1.0.0", "2.0.0")
    names = {"risk_group": "Risk group", "features": "Risk features",
             "missing": "Missing facts", "added": "Items added", "removed": "Items removed",
             "changed": "Items changed"}
    assert {k: v["patients"] for k, v in summary["changes"].items()} == {
        "risk_group": 1, "features": 1, "missing": 0, "added": 1, "removed": 2, "changed": 4}
    for kind, count in summary["changes"].items():
        share = f"{100 * count['patients'] / summary['assessed']:.1f} %"
        assert _row(_td(names[kind]), _num(count["patients"]),
                    f"<td class=num>{share}</td>", _td(", ".join(count["examples"]))) in page
    assert _row(_td("Items changed"), _num(4), "<td class=num>57.1 %</td>",
                _td("P3-reworded, P4-added-removed, P5-evidence, P7-dose")) in page
    (transition,) = summary["risk_groups"]
    assert _row(_td("high"), _td("standard"), _num(1), "<td class=num>14.3 %</td>",
                _td("P2-group")) in page
    assert transition["examples"] == ["P2-group"]
    assert set(summary["rules"]) == {"rec.reword", "rec.gone", "rec.new", "risk.wbc",
                                     "rec.dose"}
    for rule_id, rule in summary["rules"].items():
        fields = ", ".join(f"{f} {n}" for f, n in rule["fields"].items()) or "–"
        assert _row(f"<td><code>{rule_id}</code></td>", _num(rule["patients"]),
                    _num(rule["added"]), _num(rule["removed"]), _num(rule["changed"]),
                    _td(fields), _td(", ".join(rule["examples"]))) in page
    assert _row("<td><code>rec.reword</code></td>", _num(2), _num(0), _num(0), _num(2),
                _td("kind 2, text 2"), _td("P3-reworded, P4-added-removed")) in page
    # Three plots: by kind, by transition, per rule (stacked by added / removed / changed).
    assert page.count("<svg") == 3
    assert 'aria-label="Patients per rule, by added, removed or changed"' in page
    for series in ("added", "removed", "changed"):  # the legend says what each colour is
        assert re.search(rf"<text[^>]*>{series}</text>", page)
    assert "high → standard" in text
    assert re.findall(r"<h2>(.*?)</h2>", page) == [
        "Overview", "Changes by kind", "Risk-group transitions", "Rules"]


def test_plot_axes_count_whole_patients(fixture_report: tuple[str, dict[str, Any]]) -> None:
    """Small counts (1, 2, 4 patients) get whole-number ticks, each once — not "0 0 1 1 2"
    (fractional ticks printed as integers)."""
    page, _ = fixture_report
    plots = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(plots) == 3
    for plot in plots:
        ticks = re.findall(r'<g id="xtick_\d+">.*?<text[^>]*>([^<]*)</text>', plot, re.S)
        assert ticks == [str(n) for n in range(len(ticks))]
        assert len(ticks) >= 2


def test_report_is_drawn_from_the_summary_alone(
        fixture_report: tuple[str, dict[str, Any]]) -> None:
    """The page --report writes is the page of the --summary file: nothing but the summary
    (bounded by rule ids, never by patients) goes into it; and the same bytes every time."""
    page, summary = fixture_report
    assert diff_page(summary, source="patients.jsonl") == page
    assert diff_page(summary) == diff_page(copy.deepcopy(summary))


def test_example_ids_and_rule_ids_are_escaped(
        fixture_report: tuple[str, dict[str, Any]]) -> None:
    """Patient ids come from the input: markup in one is shown as text, never run."""
    _, summary = fixture_report
    hostile = copy.deepcopy(summary)
    evil = '<script>alert("x")</script>'
    hostile["changed"]["examples"] = [evil]
    hostile["changes"]["changed"]["examples"] = [evil, "P&Q"]
    hostile["risk_groups"][0]["examples"] = [evil]
    hostile["rules"]["<b>rule</b>"] = {**hostile["rules"]["rec.reword"], "examples": [evil]}
    page = diff_page(hostile)
    check_page(page)
    assert "<script" not in page
    assert "<b>rule" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<code>&lt;b&gt;rule&lt;/b&gt;</code>" in page
    assert "P&amp;Q" in page


def test_a_guideline_against_itself_says_nothing_changed(tmp_path: Path) -> None:
    """No change: the page says so in words (no empty plot), with the counts at zero."""
    code, page, summary = _run(tmp_path, new=DIFF / "old")
    assert code == 0
    assert summary["changed"]["patients"] == 0
    check_page(page)
    assert "<svg" not in page
    assert "No patient's assessment changed." in page
    assert "No patient changed risk group." in page
    assert "No item was added, removed or changed." in page
    assert "<dt>Changed</dt><dd>0 (0.0 % of assessed)</dd>" in page


def test_many_rules_plot_the_most_touched_and_table_every_one(
        fixture_report: tuple[str, dict[str, Any]]) -> None:
    _, summary = fixture_report
    many = copy.deepcopy(summary)
    many["rules"] = {f"rule.{i:03d}": {"patients": i + 1, "added": i + 1, "removed": 0,
                                       "changed": 0, "fields": {}, "examples": [f"P{i}"]}
                     for i in range(PLOTTED_RULES + 10)}
    page = diff_page(many)
    check_page(page)
    rules_section = page[page.index('<section id="rules">'):]
    figure, table = rules_section.split("</figure>", 1)
    plotted = set(re.findall(r"rule\.\d{3}", figure))
    assert plotted == {f"rule.{i:03d}" for i in range(10, PLOTTED_RULES + 10)}  # the most
    assert all(f"<code>rule.{i:03d}</code>" in table for i in range(PLOTTED_RULES + 10))
    assert f"The {PLOTTED_RULES} most often touched of {PLOTTED_RULES + 10} rules" in figure


def test_overlay_files_and_overrides_are_named(tmp_path: Path) -> None:
    overlay = tmp_path / "ours.yaml"
    overlay.write_text("parameters:\n  wbc_limit: 45\n", encoding="utf-8")
    code, page, summary = _run(tmp_path, "--to-overlay", str(overlay), "--from-param",
                               "wbc_limit=35", new=DIFF / "old")
    assert code == 0
    check_page(page)
    assert summary["to"]["overrides"] == {"wbc_limit": 45.0}
    shown = page.replace("<wbr>", "")
    assert "<td>wbc_limit = 35</td><td>none</td>" in shown  # from: a param, no overlay file
    assert "<td>wbc_limit = 45</td><td>ours.yaml</td>" in shown


def test_report_without_matplotlib_is_refused_before_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Like cohort --report: refused up front, naming the extra to install; nothing
    written."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    out = tmp_path / "changes.jsonl"
    with pytest.raises(SystemExit) as exited:
        main(["diff", str(DIFF / "patients.jsonl"), "--from", str(DIFF / "old"),
              "--to", str(DIFF / "new"), "--out", str(out), "--report",
              str(tmp_path / "r.html"), "--workers", "1", "--quiet"])
    assert exited.value.code == 1
    assert "pip install 'all-rules[report]'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_report_that_cannot_be_moved_in_place_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page is written to a hidden partial file and renamed: a failure leaves neither
    half a page nor the partial file, and the run fails loudly."""
    import all_rules.report._html

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    # Only the page's rename fails (the changes file is renamed by the cohort writer).
    monkeypatch.setattr(all_rules.report._html, "os", types.SimpleNamespace(replace=fail))
    with pytest.raises(SystemExit) as exited:
        _run(tmp_path)
    assert exited.value.code == 1
    assert (tmp_path / "changes.jsonl").exists()
    assert not (tmp_path / "report.html").exists()
    assert not (tmp_path / ".report.html.partial").exists()


@pytest.mark.skipif(chromium_path() is None and not in_ci(),
                    reason="chromium is not installed (apt-get install chromium); "
                           "these tests run whenever CI is set")
def test_diff_report_in_chromium(tmp_path: Path,
                                 fixture_report: tuple[str, dict[str, Any]]) -> None:
    """The diff report renders its three plots (inline SVG with bars) and tables, with no
    console error and no request outside the page, and never wider than the window (long
    digests and parameter names wrap)."""
    page = tmp_path / "diff.html"
    summary = copy.deepcopy(fixture_report[1])
    summary["to"]["overrides"] = {"nci_wbc_10e9_per_l": 60.0, "vincristine_mg_per_m2": 1.5}
    page.write_text(diff_page(summary, source="patients.jsonl",
                              overlays={"to": "institution-overlay.yaml"}), encoding="utf-8")
    seen = _open(page, ["section", "svg", "svg path", "svg text", "figure figcaption",
                        "table th"], _screenshots(tmp_path) / "diff-report.png")
    for text in ("Changes by kind", "Risk-group transitions", "Rules", "high → standard",
                 "rec.reword", "P3-reworded, P4-added-removed", "71.4 %", "1.0.0", "2.0.0"):
        assert text in seen.text
    assert seen.counts["section"] == 4
    assert seen.counts["svg"] == 3
    assert seen.counts["svg path"] > 10
    assert seen.counts["svg text"] > 10
    assert seen.counts["figure figcaption"] == 3
    assert seen.counts["table th"] >= 20
    assert 0 < seen.scroll_width <= 1000  # the window's width (chromium.visit)
    # Printed, the page is A4 (595 × 842 pt).
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", seen.pdf)
    assert boxes
    assert {(round(float(w)), round(float(h))) for w, h in boxes} == {(595, 842)}

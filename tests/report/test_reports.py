"""HTML reports: content, self-containment, accessibility and the cohort numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from all_rules import Guideline
from all_rules.cli import main
from all_rules.report._cohort import category, cohort_page
from all_rules.report._html import Section, render_page, table

from ..conftest import EXAMPLES
from ..support.pages import SUMMARY, check_page

ADULT = json.loads((EXAMPLES / "adult_ph_positive.json").read_text())


def test_patient_report_order_and_content(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``assess --format html``: risk group first, then data needed, recommendations by
    phase with worded severity, then why-not with the rules asked about and nearest misses."""
    code = main(["assess", str(EXAMPLES / "adult_ph_positive.json"), "--format", "html",
                 "--why-not", "transplant.high_risk_adult"])
    page = capsys.readouterr().out
    assert code == 0
    parsed = check_page(page)
    text = " ".join(parsed.text)
    order = [text.index(h) for h in ("Risk group", "Data needed", "Recommendations",
                                     "Why not")]
    assert order == sorted(order)
    assessment = Guideline.default().assess(ADULT)
    for item in assessment.recommendations:
        assert item.id in page
    assert "High risk" in text
    assert "Nearest misses" in text
    assert "Rules asked about" in text
    # Severity is a word as well as a colour.
    assert re.search(r'class="badge sev-info">info<', page)
    assert "transplant.high_risk_adult" in page


def test_patient_report_shows_unknown_as_unknown(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    """An undecided rule appears in why-not with its unknown fact labelled unknown."""
    facts = {"patient_id": "U1", "age_years": 40, "age_at_diagnosis_years": 40,
             "lineage": "B", "ph_status": "negative",
             "wbc_at_diagnosis_10e9_per_l": 45, "phase": "consolidation",
             "complete_remission": True, "weeks_to_complete_remission": 3,
             "mrd_end_of_induction_percent": 0.5, "remission_number": 1}
    path = tmp_path / "u.json"
    path.write_text(json.dumps(facts))
    assert main(["assess", str(path), "--format", "html", "--why-not",
                 "transplant.high_risk_adult"]) == 0
    page = capsys.readouterr().out
    check_page(page)
    assert "would fire if known: transplant eligible" in page
    assert 'class="badge out-unknown">unknown<' in page


def test_explain_html(capsys: pytest.CaptureFixture[str]) -> None:
    """``explain --format html`` is a valid self-contained page."""
    assert main(["explain", str(EXAMPLES / "adult_ph_positive.json"), "risk.ph_positive",
                 "--format", "html"]) == 0
    page = capsys.readouterr().out
    check_page(page)
    assert "risk.ph_positive" in page




def test_cohort_report_numbers_are_the_summary_numbers() -> None:
    """Every count of the summary appears in the page, in a table and as a plot label;
    each rule sits in its section (data needed, plan audit, features, recommendations)."""
    guideline = Guideline.default()
    page = cohort_page(SUMMARY, guideline.ruleset, source="million.parquet")
    parsed = check_page(page)
    text = " ".join(parsed.text)
    for count in (*SUMMARY["risk_groups"].values(), *SUMMARY["recommendations"].values()):
        assert f"{count:,}" in text
    assert page.count("<svg") == 5
    sections = dict(re.findall(r'<section id="([a-z-]+)">(.*?)</section>', page, re.S))
    assert "audit.missing_cns_prophylaxis" in sections["plan-audit"]
    assert "cns.no_routine_cranial_irradiation" in sections["recommendations"]
    assert "risk.ph_positive" in sections["risk-features"]
    rules = {r.spec.id: r for r in guideline.ruleset.rules}
    data_ids = [i for i, r in rules.items() if category(r) == "data"]
    assert data_ids
    assert all(i in sections["data-needed"] for i in data_ids)
    assert "87.0 %" in text  # 870,123 of 999,990 assessed


def test_cohort_report_names_counts_of_rules_it_does_not_know() -> None:
    """A summary from another ruleset version: ids this ruleset lacks are listed, not
    dropped."""
    summary = {**SUMMARY, "recommendations": {**SUMMARY["recommendations"],
                                              "old.retired_rule": 77}}
    page = cohort_page(summary, Guideline.default().ruleset)
    check_page(page)
    assert re.search(r"<td>old.retired_rule</td><td class=num>77</td>", page)


def test_cohort_report_is_deterministic() -> None:
    """The same summary gives the same bytes (plots carry no date)."""
    ruleset = Guideline.default().ruleset
    assert cohort_page(SUMMARY, ruleset) == cohort_page(SUMMARY, ruleset)


def test_cli_cohort_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``cohort --report`` writes the page from the run's summary (the --summary numbers)."""
    rows = tmp_path / "in.jsonl"
    assert main(["synth", "300", "--out", str(rows)]) == 0
    report, summary = tmp_path / "r.html", tmp_path / "s.json"
    assert main(["cohort", str(rows), "--out", str(tmp_path / "o.jsonl"), "--workers", "1",
                 "--summary", str(summary), "--report", str(report), "--quiet"]) == 0
    page = report.read_text(encoding="utf-8")
    check_page(page)
    counts = json.loads(summary.read_text())
    for group, count in counts["risk_groups"].items():
        assert re.search(rf"<td>{group}</td><td class=num>{count:,}</td>", page)
    assert "in.jsonl" in page


def test_page_shell_is_reusable() -> None:
    """Another report (e.g. a ruleset diff) builds on ``render_page`` and the helpers."""
    page = render_page("Diff", [Section("Changed", table(("Rule", "Patients"),
                                                         [("a.b", 3)], numeric=(1,)))])
    check_page(page)
    assert "<h2>Changed</h2>" in page

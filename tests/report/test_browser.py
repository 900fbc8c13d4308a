"""The reports in a real browser: headless Chromium renders each page with no console error
and no request outside the page, shows its key texts and plots, and leaves a screenshot.

Skipped only when chromium is absent and CI is not set; under CI=true a missing chromium
fails. Screenshots go to ``$ALL_RULES_SCREENSHOTS`` when set (the README images are made
this way), else to the test's temporary directory.
"""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from all_rules import Guideline
from all_rules.cli import main
from all_rules.report._cohort import cohort_page

from ..conftest import EXAMPLES
from ..support.chromium import chromium_path, in_ci, visit
from ..support.pages import SUMMARY, _open, _screenshots

pytestmark = pytest.mark.skipif(chromium_path() is None and not in_ci(),
                                reason="chromium is not installed (apt-get install chromium); "
                                       "these tests run whenever CI is set")






def test_patient_report_in_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                    ) -> None:
    """The one-patient report renders with its sections, cards and outcome labels."""
    assert main(["assess", str(EXAMPLES / "adult_ph_positive.json"), "--format", "html",
                 "--why-not", "transplant.high_risk_adult"]) == 0
    page = tmp_path / "patient.html"
    page.write_text(capsys.readouterr().out, encoding="utf-8")
    seen = _open(page, ["section", "article.card", ".badge.out-failed", "table th"],
                 _screenshots(tmp_path) / "patient-report.png")
    for text in ("Risk group: High risk", "Data needed", "Recommendations", "Why not",
                 "Nearest misses", "transplant.high_risk_adult"):
        assert text in seen.text
    assert seen.counts["section"] == 4
    assert seen.counts["article.card"] >= 10
    assert seen.counts[".badge.out-failed"] >= 1
    assert seen.counts["table th"] >= 3
    # Printed, the page is A4 (595 × 842 pt) on as many pages as it needs.
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", seen.pdf)
    assert len(boxes) >= 2
    assert {(round(float(w)), round(float(h))) for w, h in boxes} == {(595, 842)}


def test_cohort_report_in_chromium(tmp_path: Path) -> None:
    """The cohort report renders its five plots (inline SVG with bars) and tables."""
    page = tmp_path / "cohort.html"
    page.write_text(cohort_page(SUMMARY, Guideline.default().ruleset, source="cohort.parquet"),
                    encoding="utf-8")
    seen = _open(page, ["svg", "svg path", "svg text", "figure figcaption", "table"],
                 _screenshots(tmp_path) / "cohort-report.png")
    for text in ("Risk groups", "Recommendations and alerts", "Data needed", "Plan audit",
                 "600,000", "870,123"):
        assert text in seen.text
    assert seen.counts["svg"] == 5
    assert seen.counts["svg path"] > 20
    assert seen.counts["svg text"] > 10
    assert seen.counts["figure figcaption"] == 5


def test_explanation_page_in_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    """``explain --format html`` renders the condition tree."""
    assert main(["explain", str(EXAMPLES / "adult_ph_positive.json"), "group.high",
                 "--format", "html"]) == 0
    page = tmp_path / "explain.html"
    page.write_text(capsys.readouterr().out, encoding="utf-8")
    seen = _open(page, ["ul.tree li"], _screenshots(tmp_path) / "explanation.png")
    assert "group.high" in seen.text
    assert seen.counts["ul.tree li"] >= 3


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback_server() -> Iterator[tuple[int, list[str]]]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Recorder.hits
    finally:
        server.shutdown()
        server.server_close()


def test_an_external_request_is_caught(tmp_path: Path,
                                       loopback_server: tuple[int, list[str]]) -> None:
    """The check can fail: a page that loads a style from a (loopback) server is reported
    as making an external request."""
    port, hits = loopback_server
    page = tmp_path / "leaky.html"
    page.write_text(f'<!DOCTYPE html><html lang="en"><head><title>x</title><link '
                    f'rel="stylesheet" href="http://127.0.0.1:{port}/style.css"></head>'
                    "<body><h1>x</h1></body></html>", encoding="utf-8")
    seen = visit(page)
    assert seen.external_requests == (f"http://127.0.0.1:{port}/style.css",)
    assert hits == ["/style.css"]


def test_a_console_error_is_caught(tmp_path: Path) -> None:
    """The check can fail: a page whose script logs an error is reported."""
    page = tmp_path / "noisy.html"
    page.write_text('<!DOCTYPE html><html lang="en"><head><title>x</title></head><body>'
                    '<h1>x</h1><script>console.error("boom")</script></body></html>',
                    encoding="utf-8")
    assert visit(page).console_errors == ("boom",)

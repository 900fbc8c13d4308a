"""Overrides on the command line: a value outside its safe range exits 2 naming the parameter,
the value and the range; `--unsafe-param` needs `--unsafe-reason`; every output made with local
parameters says so (JSON, text, HTML, cohort rows and summary, diff summary)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import EXAMPLES
from .test_cli import run

EXAMPLE = EXAMPLES / "induction_plan_dose_errors.json"
UNSAFE_CAP = ("--unsafe-param", "vincristine_cap_mg=2.5", "--unsafe-reason",
              "protocol XY (committee 2026-01)")


@pytest.mark.parametrize(("option", "message"), [
    ("vincristine_cap_mg=2.5", "`vincristine_cap_mg` = 2.5 mg is outside its safe range 1–2 mg"),
    ("mrd_threshold_percent=1",
     "`mrd_threshold_percent` = 1 % is outside its safe range 0.001–0.01 %"),
])
@pytest.mark.parametrize("command", ["assess", "explain"])
def test_param_outside_the_safe_range_exits_2_naming_it(
        capsys: pytest.CaptureFixture[str], option: str, message: str, command: str) -> None:
    """`--param` outside the safe range is refused before any assessment: exit 2, nothing on
    stdout, stderr names the parameter, the value, the range and how to override."""
    extra = ["induction.four_drug_backbone"] if command == "explain" else []
    code, out, err = run(capsys, command, str(EXAMPLE), *extra, "--param", option)
    assert code == 2
    assert out == ""
    assert message in err
    assert "--unsafe-param` with `--unsafe-reason`" in err


def test_overlay_outside_the_safe_range_exits_2(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    """An overlay with a value outside the safe range is input at fault: exit 2, file and
    line named; the same overlay stating it as an unsafe override with a reason runs."""
    overlay = tmp_path / "ours.yaml"
    overlay.write_text("parameters:\n  vincristine_cap_mg: 2.5\n", encoding="utf-8")
    code, _, err = run(capsys, "assess", str(EXAMPLE), "--overlay", str(overlay))
    assert code == 2
    assert f"{overlay}:2: at parameters.vincristine_cap_mg: `vincristine_cap_mg` = 2.5 mg " \
           "is outside its safe range 1–2 mg" in err
    overlay.write_text("unsafe_overrides:\n  vincristine_cap_mg: {value: 2.5, reason: ours}\n",
                       encoding="utf-8")
    code, out, _ = run(capsys, "assess", str(EXAMPLE), "--overlay", str(overlay))
    assert code == 0
    assert json.loads(out)["parameter_overrides"][0]["reason"] == "ours"


@pytest.mark.parametrize("args", [
    ("--unsafe-param", "vincristine_cap_mg=2.5"),
    ("--unsafe-param", "vincristine_cap_mg=2.5", "--unsafe-reason", " "),
    ("--unsafe-reason", "no value given"),
])
def test_unsafe_param_needs_a_reason(capsys: pytest.CaptureFixture[str],
                                     args: tuple[str, ...]) -> None:
    """`--unsafe-param` without a (non-blank) `--unsafe-reason`, or a reason without a value,
    exits 2."""
    code, out, err = run(capsys, "assess", str(EXAMPLE), *args)
    assert code == 2
    assert out == ""
    assert "--unsafe-" in err


def test_unsafe_param_with_a_reason_is_used_and_shown_in_json(
        capsys: pytest.CaptureFixture[str]) -> None:
    """With a reason the value is used and the JSON lists it, unsafe, with the reason; an
    override inside the safe range is listed too, not unsafe."""
    code, out, _ = run(capsys, "assess", str(EXAMPLE), *UNSAFE_CAP, "--param",
                       "dose_tolerance_percent=2")
    assert code == 0
    assert json.loads(out)["parameter_overrides"] == [
        {"name": "dose_tolerance_percent", "shipped": 5.0, "local": 2.0, "unit": "%",
         "safe_min": 0.0, "safe_max": 10.0, "unsafe": False, "reason": None},
        {"name": "vincristine_cap_mg", "shipped": 2.0, "local": 2.5, "unit": "mg",
         "safe_min": 1.0, "safe_max": 2.0, "unsafe": True,
         "reason": "protocol XY (committee 2026-01)"}]
    code, out, _ = run(capsys, "assess", str(EXAMPLE))
    assert "parameter_overrides" not in json.loads(out)


def test_text_output_says_local_parameters_first(capsys: pytest.CaptureFixture[str]) -> None:
    """The text output's second line says local parameters were used, how many outside the
    safe range, and lists each with shipped value, local value and reason."""
    code, out, _ = run(capsys, "assess", str(EXAMPLE), "--format", "text", *UNSAFE_CAP)
    assert code == 0
    lines = out.splitlines()
    assert lines[1] == ("LOCAL PARAMETERS: 1 value(s) differ from the shipped guideline; "
                        "1 OUTSIDE the safe range (unsafe override)")
    assert lines[2] == ("  - vincristine_cap_mg = 2.5 mg (shipped 2 mg; OUTSIDE its safe range "
                        "1–2 mg; reason given: protocol XY (committee 2026-01))")
    code, out, _ = run(capsys, "assess", str(EXAMPLE), "--format", "text")
    assert "LOCAL PARAMETERS" not in out


def test_html_report_shows_the_local_parameters_section(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The HTML report opens with a "Local parameters" section: a critical card with the
    shipped and local values, the safe range, the status and the reason."""
    code, out, _ = run(capsys, "assess", str(EXAMPLE), "--format", "html", *UNSAFE_CAP)
    assert code == 0
    section = out[out.index('<section id="local-parameters">'):]
    assert out.index('id="local-parameters"') < out.index('id="risk"')
    section = section[:section.index("</section>")]
    assert "sev-critical" in section
    assert "outside the safe range" in section
    for cell in ("vincristine_cap_mg", "2 mg", "2.5 mg", "1–2 mg",
                 "OUTSIDE the safe range (unsafe override)", "protocol XY (committee 2026-01)"):
        assert f"<td>{cell}</td>" in section, cell
    code, out, _ = run(capsys, "assess", str(EXAMPLE), "--format", "html")
    assert 'id="local-parameters"' not in out


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_cohort_rows_and_summary_carry_the_local_parameters(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str) -> None:
    """`cohort` with an unsafe override: every JSON line lists it (from JSON Lines input,
    written directly; from CSV, through the models), and so do the summary JSON and the
    summary table."""
    source = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        source.write_text("".join(json.dumps({"patient_id": f"p{i}", "age_years": 3 + i})
                                  + "\n" for i in range(3)), encoding="utf-8")
    else:
        source.write_text("patient_id,age_years\n" + "".join(f"p{i},{3 + i}\n"
                                                             for i in range(3)),
                          encoding="utf-8")
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    code, table, _ = run(capsys, "cohort", str(source), "--out", str(out), "--workers", "1",
                         "--summary", str(summary), *UNSAFE_CAP)
    assert code == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3
    assert all(row["parameter_overrides"][0]["unsafe"] for row in rows)
    data = json.loads(summary.read_text(encoding="utf-8"))
    assert data["parameter_overrides"][0]["name"] == "vincristine_cap_mg"
    assert table.startswith("local parameter: vincristine_cap_mg = 2.5 mg (shipped 2 mg; "
                            "OUTSIDE")
    code, _, err = run(capsys, "cohort", str(source), "--out", str(out), "--workers", "1",
                       "--param", "vincristine_cap_mg=2.5")
    assert code == 2
    assert "outside its safe range 1–2 mg" in err


def test_diff_names_unsafe_overrides_per_side(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    """`diff --to-unsafe-param … --unsafe-reason …`: the summary's `to` side lists the
    override with its reason and the table marks it UNSAFE; `--to-param` outside the safe
    range exits 2."""
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(json.loads(EXAMPLE.read_text(encoding="utf-8"))) + "\n",
                      encoding="utf-8")
    summary = tmp_path / "s.json"
    code, table, _ = run(capsys, "diff", str(source), "--out", str(tmp_path / "c.jsonl"),
                         "--workers", "1", "--summary", str(summary), "--to-unsafe-param",
                         "vincristine_cap_mg=2.5", "--unsafe-reason", "ours")
    assert code == 0
    data = json.loads(summary.read_text(encoding="utf-8"))
    assert data["from"]["parameter_overrides"] == []
    assert data["to"]["parameter_overrides"][0]["reason"] == "ours"
    assert "vincristine_cap_mg=2.5 (UNSAFE override)" in table
    from all_rules.report._diff import diff_page

    page = diff_page(data).replace("<wbr>", "")
    assert "vincristine_cap_mg = 2.5 (UNSAFE override: ours)" in page
    code, _, err = run(capsys, "diff", str(source), "--out", str(tmp_path / "d.jsonl"),
                       "--workers", "1", "--to-param", "vincristine_cap_mg=2.5")
    assert code == 2
    assert "outside its safe range 1–2 mg" in err


def test_cohort_report_names_the_local_parameters() -> None:
    """The cohort HTML report's overview lists each local parameter, unsafe ones marked,
    with the shipped value and the reason (escaped)."""
    from all_rules import Guideline
    from all_rules.cohort import CohortSummary
    from all_rules.report._cohort import cohort_page

    local = Guideline.load(unsafe_overrides={
        "vincristine_cap_mg": {"value": 2.5, "reason": "ours <b>"}})
    try:
        page = cohort_page(CohortSummary.for_guideline(local).to_dict(), local.ruleset)
    finally:
        local.close()
    assert ("<dt>Local parameter (UNSAFE override)</dt><dd>vincristine_cap_mg = 2.5 mg "
            "(shipped 2 mg); reason given: ours &lt;b&gt;</dd>") in page
    shipped = Guideline.default()
    assert "Local parameter" not in cohort_page(
        CohortSummary.for_guideline(shipped).to_dict(), shipped.ruleset)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_cohort_tables_name_the_local_parameters_on_every_row(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str) -> None:
    """The patients table has a `parameter_overrides` column: every row names the local
    values (UNSAFE marked); it is empty with the shipped parameters."""
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    import csv

    source = tmp_path / "in.csv"
    source.write_text("patient_id,age_years\np0,3\np1,x\n", encoding="utf-8")
    out = tmp_path / f"out.{fmt}"
    code, _, _ = run(capsys, "cohort", str(source), "--out", str(out), "--workers", "1",
                     "--quiet", "--param", "dose_tolerance_percent=2", *UNSAFE_CAP)
    assert code == 0
    table = tmp_path / f"out.patients.{fmt}"
    if fmt == "csv":
        with table.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(table).to_pylist()
    assert [r["parameter_overrides"] for r in rows] == [
        "dose_tolerance_percent=2;vincristine_cap_mg=2.5 UNSAFE"] * 2
    code, _, _ = run(capsys, "cohort", str(source), "--out", str(out), "--workers", "1",
                     "--quiet")
    if fmt == "csv":
        with table.open(encoding="utf-8", newline="") as handle:
            assert [r["parameter_overrides"] for r in csv.DictReader(handle)] == ["", ""]


def test_a_parameter_given_twice_is_refused(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Two values for one parameter are refused (exit 2), not silently the last one."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"age_years": 30, "phase": "diagnosis"}), encoding="utf-8")
    code, out, err = run(capsys, "assess", str(path), "--param", "adult_b_wbc_10e9_per_l=25",
                         "--param", "adult_b_wbc_10e9_per_l=20")
    assert (code, out) == (2, "")
    assert "adult_b_wbc_10e9_per_l is given twice (25 and 20)" in err

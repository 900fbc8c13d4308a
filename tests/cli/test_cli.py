"""The all-rules command line: outputs, exit codes (docs/cli.md), errors on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from all_rules import Guideline
from all_rules.cli import main

from ..conftest import EXAMPLES, FIXTURES, RULESETS

EXAMPLE = EXAMPLES / "adult_ph_positive.json"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_assess_json_is_the_api_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`assess --format json` prints exactly Assessment.to_json() and exits 0."""
    code, out, err = run(capsys, "assess", str(EXAMPLE))
    assert (code, err) == (0, "")
    facts = json.loads(EXAMPLE.read_text())
    assert out == Guideline.default().assess(facts).to_json() + "\n"


def test_assess_reads_stdin() -> None:
    """`assess -` reads the patient from standard input (a real process, as a pipe would)."""
    result = subprocess.run([sys.executable, "-m", "all_rules.cli", "assess", "-"],
                            input=EXAMPLE.read_bytes(), capture_output=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["patient_id"] == "example-adult-ph-positive"


def test_assess_text_groups_by_phase_risk_first(capsys: pytest.CaptureFixture[str]) -> None:
    """Text output: risk group first, then phase headings, with reasons shown."""
    code, out, _ = run(capsys, "assess", str(EXAMPLE), "--format", "text")
    assert code == 0
    lines = out.splitlines()
    assert lines[1] == "Risk group: HIGH"
    assert "== All phases ==" in lines
    assert "== Induction ==" in lines
    assert lines.index("== All phases ==") < lines.index("== Induction ==")
    assert any(line.strip().startswith("Why: BCR::ABL1 is positive") for line in lines)


def test_invalid_facts_exit_2_with_every_field_on_stderr(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Invalid input: exit 2, nothing on stdout, each offending field named on stderr."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"age_years": 200, "lineage": "Z", "wbc": 3}))
    code, out, err = run(capsys, "assess", str(bad))
    assert code == 2
    assert out == ""
    for field in ("age_years", "lineage", "wbc"):
        assert f"  - {field}:" in err


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "not valid JSON"),
    (b"[{}]", "expected one patient"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_unreadable_input_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  content: bytes, message: str) -> None:
    """Input that is not one JSON object is refused with exit 2 and a clear message."""
    path = tmp_path / "input.json"
    path.write_bytes(content)
    code, out, err = run(capsys, "assess", str(path))
    assert (code, out) == (2, "")
    assert message in err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "assess", "/nonexistent/patient.json")
    assert code == 2
    assert "no such file" in err


def test_rules_list(capsys: pytest.CaptureFixture[str]) -> None:
    """`rules list` names every rule; --format json is machine-readable."""
    code, out, _ = run(capsys, "rules", "list", "--format", "json")
    assert code == 0
    ids = {row["id"] for row in json.loads(out)}
    assert {"ph.tki_required", "audit.vincristine_dose", "group.high"} <= ids


def test_rules_show_gives_the_condition_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    """`rules show ID`: the condition in words, its parameters with values, its citations."""
    code, out, _ = run(capsys, "rules", "show", "risk.wbc_b_over_30")
    assert code == 0
    assert "WBC at diagnosis (wbc_at_diagnosis_10e9_per_l) > 30 ×10⁹/L" in out
    assert "adult_b_wbc_10e9_per_l = 30 ×10⁹/L" in out
    assert "[5] Treatment and biology of pediatric acute lymphoblastic leukemia" in out
    _, tolerance, _ = run(capsys, "rules", "show", "audit.pegaspargase_dose")
    assert "dose_tolerance_percent = 5 %" in tolerance  # a parameter inside a tolerance


def test_rules_show_unknown_id(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "rules", "show", "ph.tki_requred")
    assert code == 2
    assert "did you mean `ph.tki_required`?" in err


def test_rules_check_ok_and_failing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`rules check` exits 0 on the shipped ruleset and 1, listing issues, on a bad one."""
    code, out, _ = run(capsys, "rules", "check", str(RULESETS))
    assert code == 0
    assert out.startswith("ok: all-guideline")
    bad = tmp_path / "bad"
    bad.mkdir()
    for source in (FIXTURES / "minimal").iterdir():
        (bad / source.name).write_text(source.read_text())
    rules = bad / "rules.yaml"
    rules.write_text(rules.read_text().replace("age_years: {gte: $adult_age_years}",
                                               "age: {gte: $adult_age_years}"))
    code, out, err = run(capsys, "rules", "check", str(bad))
    assert code == 1
    assert "rules.yaml:9: rule risk.old at when[0].age: unknown fact `age`" in out
    assert "1 issue(s) found" in err


def test_param_override_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    """--param NAME=VALUE overrides a threshold for one run, inside its safe range; outside
    it only as --unsafe-param with --unsafe-reason; an unknown name exits 2 with a
    did-you-mean."""
    code, _, err = run(capsys, "assess", str(EXAMPLE), "--param", "high_risk_age_years=50")
    assert code == 2
    assert "`high_risk_age_years` = 50 years is outside its safe range 30–35 years" in err
    code, out, _ = run(capsys, "assess", str(EXAMPLE), "--unsafe-param",
                       "high_risk_age_years=50", "--unsafe-reason", "local protocol")
    assert code == 0
    assessment = json.loads(out)
    assert "risk.age_35_or_older" not in assessment["risk"]["features"]
    assert assessment["parameter_overrides"] == [{
        "name": "high_risk_age_years", "shipped": 35.0, "local": 50.0, "unit": "years",
        "safe_min": 30.0, "safe_max": 35.0, "unsafe": True, "reason": "local protocol"}]
    code, _, err = run(capsys, "assess", str(EXAMPLE), "--param", "high_risk_age=50")
    assert code == 2
    assert "did you mean `high_risk_age_years`?" in err


def test_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """`schema` prints the JSON Schema of the facts and of the output."""
    code, out, _ = run(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    assert "wbc_at_diagnosis_10e9_per_l" in schema["facts"]["properties"]
    assert schema["facts"]["additionalProperties"] is False
    assert "recommendations" in schema["assessment"]["properties"]

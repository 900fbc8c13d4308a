"""Bounded, strict input: `assess` reads at most a documented size, refuses ambiguous or
pathological JSON with exit 2 and no traceback, echoes only short excerpts, escapes ids in
text output; facts built around validation never reach the engine (docs/security.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from all_rules import Guideline, InvalidFactsError
from all_rules.cli import main
from all_rules.engine._input import DEFAULT_LIMIT, MAX_DEPTH, read_bounded_json
from all_rules.exceptions import UnreadableInputError
from all_rules.facts import PatientFacts, Plan

PATIENT = {"patient_id": "p1", "age_years": 40.0, "lineage": "B", "ph_status": "positive"}


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "patient.json"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_input_up_to_the_default_limit_is_read_and_one_byte_more_refused(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The default limit is 4 MiB (4,194,304 bytes): a patient padded to exactly that size
    is assessed; one byte more exits 2 naming the limit."""
    body = json.dumps(PATIENT).encode()
    exact = _write(tmp_path, body + b" " * (DEFAULT_LIMIT - len(body)))
    assert exact.stat().st_size == DEFAULT_LIMIT == 4_194_304
    code, out, err = _cli(capsys, "assess", str(exact))
    assert (code, err) == (0, "")
    exact.write_bytes(exact.read_bytes() + b" ")
    code, out, err = _cli(capsys, "assess", str(exact))
    assert code == 2
    assert out == ""
    assert "larger than the input limit of 4,194,304 bytes" in err


def test_oversized_input_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    """An endless input (/dev/zero, an endless pipe) is refused after limit + 1 bytes: the
    command ends promptly with exit 2 instead of reading until memory runs out."""
    result = subprocess.run([sys.executable, "-m", "all_rules.cli", "assess", "/dev/zero",
                             "--max-input-bytes", "1000"], capture_output=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert b"larger than the input limit of 1,000 bytes" in result.stderr
    process = subprocess.Popen([sys.executable, "-m", "all_rules.cli", "assess", "-"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE,
                               env={"ALL_RULES_MAX_INPUT_BYTES": "5000", "PATH": ""})
    assert process.stdin is not None
    written = 0
    try:
        while written < 50_000_000:  # the reader stops long before; the pipe then breaks
            process.stdin.write(b" " * 65536)
            written += 65536
    except BrokenPipeError:
        pass
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert b"larger than the input limit of 5,000 bytes" in err
    assert written < 50_000_000


@pytest.mark.parametrize(("text", "message"), [
    ('{"age_years": 40, "age_years": 4}', "duplicate key 'age_years'"),
    ('{"age_years": 40, "plan": {"tki": true, "tki": false}}', "duplicate key 'tki'"),
    ('{"age_years": ' + "9" * 5000 + "}", "a number of 5,000 digits"),
    ('{"age_years": 1e400}', "out of range"),
    ('{"age_years": NaN}', "NaN is not a number JSON allows"),
    ('{"age_years": -Infinity}', "-Infinity is not a number JSON allows"),
    ('{"age_years": 40, "plan": ' + "[" * 100_000 + "]" * 100_000 + "}",
     f"nested deeper than {MAX_DEPTH} levels"),
    ('{"age_years": 40, "plan": ' + "[" * 70 + "]" * 70 + "}",
     f"nested deeper than {MAX_DEPTH} levels"),
    (b'{"patient_id": "\xff"}', "not UTF-8 text (byte 16)"),
], ids=["duplicate", "duplicate-nested", "huge-int", "huge-float", "nan", "inf", "deep-1e5",
        "deep-70", "not-utf8"])
def test_ambiguous_or_pathological_json_exits_2_without_traceback(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str | bytes,
        message: str) -> None:
    """Duplicate keys (which json.loads would silently collapse), 5,000-digit or
    non-finite numbers, deep nesting: exit 2, the problem named, no traceback."""
    code, out, err = _cli(capsys, "assess", str(_write(tmp_path, text)))
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err
    assert len(err) < 400


def test_an_offending_value_is_echoed_as_a_short_excerpt(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A megabyte-long bad value (or unknown field name) is quoted by at most a short
    excerpt on stderr, with its length."""
    patient = {"age_years": 40, "patient_id": "x" * 1_000_000, "y" * 500_000: 1}
    code, _, err = _cli(capsys, "assess", str(_write(tmp_path, json.dumps(patient))))
    assert code == 2
    assert "patient_id" in err
    assert "1,000,000 characters" in err
    assert len(err.encode()) < 1000


def test_control_characters_in_ids_are_escaped_in_text_output(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A patient id holding a newline and terminal escapes cannot forge a line of the text
    report (a fake risk group) nor drive the terminal: they are shown escaped."""
    patient = {**PATIENT, "patient_id": "p\nRisk group: STANDARD\x1b[2J\u202e"}
    code, out, _ = _cli(capsys, "assess", str(_write(tmp_path, json.dumps(patient))),
                        "--format", "text")
    assert code == 0
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert [line for line in out.splitlines() if line.startswith("Risk group:")] == [
        "Risk group: HIGH"]
    assert "p\\nRisk group: STANDARD\\x1b[2J\\u202e" in out.splitlines()[0]


def test_the_reader_is_reusable_with_its_own_limit(tmp_path: Path) -> None:
    """`read_bounded_json` (for every command that reads one document) takes a limit."""
    path = _write(tmp_path, json.dumps(PATIENT))
    assert read_bounded_json(path, 1000) == PATIENT
    with pytest.raises(UnreadableInputError, match="larger than the input limit of 10 bytes"):
        read_bounded_json(path, 10)


def test_param_refuses_non_finite_and_loose_numbers(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    """`--param NAME=nan|inf|4_0` exits 2: a NaN threshold makes every comparison false."""
    path = _write(tmp_path, json.dumps(PATIENT))
    for value in ("nan", "inf", "-Infinity", "4_0", "1e999"):
        code, _, err = _cli(capsys, "assess", str(path), "--param",
                            f"high_risk_age_years={value}")
        assert code == 2, value
        assert "not a finite number" in err


# --- no way around validation ------------------------------------------------------------------


def test_model_construct_cannot_reach_the_engine(guideline: Guideline) -> None:
    """`PatientFacts.model_construct` skips validation; assess validates again and refuses
    (`"9"` would compare greater than any number in the engine)."""
    sneaky = PatientFacts.model_construct(age_years="9", wbc_at_diagnosis_10e9_per_l=True)
    with pytest.raises(InvalidFactsError) as caught:
        guideline.assess(sneaky)
    assert {e.field for e in caught.value.errors} == {"age_years",
                                                      "wbc_at_diagnosis_10e9_per_l"}
    for method in (guideline.assess_json, guideline.assess_ids):
        with pytest.raises(InvalidFactsError):
            method(sneaky)


def test_a_nested_plan_built_without_validation_is_refused(guideline: Guideline) -> None:
    """A Plan built with model_construct inside valid-looking facts is refused too."""
    sneaky = PatientFacts.model_construct(age_years=40.0,
                                          plan=Plan.model_construct(tki="yes"))
    with pytest.raises(InvalidFactsError, match=r"plan\.tki"):
        guideline.assess(sneaky)


def test_facts_altered_after_validation_are_refused(guideline: Guideline) -> None:
    """Frozen models can still be altered with object.__setattr__: caught all the same,
    and the valid original still assesses."""
    facts = PatientFacts.model_validate(PATIENT)
    expected = guideline.assess(facts)
    altered = facts.model_copy()
    object.__setattr__(altered, "age_years", float("nan"))
    with pytest.raises(InvalidFactsError, match="age_years"):
        guideline.assess(altered)
    assert guideline.assess(facts) == expected

"""Cohort file safety: outputs never destroy the input; one pathological row is one error
row; numbers in text cells are read strictly (docs/security.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from all_rules.cli import main
from all_rules.cohort import synth
from all_rules.cohort._io import check_outputs, run_cohort
from all_rules.cohort._read import MAX_ROW_BYTES, CohortInputError
from all_rules.cohort._records import record_to_facts

pytest.importorskip("pyarrow")


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    source = tmp_path / "in.jsonl"
    synth.write(source, 20, seed=1, fmt="jsonl")
    return source


# --- outputs that are the input -------------------------------------------------------------


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("option", ["--out", "--summary"])
def test_an_output_that_is_the_input_is_refused_before_writing(
        capsys: pytest.CaptureFixture[str], cohort: Path, link: str, option: str) -> None:
    """`--out` or `--summary` naming the input — by its name, a symbolic link or a hard
    link — exits 2 and leaves the input byte-for-byte intact and no other file behind."""
    before = cohort.read_bytes()
    alias = cohort
    if link == "symlink":
        alias = cohort.with_name("alias.jsonl")
        alias.symlink_to(cohort)
    elif link == "hardlink":
        alias = cohort.with_name("alias.jsonl")
        os.link(cohort, alias)
    others = {"--out": ["--summary", str(cohort.with_name("s.json"))],
              "--summary": ["--out", str(cohort.with_name("o.jsonl"))]}[option]
    code, err = _cli(capsys, "cohort", str(cohort), option, str(alias), *others,
                     "--workers", "1", "--quiet")
    assert code == 2, err
    assert "is the input file" in err
    assert cohort.read_bytes() == before
    assert sorted(p.name for p in cohort.parent.iterdir()) == sorted(
        {cohort.name, alias.name})


def test_a_derived_table_that_is_the_input_is_refused(cohort: Path, tmp_path: Path) -> None:
    """CSV/Parquet output writes OUT's stem + .patients/.recommendations: a derived table
    that resolves to the input is refused as well, before anything is written."""
    source = tmp_path / "x.patients.csv"
    synth.write(source, 5, seed=2, fmt="csv")
    before = source.read_bytes()
    with pytest.raises(CohortInputError, match="is the input file"):
        run_cohort(source, tmp_path / "x.csv")
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "x.patients.csv"]


def test_a_planted_partial_link_cannot_reach_the_input(cohort: Path) -> None:
    """The temporary `.out.partial` is written beside the output; one planted there as a
    link to the input is refused, so the input cannot be truncated through it."""
    (cohort.parent / ".out.jsonl.partial").symlink_to(cohort)
    before = cohort.read_bytes()
    with pytest.raises(CohortInputError, match="is the input file"):
        run_cohort(cohort, cohort.parent / "out.jsonl")
    assert cohort.read_bytes() == before


def test_a_planted_partial_link_is_replaced_not_written_through(cohort: Path) -> None:
    """A `.out.partial` left as a link to some other file (a dead run's, or planted) is
    removed before the run writes: the other file is untouched and the output is a file."""
    victim = cohort.parent / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    (cohort.parent / ".out.jsonl.partial").symlink_to(victim)
    out = cohort.parent / "out.jsonl"
    run_cohort(cohort, out)
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert not out.is_symlink()
    assert len(_jsonl(out)) == 20


def test_out_naming_a_directory_exits_2_and_leaves_nothing(
        capsys: pytest.CaptureFixture[str], cohort: Path) -> None:
    """`--out DIR` exits 2 with a message; no `.partial` file is left."""
    folder = cohort.parent / "results"
    folder.mkdir()
    code, err = _cli(capsys, "cohort", str(cohort), "--out", str(folder), "--input-format",
                     "jsonl", "--output-format", "jsonl", "--workers", "1", "--quiet")
    assert code == 2
    assert "is a directory" in err
    assert sorted(p.name for p in cohort.parent.iterdir()) == ["in.jsonl", "results"]
    assert list(folder.iterdir()) == []


def test_two_outputs_that_are_one_file_are_refused(tmp_path: Path) -> None:
    """`--summary` naming the output itself would overwrite it: refused."""
    out = tmp_path / "out.jsonl"
    with pytest.raises(CohortInputError, match="same file as the output"):
        check_outputs(tmp_path / "in.jsonl", [out, tmp_path / "." / "out.jsonl"])


# --- one pathological row is one error row ----------------------------------------------------


def _run_jsonl(tmp_path: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    source = tmp_path / "rows.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in lines))
    out = tmp_path / "out.jsonl"
    run = run_cohort(source, out)
    assert run.summary.patients == len(lines)
    return _jsonl(out)


GOOD = b'{"patient_id": "ok", "age_years": 5}'


@pytest.mark.parametrize("bad", [
    b'{"age_years": 5, "plan": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"age_years": 5, "wbc_at_diagnosis_10e9_per_l": ' + b"5" * 5000 + b"}",
    b'{"age_years": ' + b"5" * 5000 + b"}",
    b'{"age_years": 5, "patient_id": "' + b"x" * (MAX_ROW_BYTES + 10) + b'"}',
], ids=["nested-1e5-deep", "5000-digit-number", "5000-digit-age", "over-1-MiB"])
def test_a_pathological_json_row_is_one_error_row(tmp_path: Path, bad: bytes) -> None:
    """JSON nested 100,000 deep, a 5,000-digit number, or a row over 1 MiB: that row is one
    error row naming its problem, and the rows around it are assessed."""
    rows = _run_jsonl(tmp_path, [GOOD, bad, GOOD])
    assert [row.get("patient_id") for row in rows] == ["ok", None, "ok"]
    error = rows[1]
    assert error["row"] == 2
    assert error["kind"] == "invalid"
    assert len(json.dumps(error)) < 500  # the offending value is not echoed whole
    assert all(e["field"] != "age_years" or "required" not in e["message"]
               for e in error["errors"])


def test_a_json_row_error_names_only_the_real_problem(tmp_path: Path) -> None:
    """A JSON row with one bad field reports that field alone: no false
    `age_years: is required` next to it (age_years is there and valid)."""
    rows = _run_jsonl(tmp_path, [b'{"patient_id": "p1", "age_years": 5, "lineage": "X"}'])
    assert rows[0]["patient_id"] == "p1"
    assert [e["field"] for e in rows[0]["errors"]] == ["lineage"]


def test_a_non_utf8_csv_cell_names_only_its_column(tmp_path: Path) -> None:
    """A CSV cell that is not UTF-8 is named; the other cells are still read, and no
    false `age_years: is required` appears."""
    source = tmp_path / "rows.csv"
    source.write_bytes(b"patient_id,age_years,sex\np1,5,\xff\xfe\n")
    out = tmp_path / "out.jsonl"
    run_cohort(source, out)
    [row] = _jsonl(out)
    assert [(e["field"], e["message"]) for e in row["errors"]] == [("sex", "not UTF-8 text")]


def test_an_oversized_csv_cell_is_one_error_row(tmp_path: Path) -> None:
    """A CSV cell over the csv module's limit (131,072 characters) — also one quoted over
    many lines — is one error row; the next rows are read as they are, not as pieces of it."""
    big_line = "x" * 200_000
    big_quoted = '"' + "z,z,z\n" * 40_000 + '"'
    source = tmp_path / "rows.csv"
    source.write_text("patient_id,age_years,sex\n"
                      "a,5,female\n"
                      f"b,{big_line},male\n"
                      "c,6,male\n"
                      f"d,{big_quoted},male\n"
                      "e,7,female\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    run = run_cohort(source, out)
    rows = _jsonl(out)
    assert run.summary.patients == 5
    assert [row.get("patient_id") for row in rows] == ["a", None, "c", None, "e"]
    assert [row.get("row") for row in rows] == [None, 2, None, 4, None]
    assert "field larger than field limit" in rows[1]["errors"][0]["message"]


@pytest.mark.parametrize("text", ["4_0", "٤٠", "1e400", "nan", "inf", "5" * 5000, "0x28"])
def test_csv_numbers_are_read_strictly(text: str) -> None:
    """Python's float() and int() accept `4_0` and Arabic-Indic `٤٠` as 40, and 1e400 as
    infinity: a number cell takes plain ASCII decimals only, and the error quotes at most a
    short excerpt of the cell."""
    _, errors = record_to_facts({"age_years": text, "relapse_count": text})
    assert {e.field for e in errors} == {"age_years", "relapse_count"}
    assert all(len(e.message) < 120 for e in errors)


def test_csv_numbers_still_read_plain_decimals() -> None:
    """The strict reading keeps every plain form: signs, decimals, exponents."""
    facts, errors = record_to_facts({"age_years": " 40 ", "wbc_at_diagnosis_10e9_per_l": "1.5e2",
                                     "height_cm": ".5", "relapse_count": "+2"})
    assert errors == []
    assert facts == {"age_years": 40.0, "wbc_at_diagnosis_10e9_per_l": 150.0,
                     "height_cm": 0.5, "relapse_count": 2}

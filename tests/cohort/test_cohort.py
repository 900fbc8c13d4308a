"""Cohorts: formats both ways, bad rows, workers, summary, interruption, synth, frames, Dask."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from itertools import count, islice
from pathlib import Path
from typing import Any

import pytest

from all_rules import Guideline, assess, synth
from all_rules.cohort import RowError, assess_many
from all_rules.cohort._io import run_cohort
from all_rules.cohort._read import CohortInputError
from all_rules.cohort.frames import assess_frame

from ..support.feed import default_signals, held_input

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cohort")
    for fmt in ("jsonl", "csv", "parquet"):
        synth.write(folder / f"in.{fmt}", 600, seed=11, fmt=fmt, missing_rate=0.1)
    return folder


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_assess_many_yields_in_order_and_keeps_going(guideline: Guideline) -> None:
    """One result per row in input order; a bad row is a RowError, never an exception."""
    rows = [{"age_years": 30, "patient_id": "a"}, {"age_years": "x", "patient_id": "b"},
            {"age_years": 5, "wbc": 3}, {"age_years": 70, "patient_id": "d"}]
    results = list(assess_many(rows, guideline=guideline))
    assert [type(r).__name__ for r in results] == ["Assessment", "RowError", "RowError",
                                                    "Assessment"]
    bad = results[1]
    assert isinstance(bad, RowError)
    assert (bad.row, bad.patient_id, bad.kind) == (2, "b", "invalid")
    assert bad.errors[0].field == "age_years"
    assert results[3].patient_id == "d"


def test_assess_many_reads_flat_records(guideline: Guideline) -> None:
    """flat=True takes CSV-style records: dotted plan columns, doses as text, text cells."""
    rows = [{"age_years": "40", "lineage": "B", "ph_status": "positive", "bsa_m2": 2.0,
             "plan.tki": "false", "plan.doses": "vincristine 2.5 mg"},
            {"age_years": 40, "plan.doses": "vincristine lots mg"}]
    first, second = assess_many(rows, guideline=guideline, flat=True)
    assert not isinstance(first, RowError)
    assert {"audit.ph_without_tki", "audit.vincristine_dose"} <= set(first.ids())
    assert isinstance(second, RowError)
    assert [e.field for e in second.errors] == ["plan.doses"]


def test_assess_many_is_lazy() -> None:
    """An endless generator of rows is consumed only as results are taken."""
    endless = ({"age_years": float(i % 90), "patient_id": str(i)} for i in count())
    first = list(islice(assess_many(endless), 3))
    assert [r.patient_id for r in first] == ["0", "1", "2"]


@pytest.mark.parametrize("source", ["jsonl", "csv", "parquet"])
def test_every_input_format_gives_the_same_assessments(cohort_dir: Path, tmp_path: Path,
                                                       source: str) -> None:
    """CSV, JSON Lines and Parquet of the same cohort give identical JSON Lines output, and
    each line is exactly assess(...).to_json(indent=None) of that patient."""
    out = tmp_path / "out.jsonl"
    run = run_cohort(cohort_dir / f"in.{source}", out)
    assert run.summary.patients == 600
    assert run.summary.invalid == 0
    reference = run_cohort(cohort_dir / "in.jsonl", tmp_path / "ref.jsonl")
    assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    assert reference.summary.to_dict() == run.summary.to_dict()
    facts = [json.loads(line) for line in (cohort_dir / "in.jsonl").read_text().splitlines()]
    lines = out.read_text(encoding="utf-8").splitlines()
    for patient, line in zip(facts[:50], lines[:50], strict=False):
        assert line == assess(patient).to_json(indent=None)


@pytest.mark.parametrize("target", ["csv", "parquet"])
def test_table_outputs_agree_with_the_assessments(cohort_dir: Path, tmp_path: Path,
                                                  target: str) -> None:
    """CSV and Parquet output: a patients table and a recommendations table that match the
    JSON Lines assessments row for row."""
    run_cohort(cohort_dir / "in.jsonl", tmp_path / f"out.{target}")
    run_cohort(cohort_dir / "in.jsonl", tmp_path / "out.jsonl")
    read = pd.read_csv if target == "csv" else pd.read_parquet
    patients = read(tmp_path / f"out.patients.{target}")
    recommendations = read(tmp_path / f"out.recommendations.{target}")
    assessed = _jsonl(tmp_path / "out.jsonl")
    assert list(patients["row"]) == list(range(1, 601))
    assert list(patients["risk_group"]) == [a["risk"]["group"] for a in assessed]
    expected = [(i + 1, item["id"], item["severity"]) for i, a in enumerate(assessed)
                for item in a["recommendations"]]
    actual = list(zip(recommendations["row"], recommendations["id"],
                      recommendations["severity"], strict=True))
    assert actual == expected


def test_workers_give_byte_identical_output(cohort_dir: Path, tmp_path: Path) -> None:
    """--workers 2 writes exactly what one worker writes (JSON Lines and CSV tables)."""
    for suffix in ("jsonl", "csv"):
        run_cohort(cohort_dir / "in.jsonl", tmp_path / f"one.{suffix}", workers=1)
        run_cohort(cohort_dir / "in.jsonl", tmp_path / f"two.{suffix}", workers=2)
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    for table in ("patients", "recommendations"):
        assert (tmp_path / f"one.{table}.csv").read_bytes() == \
            (tmp_path / f"two.{table}.csv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no spool or partial file left
        "one.jsonl", "one.patients.csv", "one.recommendations.csv",
        "two.jsonl", "two.patients.csv", "two.recommendations.csv"]
    odd = tmp_path / "odd"  # glob characters in the output's name
    odd.mkdir()
    run_cohort(cohort_dir / "in.jsonl", odd / "run[1]*.jsonl", workers=2)
    assert [p.name for p in odd.iterdir()] == ["run[1]*.jsonl"]


@pytest.mark.parametrize("copy_file_range", ["kernel", "unavailable"])
def test_spooled_chunks_are_copied_in_order_and_spools_retired(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy_file_range: str) -> None:
    """Workers append JSON Lines to spool files and send only where; the parent copies each
    range into the output in input order, deletes a spool once its worker moved past it,
    and deletes the rest at the end. Without copy_file_range it reads and writes."""
    from all_rules.cohort._io import ChunkResult, CohortSummary, _Spool, _Writer, spool_prefix

    if copy_file_range == "unavailable":
        def refuse(*_: Any) -> int:
            raise OSError(38, "Function not implemented")
        monkeypatch.setattr(os, "copy_file_range", refuse)
    out = tmp_path / "out.jsonl"
    writer = _Writer(out, "jsonl")
    spools = [_Spool(spool_prefix(out)), _Spool(spool_prefix(out))]
    spools[0].LIMIT = spools[1].LIMIT = 50  # a new spool file every few chunks
    expected = b""
    seen: set[str] = set()
    for n in range(40):
        data = b"".join(b'{"row":%d,"part":%d}\n' % (n, k) for k in range(n % 4 + 1))
        expected += data
        spooled = spools[n % 2].write(data)
        seen.add(spooled.path)
        writer.write(ChunkResult(n, b"", [], [], CohortSummary(), spooled))
        writer.commit()
        if spooled.retired is not None:
            assert not Path(spooled.retired).exists()
    assert len(seen) > 4
    assert writer.close(keep=True) == [out]
    assert out.read_bytes() == expected
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_summary_counts_match_a_direct_count(cohort_dir: Path, tmp_path: Path) -> None:
    """The summary's group and recommendation counts equal counting the output directly."""
    run = run_cohort(cohort_dir / "in.jsonl", tmp_path / "out.jsonl")
    assessed = _jsonl(tmp_path / "out.jsonl")
    groups = Counter(a["risk"]["group"] for a in assessed)
    ids = Counter(item["id"] for a in assessed for item in a["recommendations"])
    summary = run.summary.to_dict()
    assert {k: v for k, v in summary["risk_groups"].items() if v} == dict(groups)
    assert {k: v for k, v in summary["recommendations"].items() if v} == dict(ids)
    assert summary["patients"] == summary["assessed"] == 600
    rule_ids = {r.spec.id for r in Guideline.default().ruleset.rules if r.spec.kind}
    assert set(summary["recommendations"]) == rule_ids  # every id, zero included


def test_bad_rows_are_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    """Wrong types, bad booleans, malformed doses and short rows become error rows with the
    row number and patient id; good rows around them are assessed."""
    source = tmp_path / "in.csv"
    source.write_text(
        "patient_id,age_years,lineage,complete_remission,plan.doses\n"
        "p1,30,B,true,vincristine 1.4 mg/m2\n"
        "p2,thirty,B,true,\n"
        "p3,30,Q,maybe,\n"
        "p4,30,B,,vincristine lots mg\n"
        "p5,30\n"
        "p6,45,T,false,daunorubicin 25 mg/m2; pegaspargase 2500 IU/m2\n", encoding="utf-8")
    run = run_cohort(source, tmp_path / "out.jsonl")
    lines = _jsonl(tmp_path / "out.jsonl")
    assert [line.get("patient_id") for line in lines] == ["p1", "p2", "p3", "p4", None, "p6"]
    errors = {line["row"]: {e["field"] for e in line["errors"]} for line in lines
              if "errors" in line}
    assert errors == {2: {"age_years"}, 3: {"lineage", "complete_remission"},
                      4: {"plan.doses"}, 5: {"(row)"}}
    assert (run.summary.assessed, run.summary.invalid) == (2, 4)


def test_unknown_columns_refuse_the_file_and_write_nothing(tmp_path: Path) -> None:
    """An unknown CSV column is a clear error naming it (did-you-mean); no output appears."""
    source = tmp_path / "in.csv"
    source.write_text("age_years,wbc\n30,5\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with pytest.raises(CohortInputError, match="unknown column 'wbc'; did you mean"):
        run_cohort(source, out)
    assert list(tmp_path.iterdir()) == [source]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.csv", b"", "empty"),
    ("header.csv", b"age_years,lineage\n", "no patient rows"),
    ("empty.jsonl", b"", "empty"),
    ("blank.jsonl", b"\n\n", "no patient rows"),
])
def test_empty_inputs_are_errors(tmp_path: Path, name: str, content: bytes,
                                 message: str) -> None:
    """An empty file or a header without rows is an error, and no output is written."""
    source = tmp_path / name
    source.write_bytes(content)
    with pytest.raises(CohortInputError, match=message):
        run_cohort(source, tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == [source]


def test_non_utf8_rows_are_error_rows(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 make that row an error row, in CSV and in JSON Lines."""
    csv_source = tmp_path / "in.csv"
    csv_source.write_bytes(b"patient_id,age_years,lineage\np1,30,B\np2,30,\xff\xfe\n")
    run = run_cohort(csv_source, tmp_path / "a.jsonl")
    assert (run.summary.assessed, run.summary.invalid) == (1, 1)
    jsonl_source = tmp_path / "in.jsonl"
    jsonl_source.write_bytes(b'{"age_years": 30}\n{"age_years": 3\xff}\n')
    run = run_cohort(jsonl_source, tmp_path / "b.jsonl")
    assert (run.summary.assessed, run.summary.invalid) == (1, 1)
    assert _jsonl(tmp_path / "b.jsonl")[1]["errors"][0]["field"] == "(facts)"


def test_truncated_parquet_is_a_clear_error(cohort_dir: Path, tmp_path: Path) -> None:
    """A truncated Parquet file is refused with a clear message and nothing is written."""
    data = (cohort_dir / "in.parquet").read_bytes()
    source = tmp_path / "cut.parquet"
    source.write_bytes(data[: len(data) // 2])
    with pytest.raises(CohortInputError, match="not a readable Parquet file"):
        run_cohort(source, tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == [source]


def test_interruption_leaves_a_valid_truncated_output(cohort_dir: Path, tmp_path: Path) -> None:
    """Ctrl-C mid-run: the output is kept, valid, and holds the rows finished before it."""
    calls = {"n": 0}

    def interrupt(_: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    source = tmp_path / "big.jsonl"
    synth.write(source, 2500, seed=3, fmt="jsonl")
    out = tmp_path / "out.parquet"
    run = run_cohort(source, out, progress=interrupt)
    assert run.interrupted
    patients = pd.read_parquet(tmp_path / "out.patients.parquet")
    assert len(patients) == run.summary.patients == 1000  # the first chunk
    assert list(patients["row"]) == list(range(1, 1001))


def test_ctrl_c_in_the_middle_of_a_chunk_leaves_whole_chunks_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C can land while a chunk is being copied into the output; the output is cut
    back to the last whole chunk, and the summary counts exactly the rows it holds."""
    source = tmp_path / "big.jsonl"
    synth.write(source, 2500, seed=4, fmt="jsonl")
    real = os.copy_file_range
    calls = {"n": 0}

    def interrupted_midway(src: int, dst: int, count: int, offset_src: int) -> int:
        calls["n"] += 1
        if calls["n"] == 2:  # the second chunk: half of it lands, then Ctrl-C
            real(src, dst, count // 2, offset_src)
            raise KeyboardInterrupt
        return real(src, dst, count, offset_src)

    monkeypatch.setattr(os, "copy_file_range", interrupted_midway)
    out = tmp_path / "out.jsonl"
    run = run_cohort(source, out, workers=2)
    assert run.interrupted
    rows = _jsonl(out)
    assert len(rows) == run.summary.patients == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jsonl", "out.jsonl"]


def test_cli_ctrl_c_exits_130_with_valid_output(tmp_path: Path) -> None:
    """A real SIGINT to `all-rules cohort` exits 130 and leaves valid, truncated JSON Lines.
    The input is a pipe the test holds open (tests/support/feed.py), so the run cannot finish
    first."""
    out = tmp_path / "out.jsonl"
    with held_input(5_000) as source:
        process = subprocess.Popen([sys.executable, "-m", "all_rules.cli", "cohort",
                                    str(source.path), "--out", str(out), "--workers", "2",
                                    "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   preexec_fn=default_signals)
        source.feed(process)
        partial = tmp_path / ".out.jsonl.partial"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size == 0):
            time.sleep(0.05)
        assert process.poll() is None, "the run ended while its input was still open"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    lines = out.read_text(encoding="utf-8").splitlines()
    assert 0 < len(lines) <= 5_000
    assert all(json.loads(line)["ruleset"]["name"] == "all-guideline" for line in lines)
    assert b"interrupted" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_cli_cohort_summary_and_exit_codes(cohort_dir: Path, tmp_path: Path) -> None:
    """The CLI prints the summary table, writes it as JSON, and exits 2 on unreadable input."""
    summary = tmp_path / "summary.json"
    result = subprocess.run([sys.executable, "-m", "all_rules.cli", "cohort",
                             str(cohort_dir / "in.csv"), "--out", str(tmp_path / "o.parquet"),
                             "--summary", str(summary), "--workers", "1"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("patients")
    assert json.loads(summary.read_text())["patients"] == 600
    assert "\r" not in result.stderr  # no progress bar when stderr is not a terminal
    missing = subprocess.run([sys.executable, "-m", "all_rules.cli", "cohort",
                              str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x.jsonl")],
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 2
    assert "no such file" in missing.stderr


def test_cli_cohort_reads_a_pipe_and_names_what_it_cannot_read(tmp_path: Path) -> None:
    """JSON Lines from a pipe (`/dev/stdin`, a named pipe, `<(zcat …)`) is read once in order;
    a directory, and Parquet from a pipe, are refused with what is wrong (exit 2)."""
    source = tmp_path / "in.jsonl"
    synth.write(source, 1_500, seed=3, fmt="jsonl")
    out = tmp_path / "out.jsonl"
    with source.open("rb") as stdin:
        piped = subprocess.run([sys.executable, "-m", "all_rules.cli", "cohort", "/dev/stdin",
                                "--input-format", "jsonl", "--out", str(out), "--quiet",
                                "--workers", "2"],
                               stdin=stdin, capture_output=True, timeout=300, check=False)
    assert piped.returncode == 0, piped.stderr.decode()
    ids = [json.loads(line)["patient_id"] for line in out.read_text().splitlines()]
    assert ids == [json.loads(line)["patient_id"] for line in source.read_text().splitlines()]

    def refused(*argv: str) -> str:
        result = subprocess.run([sys.executable, "-m", "all_rules.cli", "cohort", *argv,
                                 "--out", str(tmp_path / "x.jsonl")],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 2, result.stderr
        return result.stderr

    folder = tmp_path / "rows.jsonl"
    folder.mkdir()
    assert "is a directory" in refused(str(folder))
    fifo = tmp_path / "rows.parquet"
    os.mkfifo(fifo)
    assert "Parquet input must be a regular file" in refused(str(fifo))
    assert not (tmp_path / "x.jsonl").exists()


def test_more_workers_than_cores_are_capped_with_a_note(cohort_dir: Path,
                                                        tmp_path: Path) -> None:
    """--workers above the usable cores runs as many workers as cores (CPU-bound work: more
    would only be slower and cost memory, which must stay under 400 MB), says so on
    stderr, and writes the same output."""
    cores = len(os.sched_getaffinity(0))
    runs = {}
    for workers in (cores, cores + 3):
        out = tmp_path / f"o{workers}.jsonl"
        result = subprocess.run([sys.executable, "-m", "all_rules.cli", "cohort",
                                 str(cohort_dir / "in.jsonl"), "--out", str(out),
                                 "--workers", str(workers), "--quiet"],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        runs[workers] = (result.stderr, out.read_bytes())
    assert "note" not in runs[cores][0]
    assert f"--workers {cores + 3} on {cores} usable cores: running {cores}" in \
        runs[cores + 3][0]
    assert runs[cores][1] == runs[cores + 3][1]


def test_an_unwritable_output_is_a_clear_error(cohort_dir: Path, tmp_path: Path) -> None:
    """An output folder that does not exist: exit 1 with the path and the reason, no
    traceback."""
    result = subprocess.run([sys.executable, "-m", "all_rules.cli", "cohort",
                             str(cohort_dir / "in.jsonl"), "--out",
                             str(tmp_path / "missing" / "o.jsonl"), "--workers", "1"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "missing" in result.stderr
    assert "No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_progress_bar_on_a_terminal(cohort_dir: Path, tmp_path: Path) -> None:
    """On a terminal, a progress bar with rate and ETA is drawn on stderr."""
    import pty

    command = [sys.executable, "-m", "all_rules.cli", "cohort", str(cohort_dir / "in.jsonl"),
               "--out", str(tmp_path / "o.jsonl"), "--workers", "1", "--quiet"]
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(sys.executable, command)
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert "100% |########################| 600/600" in text
    assert "patients/s, ETA" in text


def test_synth_is_deterministic_and_documented(tmp_path: Path) -> None:
    """The same seed gives the same bytes; Ph+ rises with age as documented."""
    synth.write(tmp_path / "a.jsonl", 3000, seed=9, fmt="jsonl")
    synth.write(tmp_path / "b.jsonl", 3000, seed=9, fmt="jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    patients = list(synth.patients(20_000, seed=1, missing_rate=0))
    def ph_rate(low: float, high: float) -> float:
        band = [p for p in patients if low <= p["age_years"] < high and p["lineage"] == "B"]
        return sum(p["ph_status"] == "positive" for p in band) / len(band)
    assert ph_rate(1, 18) < ph_rate(18, 40) < ph_rate(40, 60) < ph_rate(60, 100)
    assert all(p["age_years"] >= 0 for p in patients)
    with_missing = list(synth.patients(2000, seed=1, missing_rate=0.2))
    share = sum("lineage" not in p for p in with_missing) / len(with_missing)
    assert 0.1 < share < 0.3


def test_synth_csv_round_trips(tmp_path: Path) -> None:
    """synth CSV uses the documented flat columns, including plan.doses."""
    synth.write(tmp_path / "c.csv", 200, seed=4, fmt="csv")
    with (tmp_path / "c.csv").open(encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert "plan.doses" in header
    assert "wbc_at_diagnosis_10e9_per_l" in header


def test_assess_frame_matches_the_cohort_tables(cohort_dir: Path, tmp_path: Path) -> None:
    """assess_frame on a data frame gives the same tables as `cohort` to CSV."""
    frame = pd.read_parquet(cohort_dir / "in.parquet")
    patients, recommendations = assess_frame(frame)
    run_cohort(cohort_dir / "in.parquet", tmp_path / "t.parquet")
    expected_patients = pd.read_parquet(tmp_path / "t.patients.parquet")
    expected_recommendations = pd.read_parquet(tmp_path / "t.recommendations.parquet")
    assert list(patients["risk_group"]) == list(expected_patients["risk_group"])
    assert list(recommendations["id"]) == list(expected_recommendations["id"])
    with pytest.raises(ValueError, match="unknown column 'wbc'"):
        assess_frame(pd.DataFrame({"age_years": [3.0], "wbc": [1.0]}))


@pytest.mark.slow
def test_dask_local_cluster_matches_the_local_run() -> None:
    """assess_dask on a 2-worker LocalCluster over 20,000 patients equals assess_frame."""
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    from all_rules.cohort.dask_cluster import assess_dask

    frame = pd.DataFrame([synth.flatten(p) for p in synth.patients(20_000, seed=5)])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        patients, recommendations = assess_dask(dd.from_pandas(frame, npartitions=8))
        patients, recommendations = dask.compute(patients, recommendations)
    local_patients, local_recommendations = assess_frame(frame)

    def rows(table: Any) -> list[tuple[Any, ...]]:
        ordered = table.sort_values("row", kind="stable")
        return [tuple(None if pd.isna(v) else v for v in row)
                for row in ordered.itertuples(index=False)]

    assert len(patients) == 20_000
    assert rows(patients) == rows(local_patients)
    assert rows(recommendations) == rows(local_recommendations)


def test_a_dead_worker_fails_the_run_cleanly(cohort_dir: Path, tmp_path: Path) -> None:
    """A worker killed mid-run (OOM killer, kill -9) fails the run with an EvaluationError
    and leaves no output behind, instead of a traceback or a silent partial file."""
    from all_rules import EvaluationError

    source = tmp_path / "big.jsonl"
    synth.write(source, 30_000, seed=8, fmt="jsonl")
    killed = {"done": False}

    def progress(_: int) -> None:
        if killed["done"]:
            return
        killed["done"] = True
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().split()
            except OSError:
                continue
            if int(stat[3]) == me and "spawn_main" in (entry / "cmdline").read_text():
                os.kill(int(entry.name), signal.SIGKILL)
                break

    with pytest.raises(EvaluationError, match="worker process died"):
        run_cohort(source, tmp_path / "out.jsonl", workers=2, progress=progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jsonl"]

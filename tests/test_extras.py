"""A feature behind an extra, its modules missing, fails with one message naming the extra
to install: no traceback, and never a misleading "invalid data". Each case runs in its own
interpreter with the extra's modules blocked (``sys.modules[name] = None``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLI = textwrap.dedent("""
    import sys
    if __name__ == "__main__":
        for name in sys.argv[1].split(","):
            sys.modules[name] = None
        from all_rules.cli import main
        sys.exit(main(sys.argv[2:]))
""")
PARQUET = "pyarrow,pyarrow.parquet"


def run_cli(tmp_path: Path, blocked: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "blocked_cli.py"
    script.write_text(CLI, encoding="utf-8")
    return subprocess.run([sys.executable, str(script), blocked, *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)


def run_python(code: str, blocked: str) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys\nfor n in {blocked!r}.split(','):\n    sys.modules[n] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("extras")
    (folder / "patients.jsonl").write_text('{"age_years": 7}\n', encoding="utf-8")
    (folder / "patients.parquet").write_bytes(b"PAR1 not read: pyarrow is missing PAR1")
    return folder


@pytest.mark.parametrize(("args", "extra"), [
    (("synth", "5", "--out", "out.parquet"), "all-rules[cohort]"),
    (("cohort", "{dir}/patients.parquet", "--out", "out.jsonl"), "all-rules[cohort]"),
    (("cohort", "{dir}/patients.jsonl", "--out", "out.parquet"), "all-rules[cohort]"),
])
def test_parquet_without_pyarrow(tmp_path: Path, inputs: Path, args: tuple[str, ...],
                                 extra: str) -> None:
    done = run_cli(tmp_path, PARQUET, *(a.format(dir=inputs) for a in args))
    assert done.returncode == 2
    assert extra in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("blocked", ["starlette", "uvicorn", "fhir.resources,fhir"])
def test_serve_without_its_extra(tmp_path: Path, blocked: str) -> None:
    """Without the service's modules (FHIR mapping included) the service does not start."""
    done = run_cli(tmp_path, blocked, "serve", "--insecure", "--port", "9")
    assert done.returncode == 2
    assert "pip install 'all-rules[serve]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_fhir_mapping_without_fhir_resources() -> None:
    """Not "not a valid Patient": the message names the extra."""
    done = run_python("""
        import datetime as dt
        from all_rules.fhir import facts_from_bundle
        patient = {"resourceType": "Patient", "id": "p", "birthDate": "2000-01-01"}
        try:
            facts_from_bundle({"resourceType": "Bundle", "entry": [{"resource": patient}]},
                              assessment_date=dt.date(2026, 1, 1))
        except ImportError as error:
            print("ImportError:", error)
    """, "fhir,fhir.resources")
    assert done.stdout.strip() == ("ImportError: FHIR needs fhir.resources: pip install "
                                   "'all-rules[fhir]'"), done.stderr


@pytest.mark.parametrize(("code", "blocked", "message"), [
    ("from all_rules.cohort.dask_cluster import assess_dask\nassess_dask(None)",
     "dask,dask.dataframe",
     "Dask support needs: pip install 'all-rules[dask]'"),
    ("from all_rules.cohort.frames import assess_frame\nassess_frame(None)", "pandas",
     "data frames need pandas: pip install 'all-rules[cohort]'"),
])
def test_data_frames_without_their_extra(code: str, blocked: str, message: str) -> None:
    done = run_python(f"try:\n    exec({code!r})\nexcept ImportError as error:\n"
                      "    print('ImportError:', error)", blocked)
    assert done.stdout.strip() == f"ImportError: {message}", done.stderr

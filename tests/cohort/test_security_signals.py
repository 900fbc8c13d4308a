"""Cohort runs stopped from outside: SIGTERM and SIGHUP act as Ctrl-C; a parent killed
with SIGKILL leaves workers that exit by themselves and files the next run removes; a full
disk or a file-size limit leaves nothing partial (docs/security.md)."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from all_rules.cohort import synth
from all_rules.cohort._guard import RunLock
from all_rules.cohort._io import run_cohort
from all_rules.cohort._read import CohortInputError

from ..support.feed import default_signals, held_input

pytest.importorskip("pyarrow")

HELD = 5_000  # rows written to a held pipe before the run is stopped


def _start(source: Path, out: Path, *extra: str, limit: int | None = None,
           ignored: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    def limited() -> None:  # runs in the child before exec
        default_signals()
        for signum in ignored:
            signal.signal(signum, signal.SIG_IGN)
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.Popen([sys.executable, "-m", "all_rules.cli", "cohort", str(source),
                             "--out", str(out), "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                            preexec_fn=limited)


def _wait_for_rows(out: Path) -> None:
    partial = out.with_name(f".{out.name}.partial")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if partial.exists() and partial.stat().st_size > 0:
            return
        time.sleep(0.05)
    raise AssertionError("the run wrote nothing")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pids: list[int], seconds: float) -> float:
    start = time.monotonic()
    while any(_alive(p) for p in pids):
        if time.monotonic() - start > seconds:
            raise AssertionError(f"processes still alive after {seconds} s: {pids}")
        time.sleep(0.05)
    return time.monotonic() - start


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_the_run_as_ctrl_c(tmp_path: Path, signum: int,
                                                   code: int) -> None:
    """The signal stops the workers, removes spools and temporaries, keeps whole lines, and
    exits 128 + the signal (143, 129). The input is a pipe the test holds open
    (tests/support/feed.py), so the run cannot finish before the signal."""
    out = tmp_path / "out.jsonl"
    with held_input(HELD) as source:
        process = _start(source.path, out, "--workers", "2")
        source.feed(process)
        _wait_for_rows(out)
        workers = _children(process.pid)
        assert process.poll() is None, "the run ended while its input was still open"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr.decode()
    assert b"interrupted" in stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert 0 < len(lines) <= HELD
    assert all(json.loads(line)["ruleset"]["name"] == "all-guideline" for line in lines)
    assert _files(tmp_path) == ["out.jsonl"]
    _wait_gone(workers, 10)


def test_a_run_started_under_nohup_survives_its_hangup(tmp_path: Path) -> None:
    """SIGHUP ignored at start (`nohup all-rules cohort …`) stays ignored: the hangup does
    not stop the run, which finishes every row and exits 0."""
    out = tmp_path / "out.jsonl"
    with held_input(HELD) as source:
        process = _start(source.path, out, "--workers", "2", ignored=(signal.SIGHUP,))
        source.feed(process)
        _wait_for_rows(out)
        process.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert process.poll() is None, "the hangup stopped a run started under nohup"
        source.end()
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert len(out.read_text(encoding="utf-8").splitlines()) == HELD
    assert _files(tmp_path) == ["out.jsonl"]


def test_workers_of_a_killed_parent_exit_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    """SIGKILL to the parent: its workers notice and exit within seconds; the spools and
    temporary it left are removed by the next run to the same output (which can prove them
    abandoned: the dead run's lock is free)."""
    out = tmp_path / "out.jsonl"
    with held_input(HELD) as source:
        process = _start(source.path, out, "--workers", "2")
        source.feed(process)
        _wait_for_rows(out)
        workers = _children(process.pid)
        assert len(workers) >= 2
        assert process.poll() is None, "the run ended while its input was still open"
        process.kill()
        process.communicate(timeout=60)
    took = _wait_gone(workers, 10)
    print(f"workers gone {took:.2f} s after their parent's SIGKILL")
    left = _files(tmp_path)
    assert ".out.jsonl.partial" in left
    small = tmp_path / "small.jsonl"
    synth.write(small, 30, seed=1, fmt="jsonl")
    rerun = subprocess.run([sys.executable, "-m", "all_rules.cli", "cohort", str(small),
                            "--out", str(out), "--quiet", "--workers", "2"],
                           capture_output=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert _files(tmp_path) == ["out.jsonl", "small.jsonl"]
    assert len(out.read_text(encoding="utf-8").splitlines()) == 30


def test_a_run_refuses_an_output_another_live_run_is_writing(tmp_path: Path) -> None:
    """While a run holds an output's lock, a second run to it refuses (exit 2) and removes
    nothing of the first run's."""
    source = tmp_path / "in.jsonl"
    synth.write(source, 5, seed=1, fmt="jsonl")
    out = tmp_path / "out.jsonl"
    lock = RunLock(out)
    lock.acquire()
    planted = tmp_path / ".out.jsonl.spool-123-1"
    planted.write_bytes(b"live")
    try:
        with pytest.raises(CohortInputError, match="another run is writing"):
            run_cohort(source, out)
        assert planted.exists()
    finally:
        lock.release()
    run_cohort(source, out)
    assert _files(tmp_path) == ["in.jsonl", "out.jsonl"]


@pytest.mark.parametrize(("fmt", "workers"), [("jsonl", "1"), ("jsonl", "2"), ("csv", "1"),
                                              ("parquet", "1")])
def test_a_file_size_limit_exits_1_and_leaves_nothing(tmp_path: Path, fmt: str,
                                                      workers: str) -> None:
    """Writing past RLIMIT_FSIZE (as a full disk would, with another errno): exit 1 naming
    the error, no traceback, and no output, temporary or spool left — in every format."""
    source = tmp_path / "in.jsonl"
    synth.write(source, 3000, seed=2, fmt="jsonl")
    process = _start(source, tmp_path / f"out.{fmt}", "--workers", workers, limit=30_000)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr.decode()
    assert b"File too large" in stderr
    assert b"Traceback" not in stderr
    assert _files(tmp_path) == ["in.jsonl"]


def test_a_full_disk_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC in the middle of the output: the error propagates and nothing is left."""
    from all_rules.cohort import _io as _cohort_io

    source = tmp_path / "in.jsonl"
    synth.write(source, 2500, seed=3, fmt="jsonl")
    real = _cohort_io._write_all
    calls = {"n": 0}

    def full(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(_cohort_io, "_write_all", full)
    with pytest.raises(OSError, match="No space left"):
        run_cohort(source, tmp_path / "out.jsonl")
    assert _files(tmp_path) == ["in.jsonl"]


def test_a_worker_takes_sigterm_from_its_parent_only() -> None:
    """A worker (``guard_worker``) leaves a SIGTERM from anyone else to its parent (a signal to
    the process group), but stops on its parent's own: that is how a pool with a dead worker
    stops the survivors, and a worker deaf to it hung the run on Python 3.13."""
    script = ("import sys, time\nfrom all_rules.cohort._guard import guard_worker\n"
              "guard_worker()\nprint('ready', flush=True)\ntime.sleep(120)\n")
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              preexec_fn=default_signals)
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == b"ready\n"
        # Sent by another process (here `kill`), as a signal to the process group would be.
        subprocess.run(["kill", "-TERM", str(worker.pid)], check=True)
        with pytest.raises(subprocess.TimeoutExpired):
            worker.wait(timeout=1)
        os.kill(worker.pid, signal.SIGTERM)  # from the parent, as the pool sends it
        assert worker.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        worker.kill()
        worker.wait()

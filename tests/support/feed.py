"""A cohort input that a test holds open, so a run cannot finish before the test stops it.

Tests that interrupt a running `all-rules cohort` (Ctrl-C, SIGTERM, SIGHUP, SIGKILL) used to
give it a large file and signal it once the first rows were written; on a loaded machine the
run could finish first (a CI run once saw exit 0 instead of 130). Here the input is a named
pipe: the test writes some rows and keeps the pipe open, so the run has written whole chunks
and then waits for more input until it is stopped, however fast or slow the machine is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from all_rules.cohort import synth


class HeldInput:
    """A named pipe ``path`` (JSON Lines) fed ``rows`` synthetic patients by ``feed``."""

    def __init__(self, rows: int, *, seed: int = 5) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="all-rules-feed-"))
        source = self._folder / "rows.jsonl"
        synth.write(source, rows, seed=seed, fmt="jsonl")
        self._data = source.read_bytes()
        source.unlink()
        self.rows = rows
        self.path = self._folder / "held.jsonl"
        os.mkfifo(self.path)
        self._fd: int | None = None

    def feed(self, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
        """Open the pipe once ``process`` reads it, write every row, and keep it open.

        Returns when the reader has taken every row (it reads as it assesses)."""
        deadline = time.monotonic() + timeout
        while True:
            try:  # non-blocking: fails with ENXIO until the reader has opened its end
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as error:
                if error.errno != errno.ENXIO:
                    raise
            if process.poll() is not None:
                raise AssertionError(f"the run exited ({process.returncode}) before reading")
            if time.monotonic() > deadline:
                raise AssertionError("the run never opened its input")
            time.sleep(0.02)
        os.set_blocking(fd, True)
        self._fd = fd
        view = memoryview(self._data)
        while view:
            view = view[os.write(fd, view):]

    def end(self) -> None:
        """Close the pipe: the reader sees the end of its input."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self.end()
        shutil.rmtree(self._folder, ignore_errors=True)


def default_signals() -> None:
    """``preexec_fn`` for a run a test signals: SIGINT, SIGTERM and SIGHUP at their defaults
    in the child, whatever the test runner inherited (a shell's background job starts with
    SIGINT ignored, nohup with SIGHUP ignored, and an ignored signal stays ignored across
    exec)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@contextlib.contextmanager
def held_input(rows: int, *, seed: int = 5) -> Iterator[HeldInput]:
    held = HeldInput(rows, seed=seed)
    try:
        yield held
    finally:
        held.close()

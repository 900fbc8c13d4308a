"""What keeps a cohort run's files consistent when processes die: the run lock and the
workers' watch on their parent.

A run holds an exclusive lock (``flock``) on ``.<output>.lock`` beside its output while it
writes. The kernel releases the lock when the run's process dies, however it dies (even by
SIGKILL), so a later run that gets the lock has proof that no run is writing that output:
every spool file and temporary left beside it is abandoned, and is removed. A run that
cannot get the lock refuses to start (another run is writing the same output).

Workers leave signals to the parent (Ctrl-C, SIGTERM and SIGHUP stop the run there, which
then stops the pool) — all but a SIGTERM the parent itself sends, with which the pool stops
its workers — and watch their parent: a worker whose parent died (SIGKILL) exits within
``WATCH_SECONDS``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

if sys.platform != "win32":
    import fcntl

from ._read import CohortInputError

WATCH_SECONDS = 0.5
"""How often a worker checks that its parent is alive."""


class RunLock:
    """The exclusive lock of the run writing ``out``; see the module docstring."""

    def __init__(self, out: Path) -> None:
        self.path = out.with_name(f".{out.name}.lock")
        self.fd = -1

    def acquire(self) -> None:
        if sys.platform == "win32":  # pragma: no cover - no flock: leftovers stay until the end
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise CohortInputError(f"{self.path.with_name(self.path.name[1:-5])}: another "
                                       "run is writing this output") from None
            # The last holder may have removed the file after we opened it: lock the file
            # that is there now, not a removed one.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self.fd = fd
                    return
            os.close(fd)

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = -1


def remove_abandoned(prefix: str, temps: list[Path]) -> None:
    """Under the run lock: spool files (named ``prefix…``) and temporaries left by runs that
    died are abandoned; remove them."""
    spools = Path(prefix)
    for leftover in spools.parent.iterdir():  # not glob: the name may hold [ ] * ?
        if leftover.name.startswith(spools.name):
            leftover.unlink(missing_ok=True)
    for temp in temps:  # a stale temporary, or a link planted in its place
        temp.unlink(missing_ok=True)


def _watch(parent: int) -> None:
    while True:
        time.sleep(WATCH_SECONDS)
        if os.getppid() != parent:
            os._exit(1)  # the parent is gone: nobody will read what this worker writes


def _terminate_if_from(parent: int) -> None:
    """SIGTERM (blocked in every thread, taken here) ends the worker only if the parent sent
    it; from anyone else it is a signal to the process group, which the parent handles."""
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(128 + signal.SIGTERM)


def guard_worker() -> None:
    """In a worker process: signals are the parent's; exit when the parent dies.

    Ctrl-C and SIGHUP are ignored. SIGTERM is left to the parent as well, except the parent's
    own: a pool with a dead worker terminates the survivors with SIGTERM and joins them
    (Python 3.13 holds the pool's lock meanwhile), so a worker that ignored every SIGTERM
    would hang the run. Where signals cannot be told apart by sender, SIGTERM is ignored.
    """
    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    parent = os.getppid()
    if hasattr(signal, "sigwaitinfo"):
        # Before any other thread starts, so that every thread of the worker inherits it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        threading.Thread(target=_terminate_if_from, args=(parent,), daemon=True,
                         name="all-rules-sigterm").start()
    elif hasattr(signal, "SIGTERM"):  # pragma: no cover - no sigwaitinfo (macOS, Windows)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_watch, args=(parent,), daemon=True,
                     name="all-rules-parent-watch").start()

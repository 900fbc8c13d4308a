"""A child process whose fresh allocations are garbage, so that durable's uninitialised
pointers crash the same way on every machine.

durable's state pool is malloc'ed and never cleared: what a state's unset fields hold is
whatever that memory held before — often zeros (fresh pages), sometimes old text. Whether
freeing an unset pointer crashes therefore depends on the heap's history (one CI run saw 600
unguarded deletions survive that crash on every run here). glibc's ``MALLOC_PERTURB_`` fills
every fresh allocation with one non-zero byte, so an unset pointer is 0x5a5a5a5a5a5a5a5a every
time: freeing it faults on the first try. A test that says "this crashes" or "this guard
avoids the crash" runs its child under it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.libc_ver()[0] == "glibc"

needs_glibc = pytest.mark.skipif(not GLIBC, reason="MALLOC_PERTURB_ is glibc's")


def run_with_garbage_heap(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run *script* with ``python -c`` in a child whose fresh allocations are garbage."""
    env = {**os.environ, "MALLOC_PERTURB_": "165"}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=300, check=False, env=env)

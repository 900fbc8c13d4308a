"""What a benchmark ran on, printed first by every benchmark so figures can be compared."""

from __future__ import annotations

import os
import platform
import sys


def describe() -> str:
    """One line: the Python, the machine, and how durable-rules' module was loaded."""
    from all_rules.engine import _durable

    binding = "lazy binding" if sys.version_info >= (3, 13) else "immediate binding"
    return (f"Python {platform.python_version()} ({platform.python_implementation()}) on "
            f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores; "
            f"{_durable.MODULE_NAME} loaded with {binding}")

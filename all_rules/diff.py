"""Alias of ``all_rules.cohort.diff``: the old path, kept for at least one release.

This module was ``all_rules/diff.py`` before the package took its wings
(docs/architecture.md); it now lives in the cohort wing. New code imports
``all_rules.cohort.diff``;
this path gives the very same objects (``compare``, ``DiffSummary`` and the rest),
the public names by import and any other name the old module had by forwarding.
"""

from typing import Any

import all_rules.cohort.diff as _moved
from all_rules.cohort.diff import *  # noqa: F403
from all_rules.cohort.diff import __all__ as __all__


def __getattr__(name: str) -> Any:
    return getattr(_moved, name)

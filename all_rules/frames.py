"""Alias of ``all_rules.cohort.frames``: the old path, kept for at least one release.

This module was ``all_rules/frames.py`` before the package took its wings
(docs/architecture.md); it now lives in the cohort wing. New code imports
``all_rules.cohort.frames``;
this path gives the very same objects (``assess_frame`` and its column lists),
the public names by import and any other name the old module had by forwarding.
"""

from typing import Any

import all_rules.cohort.frames as _moved
from all_rules.cohort.frames import *  # noqa: F403
from all_rules.cohort.frames import __all__ as __all__


def __getattr__(name: str) -> Any:
    return getattr(_moved, name)

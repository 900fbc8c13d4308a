"""Shared fixtures: the shipped guideline, loaded once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from all_rules import Guideline

ROOT = Path(__file__).resolve().parent.parent
RULESETS = ROOT / "rulesets"
EXAMPLES = ROOT / "docs" / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def guideline() -> Guideline:
    return Guideline.default()


@pytest.fixture
def fresh_guideline() -> Iterator[Guideline]:
    """A guideline with its own engine, closed after the test."""
    own = Guideline.load()
    yield own
    own.close()

"""Docs that cannot rot: README code runs, the generated catalogue is current."""

from __future__ import annotations

import re

import pytest

from all_rules import Guideline
from all_rules.report._describe import catalogue_markdown
from all_rules.report._gendocs import pages

from .conftest import ROOT


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def test_python_examples_in_readme_and_docs_run() -> None:
    """Every ```python block of the README and docs/ executes without error (except blocks
    that say they need a real cluster)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    ran = 0
    for page in pages:
        for block in _python_blocks(page.read_text(encoding="utf-8")):
            if "not run by the tests" in block:
                continue
            exec(compile(block, str(page.relative_to(ROOT)), "exec"), {})
            ran += 1
    assert ran >= 3


def test_catalogue_page_is_current() -> None:
    """docs/catalogue.md equals what `all-rules rules list --format markdown` prints now."""
    expected = catalogue_markdown(Guideline.default().ruleset)
    actual = (ROOT / "docs" / "catalogue.md").read_text(encoding="utf-8")
    hint = "regenerate: all-rules rules list --format markdown > docs/catalogue.md"
    assert actual == expected, hint


@pytest.mark.parametrize("name", ["traceability.md", "facts.md", "output.md", "catalogue.md"])
def test_generated_page_is_current(name: str) -> None:
    """docs/traceability.md, facts.md, output.md (and catalogue.md) equal what the rulesets,
    statements, cases and models give now."""
    expected = pages(Guideline.default().ruleset)[name]
    actual = (ROOT / "docs" / name).read_text(encoding="utf-8")
    assert actual == expected, f"regenerate: python -m all_rules.report._gendocs ({name} is stale)"


def test_docs_cite_no_document_outside_the_repository() -> None:
    """Code, docs, tests and rulesets point to docs/, never to the original SPEC or to
    ../shared (users do not have them). A shipped earlier release (rulesets/releases/) is
    kept byte for byte as it was released, and is not searched."""
    offenders = []
    for folder in ("all_rules", "docs", "tests", "rulesets"):
        for path in sorted((ROOT / folder).rglob("*")):
            if (path.suffix not in {".py", ".md", ".yaml"} or ".venv" in path.parts
                    or "releases" in path.relative_to(ROOT).parts):
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if (re.search(r"\bSPEC\b|shared/seeds|DURABLE_NOTES|\.\./shared", line)
                        and path.name != "test_docs.py"):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_readme_states_the_two_commands() -> None:
    """The README's install-and-run and test commands are the ones CI runs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -e ".[dev]"' in readme
    assert 'pip install --quiet -e ".[dev]"' in ci
    assert "\npytest\n" in readme
    assert re.search(r"^\s*pytest$", ci, re.MULTILINE)
    assert "python3 -m venv .venv" in readme  # whichever python3 the machine has


def test_ci_runs_the_tests_on_311_and_313() -> None:
    """CI runs README's commands on the oldest and the newest Python the package declares."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "for VERSION in 3.11 3.13; do" in ci
    assert 'requires-python = ">=3.11,<3.14"' in pyproject

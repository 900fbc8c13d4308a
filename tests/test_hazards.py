"""The hazard log (docs/safety/hazards.md) names a pinning test for every control, and every
named test exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from all_rules import Guideline
from all_rules.ruleset._safe_yaml import load_file
from all_rules.ruleset._schema import CaseFile

from .conftest import ROOT

HAZARDS = ROOT / "docs" / "safety" / "hazards.md"
REQUIRED = ("HSCT", "dose", "TKI", "Unknown", "Contradictory", "drift", "FHIR")
_PIN = re.compile(r"`((?:tests|rulesets)/[^`:]+)::([^`]+)`")


def _controls(text: str) -> list[tuple[str, str, str]]:
    """(hazard heading, control, pinned-by cell) for every table row under a hazard."""
    rows = []
    hazard = ""
    for line in text.splitlines():
        if line.startswith("## "):
            hazard = line[3:].strip()
            continue
        if not hazard or not line.startswith("|") or set(line) <= {"|", "-", " "}:
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "Control":
            continue
        assert len(cells) == 3, f"{hazard}: a control row has three cells: {line}"
        rows.append((hazard, cells[0], cells[2]))
    return rows


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")}


def _case_names(path: Path) -> set[str]:
    return {case.name for case in CaseFile.model_validate(load_file(path).data).cases}


def pin_problems(text: str, root: Path = ROOT) -> list[str]:
    """Every control without a pin, and every pin that names nothing."""
    problems = []
    for hazard, control, pinned in _controls(text):
        pins = _PIN.findall(pinned)
        if not pins:
            problems.append(f"{hazard}: control '{control}' has no pinning test")
        for file, name in pins:
            path = root / file
            if not path.is_file():
                problems.append(f"{hazard}: no file {file}")
                continue
            names = _case_names(path) if file.endswith(".yaml") else _test_names(path)
            if name not in names:
                problems.append(f"{hazard}: {file} has no {name!r}")
    return problems


def test_every_control_is_pinned_by_an_existing_test() -> None:
    assert pin_problems(HAZARDS.read_text(encoding="utf-8")) == []


def test_the_log_covers_the_required_hazards() -> None:
    """HSCT advice, doses, TKI, unknown as no, contradictory items, risk drift, FHIR data."""
    headings = [h for h, _, _ in _controls(HAZARDS.read_text(encoding="utf-8"))]
    for word in REQUIRED:
        assert any(word.lower() in h.lower() for h in headings), word


@pytest.mark.parametrize(("row", "problem"), [
    ("| A control | rule | |", "control 'A control' has no pinning test"),
    ("| A control | rule | pending: FHIR branch |", "control 'A control' has no pinning test"),
    ("| A control | rule | `tests/test_hazards.py::test_nothing_here` |",
     "tests/test_hazards.py has no 'test_nothing_here'"),
    ("| A control | rule | `tests/test_absent.py::test_x` |", "no file tests/test_absent.py"),
    ("| A control | rule | `rulesets/audit_test.yaml::no such case` |",
     "rulesets/audit_test.yaml has no 'no such case'"),
])
def test_the_parser_catches_an_unpinned_or_dangling_control(row: str, problem: str) -> None:
    text = f"## H9. Example\n\n| Control | Kind | Pinned by |\n|---|---|---|\n{row}\n"
    assert pin_problems(text) == [f"H9. Example: {problem}"]


def test_absent_phase_and_relapse_count_are_asked_for_not_defaulted() -> None:
    """H4 control (issue 17 §1): a patient with no phase gets no induction advice and a patient
    in consolidation with no relapse count is not told to continue standard consolidation;
    each is undecided and asked for as "not recorded", never reported as inconsistent."""
    guideline = Guideline.default()
    work_up = {"age_years": 30, "age_at_diagnosis_years": 30, "lineage": "B",
               "ph_status": "negative", "wbc_at_diagnosis_10e9_per_l": 10, "cns_status": "CNS1",
               "kmt2a_rearranged": False, "substantial_comorbidities": False, "bsa_m2": 1.8}
    no_phase = guideline.assess({**work_up, "relapse_count": 0})
    assert not any(i.id.startswith(("induction.", "consolidation.", "maintenance."))
                   for i in no_phase.recommendations)
    assert "data.phase" in no_phase.ids()
    assert "phase" in no_phase.risk.missing
    assert no_phase.risk.group.value == "indeterminate"
    assert "not recorded" in next(i.text for i in no_phase.recommendations if i.id == "data.phase")

    consolidation = {**work_up, "phase": "consolidation", "complete_remission": True,
                     "weeks_to_complete_remission": 3, "mrd_end_of_induction_percent": 0.001,
                     "mrd_consolidation_percent": 0.001}
    no_count = guideline.assess(consolidation)
    assert "consolidation.mrd_standard" not in no_count.ids()
    assert "data.relapse_count" in no_count.ids()
    assert no_count.risk.group.value == "indeterminate"
    assert "consolidation.mrd_standard" in guideline.assess(
        {**consolidation, "relapse_count": 0}).ids()

    relapsed = guideline.assess({**work_up, "phase": "relapsed", "relapse_site": "marrow"})
    assert not any(i.id.startswith("data.inconsistent") for i in relapsed.recommendations)
    count_item = next(i for i in relapsed.recommendations if i.id == "data.relapse_count")
    assert "not recorded" in count_item.text
    assert "inconsistent" not in count_item.text.lower()

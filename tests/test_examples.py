"""Golden outputs of the worked examples in docs/examples, reviewed like code.

The ruleset digest is masked (it changes with any ruleset edit). To regenerate after a
reviewed change: ``ALL_RULES_UPDATE_GOLDENS=1 pytest tests/test_examples.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from all_rules import Guideline

from .conftest import EXAMPLES

EXAMPLE_FILES = sorted(p for p in EXAMPLES.glob("*.json") if not p.name.endswith(
    ".expected.json"))
UPDATE = os.environ.get("ALL_RULES_UPDATE_GOLDENS") == "1"
MASK = "sha256:<masked>"


def _masked(output: dict[str, Any]) -> dict[str, Any]:
    return {**output, "ruleset": {**output["ruleset"], "digest": MASK}}


def _golden(example: Path) -> Path:
    return example.with_name(example.stem + ".expected.json")


def test_there_are_the_six_worked_examples() -> None:
    """Adult Ph+, standard-risk child, infant, relapsed B-ALL, CR2 MRD+, dose errors."""
    assert {p.stem for p in EXAMPLE_FILES} >= {
        "adult_ph_positive", "standard_risk_child", "infant", "relapsed_b_all",
        "cr2_mrd_positive", "induction_plan_dose_errors"}


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=[p.stem for p in EXAMPLE_FILES])
def test_example_matches_its_golden_output(guideline: Guideline, example: Path) -> None:
    """The assessment of each worked example is exactly its reviewed golden JSON."""
    facts = json.loads(example.read_text(encoding="utf-8"))
    actual = _masked(guideline.assess(facts).to_dict())
    golden = _golden(example)
    if UPDATE:
        golden.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n",
                          encoding="utf-8")
    assert actual == json.loads(golden.read_text(encoding="utf-8"))


def test_dose_errors_example_flags_each_dose() -> None:
    """The dose-error example: vincristine over the cap is critical, the others warnings,
    and the backbone doses are computed from the Mosteller BSA with vincristine capped."""
    facts = json.loads((EXAMPLES / "induction_plan_dose_errors.json").read_text())
    assessment = Guideline.default().assess(facts)
    severities = {item.id: item.severity.value for item in assessment.recommendations}
    assert severities["audit.vincristine_dose"] == "critical"
    assert severities["audit.daunorubicin_dose"] == "warning"
    assert severities["audit.pegaspargase_dose"] == "warning"
    assert severities["audit.missing_cns_prophylaxis"] == "critical"
    backbone = assessment.get("induction.four_drug_backbone")
    assert backbone is not None
    assert backbone.doses is not None
    vincristine = next(d for d in backbone.doses if d.drug == "vincristine")
    bsa = (122 * 23 / 3600) ** 0.5
    assert vincristine.dose == pytest.approx(round(1.4 * bsa, 2))
    assert not vincristine.capped


def test_vincristine_is_capped_at_2_mg_for_a_large_adult(guideline: Guideline) -> None:
    """1.4 mg/m² × 2.0 m² = 2.8 mg is capped to 2 mg, and marked capped (an adult whose plan
    follows the source backbone: only then are its doses shown to an adult)."""
    assessment = guideline.assess({"age_years": 40, "bsa_m2": 2.0, "phase": "diagnosis",
                                   "substantial_comorbidities": False,
                                   "plan": {"regimen": "source_backbone"}})
    backbone = assessment.get("induction.four_drug_backbone")
    assert backbone is not None
    assert backbone.doses is not None
    vincristine = next(d for d in backbone.doses if d.drug == "vincristine")
    assert (vincristine.dose, vincristine.capped, vincristine.unit) == (2.0, True, "mg")
    daunorubicin = next(d for d in backbone.doses if d.drug == "daunorubicin")
    assert (daunorubicin.dose, daunorubicin.dose_max) == (50.0, 60.0)


def test_backbone_without_bsa_has_no_computed_doses(guideline: Guideline) -> None:
    """Without a BSA no dose is shown (which dose applies depends on it: per m², per kg
    under 0.6 m², the adult pegaspargase dose) and data.body_surface_area fires."""
    assessment = guideline.assess({"age_years": 40, "substantial_comorbidities": False,
                                   "phase": "diagnosis",
                                   "plan": {"regimen": "source_backbone"}})
    backbone = assessment.get("induction.four_drug_backbone")
    assert backbone is not None
    assert backbone.doses is None
    assert "mg/m²" not in backbone.text
    assert "data.body_surface_area" in assessment.ids()


def test_only_dose_bearing_items_carry_doses(guideline: Guideline) -> None:
    """`doses` appears on dose-bearing items only, not as null elsewhere."""
    output = guideline.assess({"age_years": 12, "bsa_m2": 1.5,
                                "phase": "diagnosis"}).to_dict()
    with_doses = [item["id"] for item in output["recommendations"] if "doses" in item]
    assert with_doses == ["induction.four_drug_backbone"]

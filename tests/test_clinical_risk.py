"""Clinical risk content (issue 7, classes b-i and m): risk groups after relapse, age at
diagnosis, extra features, doses, steroid wording, cranial irradiation floor, consolidation
MRD, contradictory facts and exclusive population items.

Each test pins a defect class; property tests run over generated patients (``all_rules.synth``
rows and a smaller hypothesis search)."""

from __future__ import annotations

from typing import Any

from all_rules import Guideline

ADULT_B = {"lineage": "B", "ph_status": "negative", "wbc_at_diagnosis_10e9_per_l": 10,
           "cns_status": "CNS1", "bsa_m2": 1.8}


def _item(guideline: Guideline, facts: dict[str, Any], rule_id: str) -> Any:
    found = [i for i in guideline.assess(facts).recommendations if i.id == rule_id]
    assert found, f"{rule_id} did not fire"
    return found[0]


# --- f: steroid choice ---------------------------------------------------------------------

def test_steroid_reason_for_adolescents_does_not_dismiss_osteonecrosis(
        guideline: Guideline) -> None:
    item = _item(guideline, {**ADULT_B, "age_years": 14}, "induction.steroid_choice")
    words = (item.text + " " + item.reason).lower()
    assert "does not apply" not in words
    assert "osteonecrosis" in words and "adolescent" in words
    assert "COG AALL0232 2016" in item.citations


# --- h: consolidation MRD ------------------------------------------------------------------

CONSOLIDATION = {**ADULT_B, "age_years": 20, "phase": "consolidation",
                 "complete_remission": True, "weeks_to_complete_remission": 3,
                 "mrd_end_of_induction_percent": 0.001, "mrd_consolidation_percent": 0.001}


def test_standard_consolidation_only_for_standard_risk_in_remission(
        guideline: Guideline) -> None:
    assert "consolidation.mrd_standard" in guideline.assess(CONSOLIDATION).ids()
    for change in ({"mrd_end_of_induction_percent": 1.0},
                   {"complete_remission": False, "weeks_to_complete_remission": None},
                   {"complete_remission": None},
                   {"age_years": 40}):
        ids = guideline.assess({**CONSOLIDATION, **change}).ids()
        assert "consolidation.mrd_standard" not in ids, change


# --- b: risk group after relapse or refractoriness -----------------------------------------

IN_REMISSION = {**ADULT_B, "age_years": 20, "complete_remission": True,
                "weeks_to_complete_remission": 3, "mrd_end_of_induction_percent": 0.001}


def test_relapsed_or_refractory_is_never_a_first_line_group(guideline: Guideline) -> None:
    assert guideline.assess({**IN_REMISSION, "phase": "maintenance"}).risk.group.value \
        == "standard"
    for change in ({"phase": "relapsed", "relapse_count": 1},
                   {"phase": "refractory"},
                   {"phase": "maintenance", "relapse_count": 2},
                   {"phase": "consolidation", "remission_number": 3},
                   {"phase": "relapsed", "relapse_count": 1, "lineage": "T",
                    "weeks_to_complete_remission": 8}):
        risk = guideline.assess({**IN_REMISSION, **change}).risk
        assert risk.group.value == "relapsed_refractory", change
    # Features stay visible.
    risk = guideline.assess({**IN_REMISSION, "phase": "relapsed", "relapse_count": 1,
                             "ph_status": "positive"}).risk
    assert "risk.ph_positive" in risk.features

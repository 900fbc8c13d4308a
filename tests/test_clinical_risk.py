"""Clinical risk content (issue 7, classes b-i and m): risk groups after relapse, age at
diagnosis, extra features, doses, steroid wording, cranial irradiation floor, consolidation
MRD, contradictory facts and exclusive population items.

Each test pins a defect class; property tests run over generated patients (``all_rules.synth``
rows and a smaller hypothesis search)."""

from __future__ import annotations

from typing import Any

from all_rules import Guideline

ADULT_B = {"lineage": "B", "ph_status": "negative", "wbc_at_diagnosis_10e9_per_l": 10,
           "cns_status": "CNS1", "bsa_m2": 1.8, "kmt2a_rearranged": False}


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
    assert "osteonecrosis" in words
    assert "adolescent" in words
    assert "COG AALL0232 2016" in item.citations


# --- h: consolidation MRD ------------------------------------------------------------------

CONSOLIDATION = {**ADULT_B, "age_years": 20, "age_at_diagnosis_years": 20,
                 "phase": "consolidation",
                 "complete_remission": True, "weeks_to_complete_remission": 3,
                 "mrd_end_of_induction_percent": 0.001, "mrd_consolidation_percent": 0.001}


def test_standard_consolidation_only_for_standard_risk_in_remission(
        guideline: Guideline) -> None:
    assert "consolidation.mrd_standard" in guideline.assess(CONSOLIDATION).ids()
    for change in ({"mrd_end_of_induction_percent": 1.0},
                   {"complete_remission": False, "weeks_to_complete_remission": None},
                   {"complete_remission": None},
                   {"age_years": 40, "age_at_diagnosis_years": 40}):
        ids = guideline.assess({**CONSOLIDATION, **change}).ids()
        assert "consolidation.mrd_standard" not in ids, change


# --- b: risk group after relapse or refractoriness -----------------------------------------

IN_REMISSION = {**ADULT_B, "age_years": 20, "age_at_diagnosis_years": 20,
                "complete_remission": True,
                "weeks_to_complete_remission": 3, "mrd_end_of_induction_percent": 0.001}


def test_relapsed_or_refractory_is_never_a_first_line_group(guideline: Guideline) -> None:
    assert guideline.assess({**IN_REMISSION, "phase": "maintenance"}).risk.group.value \
        == "standard"
    for change in ({"phase": "relapsed", "relapse_count": 1},
                   {"phase": "refractory"},
                   {"phase": "maintenance", "relapse_count": 2},
                   {"phase": "consolidation", "relapse_count": 2, "remission_number": 3},
                   {"phase": "relapsed", "relapse_count": 1, "lineage": "T",
                    "weeks_to_complete_remission": 8}):
        risk = guideline.assess({**IN_REMISSION, **change}).risk
        assert risk.group.value == "relapsed_refractory", change
    # Features stay visible.
    risk = guideline.assess({**IN_REMISSION, "phase": "relapsed", "relapse_count": 1,
                             "ph_status": "positive"}).risk
    assert "risk.ph_positive" in risk.features


# --- c: age at diagnosis -------------------------------------------------------------------

MAINTENANCE = {**IN_REMISSION, "phase": "maintenance"}


def test_child_diagnosed_at_9_does_not_become_high_risk_at_11(guideline: Guideline) -> None:
    risk = guideline.assess({**MAINTENANCE, "age_years": 11, "age_at_diagnosis_years": 9}).risk
    assert risk.group.value == "standard"
    assert not risk.features
    # Without the age at diagnosis, the current age never decides it after induction.
    risk = guideline.assess({**MAINTENANCE, "age_years": 11}).risk
    assert "risk.nci_high" not in risk.features
    assert risk.group.value == "indeterminate"
    assert "age_at_diagnosis_years" in risk.missing
    assert "data.age_at_diagnosis" in guideline.assess({**MAINTENANCE, "age_years": 11}).ids()


def test_current_age_stands_in_at_diagnosis_and_in_induction(guideline: Guideline) -> None:
    for phase in ("diagnosis", "induction"):
        risk = guideline.assess({**ADULT_B, "age_years": 12, "phase": phase}).risk
        assert "risk.nci_high" in risk.features
        assert "age_at_diagnosis_years" not in risk.missing


def test_age_at_diagnosis_is_optional_and_bounded() -> None:
    from all_rules import validate_facts
    assert validate_facts({"age_years": 5}).age_at_diagnosis_years is None
    assert validate_facts({"age_years": 5, "age_at_diagnosis_years": 4.5}) \
        .age_at_diagnosis_years == 4.5


# --- i: contradictory facts ----------------------------------------------------------------

def test_contradictions_are_reported_and_decide_nothing(guideline: Guideline) -> None:
    cases = {
        "data.inconsistent.remission": {**MAINTENANCE, "age_at_diagnosis_years": 20,
                                        "complete_remission": False,
                                        "weeks_to_complete_remission": 6},
        "data.inconsistent.relapse_phase": {**IN_REMISSION, "phase": "relapsed",
                                            "relapse_count": 0},
        "data.inconsistent.remission_number": {**MAINTENANCE, "age_at_diagnosis_years": 20,
                                               "relapse_count": 1, "remission_number": 4},
        "data.inconsistent.relapse_site": {**ADULT_B, "age_years": 20, "relapse_count": 0,
                                           "relapse_site": "isolated_cns"},
        "data.inconsistent.age_at_diagnosis": {**ADULT_B, "age_years": 20,
                                               "age_at_diagnosis_years": 40},
    }
    for item_id, facts in cases.items():
        assessment = guideline.assess(facts)
        found = [i for i in assessment.recommendations if i.id == item_id]
        assert found, item_id
        assert found[0].kind.value == "data_needed"
        assert found[0].severity.value == "warning"
        risk = assessment.risk
        assert risk.group.value != "standard", item_id
    # Neither side of a contradiction decides a feature.
    risk = guideline.assess(cases["data.inconsistent.remission"]).risk
    assert "risk.slow_remission" not in risk.features
    risk = guideline.assess(cases["data.inconsistent.age_at_diagnosis"]).risk
    assert "risk.age_35_or_older" not in risk.features
    assert "age_at_diagnosis_years" in risk.missing
    # A CNS "relapse" with no relapse gets no "no routine irradiation" next to "consider it".
    ids = guideline.assess({**cases["data.inconsistent.relapse_site"], "age_years": 20}).ids()
    assert not {"cns.no_routine_cranial_irradiation", "cns.cranial_irradiation_reserved"} \
        <= set(ids)


def test_a_contradicted_relapse_history_is_never_standard(guideline: Guideline) -> None:
    for change in ({"remission_number": 3}, {"relapse_site": "marrow"}):
        for phase in ("diagnosis", "induction", "consolidation", "maintenance"):
            facts = {**IN_REMISSION, "phase": phase, "relapse_count": 0, **change}
            risk = guideline.assess(facts).risk
            assert risk.group.value == "indeterminate", (change, phase)
            assert "relapse_count" in risk.missing


# --- d: features a hematologist expects --------------------------------------------------

def test_child_with_t_all_and_wbc_200_is_high_risk(guideline: Guideline) -> None:
    risk = guideline.assess({**ADULT_B, "age_years": 12, "lineage": "T",
                             "wbc_at_diagnosis_10e9_per_l": 200}).risk
    assert risk.group.value == "high"
    assert "risk.t_all_child" in risk.features


def test_cns3_child_and_kmt2a_outside_infancy_are_features(guideline: Guideline) -> None:
    assert "risk.cns3_child" in guideline.assess(
        {**ADULT_B, "age_years": 6, "cns_status": "CNS3"}).risk.features
    for age in (4.0, 40.0):
        assert "risk.kmt2a_rearranged" in guideline.assess(
            {**ADULT_B, "age_years": age, "kmt2a_rearranged": True}).risk.features


def test_testicular_involvement_is_declared_informational() -> None:
    from all_rules._yaml import load_file

    from .conftest import RULESETS
    manifest = load_file(RULESETS / "ruleset.yaml").data
    assert "testicular_involvement" in manifest["informational_facts"]

"""The diagnosis gate: which Conditions make a record an ALL patient's, and what the codes
systems send (SNOMED CT, ICD-10-CM, WHO ICD-10, ICD-O-3, NCI Thesaurus) carry."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

pytest.importorskip("fhir.resources")

from all_rules.fhir import FhirMappingError, facts_from_bundle

from ..support.fhir_charts import (
    ICD10,
    ICD10CM,
    ICDO3,
    NCIT,
    SNOMED,
    bundle,
    diagnosis,
    observation,
    status,
)

ON = dt.date(2026, 11, 27)


@pytest.mark.parametrize(("system", "code", "carried"), [
    (SNOMED, "91857003", {}), (SNOMED, "277571004", {"lineage": "B"}),
    (ICD10CM, "C91.00", {}), (ICD10CM, "C91.01", {"complete_remission": True}),
    (ICD10CM, "C91.02", {"phase": "relapsed", "relapse_count": None}),
    (ICD10, "C91.0", {}),
    (ICDO3, "9811/3", {"lineage": "B"}),
    (ICDO3, "9812/3", {"lineage": "B", "ph_status": "positive"}),
    (ICDO3, "9813/3", {"lineage": "B", "kmt2a_rearranged": True}),
    (ICDO3, "9818/3", {"lineage": "B"}), (ICDO3, "9835/3", {}),
    (ICDO3, "9836/3", {"lineage": "B"}), (ICDO3, "9837/3", {"lineage": "T"}),
    (NCIT, "C3167", {}), (NCIT, "C8644", {"lineage": "B"}), (NCIT, "C3183", {"lineage": "T"}),
    (NCIT, "C36312", {"lineage": "B", "ph_status": "positive"}),
])
def test_codes_systems_send_for_all(system: str, code: str, carried: dict[str, Any]) -> None:
    mapped = facts_from_bundle(bundle(diagnosis(code=code, system=system)), assessment_date=ON)
    assert mapped.has_all_diagnosis
    assert mapped.diagnosis is not None
    assert mapped.diagnosis.codes == (f"{system}|{code}",)
    facts = mapped.facts.model_dump()
    for fact in ("lineage", "ph_status", "kmt2a_rearranged", "complete_remission"):
        assert facts[fact] == carried.get(fact), fact
    # No default: a phase or relapse count the record does not give is unknown (issue 17 §1).
    assert facts["phase"] == carried.get("phase")
    assert facts["relapse_count"] == carried.get("relapse_count")




@pytest.mark.parametrize(("fields", "gate"), [
    (status("active", "confirmed"), True), (status("recurrence"), True),
    (status("relapse"), True), (status("remission"), True), ({}, True),
    (status("resolved"), False), (status("inactive"), False),
    (status("active", "refuted"), False), (status(None, "entered-in-error"), False),
    (status("active", "provisional"), False), (status("active", "differential"), False),
    (status("active", "unconfirmed"), False),
])
def test_which_conditions_pass_the_gate(fields: dict[str, Any], gate: bool) -> None:
    mapped = facts_from_bundle(bundle(diagnosis(**fields)), assessment_date=ON)
    assert mapped.has_all_diagnosis is gate
    if not gate:
        assert mapped.diagnosis is None
        assert [u.resource for u in mapped.unmapped] == ["Condition/dx"]
    assert list(mapped.rejected_diagnoses) == ([] if gate else list(mapped.unmapped))


def test_a_record_that_cannot_be_mapped_still_says_what_the_gate_saw() -> None:
    partial = bundle(diagnosis(**status("resolved")), birth="1984-03")
    with pytest.raises(FhirMappingError) as raised:
        facts_from_bundle(partial, assessment_date=ON)
    assert raised.value.has_all_diagnosis is False
    assert [u.resource for u in raised.value.rejected_diagnoses] == ["Condition/dx"]
    with pytest.raises(FhirMappingError) as raised:
        facts_from_bundle(bundle(diagnosis(), birth="1984-03"), assessment_date=ON)
    assert raised.value.has_all_diagnosis is True
    with pytest.raises(FhirMappingError) as raised:
        facts_from_bundle({"resourceType": "Bundle", "entry": []}, assessment_date=ON)
    assert raised.value.has_all_diagnosis is None


def test_a_record_without_all_is_mapped_but_says_so() -> None:
    """No ALL Condition: the facts are still read, the gate is closed, at-diagnosis values
    cannot be placed and are reported."""
    other = diagnosis(code="195967001")  # asthma
    mapped = facts_from_bundle(bundle(other, observation("w", "6690-2", 45, "10*9/L"),
                                      observation("h", "8302-2", 150, "cm")),
                               assessment_date=ON)
    assert not mapped.has_all_diagnosis
    assert mapped.diagnosis is None
    assert mapped.facts.height_cm == 150
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l is None
    said = {u.resource: u.reason for u in mapped.unmapped}
    assert said["Condition/dx"] == "no code in the code map"
    assert said["Observation/w"] == ("no dated ALL diagnosis to place this at-diagnosis "
                                     "value against")


def test_another_patients_all_condition_does_not_open_the_gate() -> None:
    theirs = {**diagnosis(), "subject": {"reference": "Patient/p2"}}
    mapped = facts_from_bundle(bundle(theirs), assessment_date=ON)
    assert not mapped.has_all_diagnosis
    assert [(u.resource, u.reason) for u in mapped.unmapped] == [
        ("Condition/dx", "its subject is not this Bundle's patient")]


def test_age_at_diagnosis_from_onset_date_or_onset_age() -> None:
    mapped = facts_from_bundle(bundle(diagnosis(onset="2020-03-02"), birth="2014-03-02"),
                               assessment_date=ON)
    assert mapped.facts.age_at_diagnosis_years == pytest.approx(6.0, abs=0.01)
    assert mapped.provenance["age_at_diagnosis_years"] == "Condition/dx (2020-03-02)"
    aged = diagnosis(onset=None, onsetAge={"value": 6, "unit": "a", "system":
                                           "http://unitsofmeasure.org", "code": "a"})
    mapped = facts_from_bundle(bundle(aged, birth="2014-03-02"), assessment_date=ON)
    assert mapped.facts.age_at_diagnosis_years == 6
    undated = facts_from_bundle(bundle(diagnosis(onset=None)), assessment_date=ON)
    assert undated.has_all_diagnosis
    assert undated.facts.age_at_diagnosis_years is None
    assert [u.fact for u in undated.unmapped] == ["age_at_diagnosis_years"]


def test_in_remission_without_a_phase_says_the_phase_is_not_known() -> None:
    mapped = facts_from_bundle(bundle(diagnosis(code="C91.01", system=ICD10CM)),
                               assessment_date=ON)
    assert "phase" in mapped.undetermined
    assert any(u.fact == "phase" for u in mapped.unmapped)
    given = facts_from_bundle(bundle(diagnosis(code="C91.01", system=ICD10CM)),
                              assessment_date=ON, extra={"phase": "maintenance"})
    assert "phase" not in given.undetermined


def test_codes_that_disagree_leave_the_fact_unknown() -> None:
    both = diagnosis(code="9837/3", system=ICDO3)
    both["code"]["coding"].append({"system": NCIT, "code": "C8644"})
    mapped = facts_from_bundle(bundle(both), assessment_date=ON)
    assert mapped.has_all_diagnosis
    assert mapped.facts.lineage is None
    assert [(u.resource, u.reason) for u in mapped.unmapped] == [
        ("Condition/dx", "its codes disagree on lineage")]

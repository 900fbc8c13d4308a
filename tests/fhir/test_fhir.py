"""FHIR R4 Bundle → facts: codes, units, age, provenance, and what is refused or left out."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from all_rules import assess

pytest.importorskip("fhir.resources")

from all_rules.fhir import (
    CodeMap,
    FhirMappingError,
    assess_bundle,
    facts_from_bundle,
)

from ..conftest import EXAMPLES
from ..support.fhir_charts import ADULT_PH, ON, SNOMED, UCUM, as_of, bundle, diagnosis, observation

#: ADULT_PH as of today, for the service, which assesses at today's date.

def test_bundle_maps_to_facts_with_provenance() -> None:
    """Age from birthDate at the assessment date; LOINC quantities converted to the fact
    units; ICD-O-3 9812/3 gives B lineage and Ph+; every fact names its resource."""
    mapped = facts_from_bundle(ADULT_PH, assessment_date=ON)
    facts = mapped.facts
    assert facts.age_years == pytest.approx(42.74, abs=0.01)
    assert facts.wbc_at_diagnosis_10e9_per_l == 45
    assert facts.height_cm == pytest.approx(178)
    assert (facts.lineage.value, facts.ph_status.value) == ("B", "positive")
    assert mapped.provenance["wbc_at_diagnosis_10e9_per_l"] == "Observation/wbc-1 (2026-11-20)"
    assert mapped.provenance["age_years"] == "Patient/p1"
    assert mapped.provenance["ph_status"] == "Condition/dx-1 (2026-11-20)"
    assert mapped.diagnosis is not None
    assert mapped.has_all_diagnosis
    assert mapped.facts.age_at_diagnosis_years == pytest.approx(42.72, abs=0.01)


def test_assessment_evidence_carries_the_source_resource() -> None:
    """The same recommendations as assess() on the same facts, with sources in evidence."""
    assessment, mapped = assess_bundle(ADULT_PH, assessment_date=ON,
                                       extra={"cns_status": "CNS1"})
    plain = assess(mapped.facts)
    assert assessment.ids() == plain.ids()
    wbc = assessment.get("risk.wbc_b_over_30")
    assert wbc is not None
    sources = {e.fact: e.source for e in wbc.evidence}
    # The adult criteria read the age at diagnosis, mapped from the ALL Condition's onset.
    assert sources == {"diagnosis_age_years": "Condition/dx-1 (2026-11-20)",
                       "lineage": "Condition/dx-1 (2026-11-20)",
                       "wbc_at_diagnosis_10e9_per_l": "Observation/wbc-1 (2026-11-20)"}
    assert '"source":"Observation/wbc-1 (2026-11-20)"' in assessment.to_json(indent=None)
    assert '"source"' not in plain.to_json(indent=None)


@pytest.mark.parametrize(("value", "unit", "expected"), [
    (45, "10*9/L", 45), (45, "10*3/uL", 45), (45000, "/uL", 45), (45000, "10*6/L", 45)])
def test_wbc_units_are_converted(value: float, unit: str, expected: float) -> None:
    mapped = facts_from_bundle(bundle(diagnosis(), observation("w", "6690-2", value, unit)),
                               assessment_date=ON)
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l == pytest.approx(expected)


def test_unconvertible_unit_skips_that_observation_with_a_report() -> None:
    """A unit that cannot be converted is reported by resource; the rest is still mapped."""
    mapped = facts_from_bundle(bundle(diagnosis(), observation("w", "6690-2", 4.5, "g/dL"),
                                      observation("h", "8302-2", 178, "cm")),
                               assessment_date=ON)
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l is None
    assert mapped.facts.height_cm == 178
    assert [(u.resource, u.fact) for u in mapped.unmapped] == [
        ("Observation/w", "wbc_at_diagnosis_10e9_per_l")]
    assert mapped.unmapped[0].reason.startswith(
        "unit 'g/dL' cannot be converted for wbc_at_diagnosis_10e9_per_l (accepted UCUM "
        "codes: /mm3, /nL, /uL, 10*3/mm3, 10*3/uL, 10*6/L, 10*9/L, {cells}/uL")


def test_what_cannot_be_mapped_is_reported_not_guessed() -> None:
    """Unknown codes, non-final results and unread resource types are listed as unmapped;
    a medication named only in free text is not matched by its name."""
    mapped = facts_from_bundle(bundle(
        observation("x", "1234-5", 1, "1"),
        observation("w", "6690-2", 45, "10*9/L", status="preliminary"),
        {"resourceType": "MedicationRequest", "id": "m1", "status": "draft",
         "intent": "order", "subject": {"reference": "Patient/p1"},
         "medicationCodeableConcept": {"text": "vincristine"}},
        {"resourceType": "Encounter", "id": "e1", "status": "finished",
         "class": {"code": "AMB"}}),
        assessment_date=ON)
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l is None
    assert mapped.facts.plan is None
    assert {(u.resource, u.reason) for u in mapped.unmapped} == {
        ("Observation/x", "no code in the code map"),
        ("Observation/w", "status 'preliminary' is not a result"),
        ("MedicationRequest/m1", "no medication code in the code map"),
        ("Encounter/e1", "resource type not read for facts")}


def test_medication_and_service_requests_become_the_plan() -> None:
    """Orders in the Bundle are read into plan: coded doses, a TKI, intrathecal route."""
    rx = "http://www.nlm.nih.gov/research/umls/rxnorm"

    def order(ident: str, code: str, dose: Any = None, route: str | None = None) -> Any:
        dosage: dict[str, Any] = {}
        if dose is not None:
            dosage["doseAndRate"] = [{"doseQuantity": {"value": dose[0], "code": dose[1],
                                                       "system": UCUM}}]
        if route:
            dosage["route"] = {"coding": [{"system": SNOMED, "code": route}]}
        return {"resourceType": "MedicationRequest", "id": ident, "status": "draft",
                "intent": "order", "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": {"coding": [{"system": rx, "code": code}]},
                "dosageInstruction": [dosage]}

    mapped = facts_from_bundle(bundle(
        order("v", "11202", (1.4, "mg/m2")), order("d", "3109", (45, "mg")),
        order("t", "282388"), order("it", "999", route="72607000")), assessment_date=ON)
    plan = mapped.facts.plan
    assert plan is not None
    assert (plan.tki, plan.intrathecal_in_induction) == (True, True)
    assert [(d.drug.value, d.dose, d.unit.value) for d in plan.doses] == [
        ("vincristine", 1.4, "mg/m2"), ("daunorubicin", 45.0, "mg")]
    assert mapped.provenance["plan.tki"] == "MedicationRequest/t"
    assert mapped.provenance["plan.vincristine_max_mg_per_m2"] == "MedicationRequest/v"
    skipped = facts_from_bundle(bundle(order("bad", "11202", (1, "g")), order("t", "282388")),
                                assessment_date=ON)
    assert skipped.facts.plan is not None
    assert skipped.facts.plan.doses == ()
    assert [(u.resource, u.fact) for u in skipped.unmapped] == [("MedicationRequest/bad",
                                                                 "plan")]
    assert skipped.unmapped[0].reason.startswith("dose unit 'g' cannot be used for vincristine")


@pytest.mark.parametrize(("birth", "message"), [
    ("1984", "is not a full date"), ("2030-01-01", "is after the assessment date")])
def test_age_needs_a_full_birth_date_before_the_assessment(birth: str, message: str) -> None:
    with pytest.raises(FhirMappingError, match=message):
        facts_from_bundle(bundle(birth=birth), assessment_date=ON)


def test_conflicting_values_leave_the_fact_unknown() -> None:
    """Two different values at the same time: that fact is unknown and reported; the rest of
    the Bundle is still mapped."""
    mapped = facts_from_bundle(bundle(diagnosis(), observation("w1", "6690-2", 45, "10*9/L"),
                                      observation("w2", "26464-8", 12, "10*9/L"),
                                      observation("h", "8302-2", 178, "cm")),
                               assessment_date=ON)
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l is None
    assert mapped.facts.height_cm == 178
    assert "wbc_at_diagnosis_10e9_per_l" in mapped.undetermined
    assert any(u.resource == "Observation/w2" and "conflicts with Observation/w1" in u.reason
               for u in mapped.unmapped)


def test_malformed_patient_is_refused_and_malformed_observation_reported() -> None:
    broken = observation("w", "6690-2", 45, "10*9/L")
    del broken["status"]
    mapped = facts_from_bundle(bundle(diagnosis(), broken), assessment_date=ON)
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l is None
    assert ("Observation/w", "status None is not a result") in {
        (u.resource, u.reason) for u in mapped.unmapped}
    record = bundle()
    record["entry"][0]["resource"]["gender"] = 7
    with pytest.raises(FhirMappingError, match=r"Patient/p1: not a valid Patient"):
        facts_from_bundle(record, assessment_date=ON)


def test_not_a_bundle_and_no_patient() -> None:
    with pytest.raises(FhirMappingError, match="not a FHIR Bundle"):
        facts_from_bundle({"resourceType": "Patient"}, assessment_date=ON)
    with pytest.raises(FhirMappingError, match="expected exactly one Patient, found 0"):
        facts_from_bundle({"resourceType": "Bundle", "type": "collection", "entry": []},
                          assessment_date=ON)


def test_institution_codes_extend_the_map(tmp_path: Path) -> None:
    """MRD has no single standard code: an institution file adds its own, with units."""
    local = tmp_path / "codes.yaml"
    local.write_text(
        "observations:\n"
        "  - fact: mrd_end_of_induction_percent\n"
        "    kind: quantity\n"
        "    codes: [{system: 'urn:oid:1.2.3', code: 'MRD-EOI'}]\n"
        "  - fact: ph_status\n"
        "    kind: coded\n"
        "    codes: [{system: 'urn:oid:1.2.3', code: 'BCR-ABL1'}]\n", encoding="utf-8")
    result = {"resourceType": "Observation", "id": "ph", "status": "final",
              "effectiveDateTime": "2026-11-21",
              "code": {"coding": [{"system": "urn:oid:1.2.3", "code": "BCR-ABL1"}]},
              "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "260385009"}]}}
    mapped = facts_from_bundle(
        bundle(diagnosis(), observation("m", "MRD-EOI", 0.0002, "1", system="urn:oid:1.2.3"),
               result),
        assessment_date=ON, code_map=CodeMap.load(extra=local))
    assert mapped.facts.mrd_end_of_induction_percent == pytest.approx(0.02)
    assert mapped.facts.ph_status is not None
    assert mapped.facts.ph_status.value == "negative"


def test_worked_example_round_trips_through_fhir() -> None:
    """The adult Ph+ worked example, as a Bundle, gives the example's recommendations."""
    facts = json.loads((EXAMPLES / "adult_ph_positive.json").read_text())
    assessment, mapped = assess_bundle(
        ADULT_PH, assessment_date=ON,
        extra={k: v for k, v in facts.items()
               if k not in ("age_years", "sex", "height_cm", "weight_kg", "lineage",
                            "ph_status", "wbc_at_diagnosis_10e9_per_l")})
    expected = assess({**facts, "age_years": mapped.facts.age_years,
                       "height_cm": mapped.facts.height_cm})
    assert assessment.ids() == expected.ids()
    assert assessment.risk == expected.risk


def test_a_record_moved_in_time_maps_to_the_same_facts() -> None:
    """``as_of`` (used by the service tests, which run at today's date) keeps ages and
    intervals: the record a year later maps to exactly the facts it maps to today."""
    later = ON + dt.timedelta(days=400)
    now = facts_from_bundle(ADULT_PH, assessment_date=ON)
    moved = facts_from_bundle(as_of(ADULT_PH, later), assessment_date=later)
    assert moved.facts == now.facts
    assert moved.unmapped == now.unmapped

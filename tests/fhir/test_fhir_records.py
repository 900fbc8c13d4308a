"""A multi-year record: several values per fact, chosen by date with provenance; old,
future, unfinished and other patients' values left out and reported; the current plan."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

pytest.importorskip("fhir.resources")

from all_rules.fhir import CodeMap, Windows, facts_from_bundle

from ..conftest import FIXTURES

ON = dt.date(2026, 11, 27)
LOINC, UCUM, SNOMED = "http://loinc.org", "http://unitsofmeasure.org", "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOCAL = "urn:example:all"
INSTITUTION = CodeMap.load(extra=FIXTURES / "cds" / "institution_codes.yaml")
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def quantity(ident: str, code: str, value: float, unit: str, when: str, *,
             status: str = "final", subject: str = "Patient/p1",
             system: str = LOINC) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": ident, "status": status,
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": subject}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def coded(ident: str, code: str, answer: tuple[str, str], when: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": ident, "status": "final",
            "code": {"coding": [{"system": LOCAL, "code": code}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": answer[0], "code": answer[1]}]}}


def condition(ident: str, code: str, onset: str, clinical: str = "active",
              verification: str = "confirmed", system: str = SNOMED) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": ident, "subject": {"reference": "Patient/p1"},
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verification}]},
            "code": {"coding": [{"system": system, "code": code}]}, "onsetDateTime": onset}


def order(ident: str, code: str, status: str, dose: tuple[float, str]) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": ident, "status": status,
            "intent": "order", "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
            "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {
                "value": dose[0], "code": dose[1], "system": UCUM}}]}]}


def cbc(ident: str, when: str, wbc: float) -> dict[str, Any]:
    """A CBC panel (LOINC 58410-2) carrying the leukocyte count as a component."""
    return {"resourceType": "Observation", "id": ident, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "58410-2"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when,
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "718-7"}]},
                 "valueQuantity": {"value": 9.1, "unit": "g/dL", "system": UCUM,
                                   "code": "g/dL"}},
                {"code": {"coding": [{"system": LOINC, "code": "6690-2"}]},
                 "valueQuantity": {"value": wbc, "unit": "10*3/uL", "system": UCUM,
                                   "code": "10*3/uL"}}]}


def chart(*, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A patient born 2008-05-10, diagnosed with B-ALL on 2021-03-02 at 12, assessed at 18
    in maintenance: five and a half years of record."""
    resources = [
        {"resourceType": "Patient", "id": "p1", "birthDate": "2008-05-10", "gender": "female"},
        condition("dx-suspected", "91857003", "2021-02-20", verification="refuted"),
        condition("dx-2019-import", "91857003", "2019-01-01", clinical="resolved"),
        condition("dx", "277571004", "2021-03-02"),
        condition("asthma", "195967001", "2015-04-01"),
        # leukocytes: a routine count months before, the presenting CBC the day before the
        # diagnosis, a count after steroids had started, and today's
        quantity("wbc-2020", "6690-2", 7.0, "10*3/uL", "2020-12-01"),
        cbc("cbc-presenting", "2021-03-01T09:30:00+01:00", 85),
        quantity("wbc-day3", "6690-2", 40, "10*3/uL", "2021-03-05"),
        quantity("wbc-now", "6690-2", 5.2, "10*3/uL", "2026-11-20"),
        # heights as a child, and as an adult last week
        quantity("height-2021", "8302-2", 155, "cm", "2021-03-01"),
        quantity("height-2024", "8302-2", 170, "cm", "2024-06-01"),
        quantity("height-now", "8302-2", 176, "cm", "2026-11-15"),
        # weights: old ones, the current one, and ones that must not be used
        quantity("weight-2021", "29463-7", 40, "kg", "2021-03-01"),
        quantity("weight-june", "29463-7", 70, "kg", "2026-06-01"),
        quantity("weight-now", "29463-7", 72, "kg", "2026-11-20T08:00:00Z"),
        quantity("weight-prelim", "29463-7", 90, "kg", "2026-11-26", status="preliminary"),
        quantity("weight-error", "29463-7", 10, "kg", "2026-11-25", status="entered-in-error"),
        quantity("weight-other", "29463-7", 100, "kg", "2026-11-26", subject="Patient/p2"),
        quantity("weight-future", "29463-7", 74, "kg", "2026-12-01"),
        # phase and MRD (institution codes), BCR::ABL1 at diagnosis
        coded("phase-1", "phase", (LOCAL, "induction"), "2021-03-05"),
        coded("phase-2", "phase", (LOCAL, "consolidation"), "2021-05-01"),
        coded("phase-3", "phase", (LOCAL, "maintenance"), "2022-01-10"),
        quantity("mrd-2025", "mrd-now", 0.0, "%", "2025-01-01", system=LOCAL),
        quantity("mrd-now", "mrd-now", 0.01, "%", "2026-11-01", system=LOCAL),
        coded("bcr-abl1", "bcr-abl1", (LOINC, "LA6577-6"), "2021-03-08"),
        # orders: induction long finished, and the current maintenance vincristine pulse
        order("vcr-2021", "11202", "completed", (1.5, "mg/m2")),
        order("dnr-2021", "3109", "stopped", (25, "mg/m2")),
        order("vcr-now", "11202", "active", (1.5, "mg/m2")),
    ]
    kept = [r for r in resources if r["id"] not in drop]
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"fullUrl": f"https://ehr.example/fhir/{r['resourceType']}/{r['id']}",
                       "resource": r} for r in kept]}


def reasons(mapped: Any) -> dict[str, str]:
    return {u.resource: u.reason for u in mapped.unmapped}


def test_each_fact_takes_the_right_value_by_date_with_provenance() -> None:
    mapped = facts_from_bundle(chart(), assessment_date=ON, code_map=INSTITUTION)
    facts = mapped.facts
    assert facts.wbc_at_diagnosis_10e9_per_l == 85          # presenting CBC, not day 3
    assert facts.height_cm == 176
    assert facts.weight_kg == 72
    assert facts.phase.value == "maintenance"
    assert facts.mrd_current_percent == pytest.approx(0.01)
    assert facts.ph_status == "negative"
    assert facts.lineage == "B"
    assert facts.age_at_diagnosis_years == pytest.approx(12.81, abs=0.01)
    assert mapped.provenance["wbc_at_diagnosis_10e9_per_l"] == \
        "Observation/cbc-presenting (2021-03-01T09:30:00+01:00)"
    assert mapped.provenance["weight_kg"] == "Observation/weight-now (2026-11-20T08:00:00Z)"
    assert mapped.provenance["phase"] == "Observation/phase-3 (2022-01-10)"
    assert mapped.provenance["age_at_diagnosis_years"] == "Condition/dx (2021-03-02)"
    assert mapped.diagnosis is not None
    assert (mapped.diagnosis.resource, mapped.diagnosis.date) == ("Condition/dx",
                                                                  dt.date(2021, 3, 2))


def test_unusable_values_are_reported_never_used() -> None:
    mapped = facts_from_bundle(chart(), assessment_date=ON, code_map=INSTITUTION)
    said = reasons(mapped)
    assert said["Observation/weight-prelim"] == "status 'preliminary' is not a result"
    assert said["Observation/weight-error"] == "status 'entered-in-error' is not a result"
    assert said["Observation/weight-other"] == "its subject is not this Bundle's patient"
    assert said["Observation/weight-future"] == \
        "dated 2026-12-01, after the assessment date 2026-11-27"
    assert said["Condition/dx-suspected"] == "verification status 'refuted' excludes it"
    assert said["Condition/dx-2019-import"] == \
        "clinical status 'resolved': not the current diagnosis"
    assert said["MedicationRequest/vcr-2021"] == "status 'completed': not the current plan"
    assert said["MedicationRequest/dnr-2021"] == "status 'stopped': not the current plan"
    assert "Condition/asthma" in said


def test_only_current_orders_are_the_plan() -> None:
    mapped = facts_from_bundle(chart(), assessment_date=ON, code_map=INSTITUTION)
    plan = mapped.facts.plan
    assert plan is not None
    assert [(d.drug.value, d.dose, d.unit.value) for d in plan.doses] == [
        ("vincristine", 1.5, "mg/m2")]
    assert mapped.provenance["plan.vincristine_max_mg_per_m2"] == "MedicationRequest/vcr-now"


def test_stale_weight_and_a_childs_height_are_left_out() -> None:
    """Without this month's weight, June's is too old for dosing; without the adult height,
    the height measured at 16 is a child's height for an adult."""
    mapped = facts_from_bundle(chart(drop=("weight-now", "height-now")), assessment_date=ON,
                               code_map=INSTITUTION)
    assert mapped.facts.weight_kg is None
    assert mapped.facts.height_cm is None
    said = reasons(mapped)
    assert said["Observation/weight-june"] == \
        "measured 179 days before the assessment, older than the 30-day window"
    assert said["Observation/height-2024"].startswith("height measured at age 16.1, a child's")


def test_windows_are_configurable() -> None:
    mapped = facts_from_bundle(chart(drop=("weight-now",)), assessment_date=ON,
                               code_map=INSTITUTION, windows=Windows(weight_days=200))
    assert mapped.facts.weight_kg == 70


def test_at_diagnosis_values_need_a_dated_diagnosis_within_the_window() -> None:
    """Without the presenting CBC, the nearest count is day 3 (inside the window); without a
    count inside the window, the leukocytes at diagnosis are unknown, and said so."""
    mapped = facts_from_bundle(chart(drop=("cbc-presenting",)), assessment_date=ON,
                               code_map=INSTITUTION)
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l == 40
    mapped = facts_from_bundle(chart(drop=("cbc-presenting", "wbc-day3")), assessment_date=ON,
                               code_map=INSTITUTION)
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l is None
    assert reasons(mapped)["Observation/wbc-2020"] == (
        "-91 days from the diagnosis date 2021-03-02, outside the window (-30 to +7 days)")


def test_same_time_conflict_leaves_only_that_fact_unknown() -> None:
    record = chart()
    twin = quantity("weight-twin", "29463-7", 75, "kg", "2026-11-20T08:00:00Z")
    record["entry"].append({"resource": twin})
    mapped = facts_from_bundle(record, assessment_date=ON, code_map=INSTITUTION)
    assert mapped.facts.weight_kg is None
    assert mapped.facts.height_cm == 176
    assert "weight_kg" in mapped.undetermined
    assert reasons(mapped)["Observation/weight-twin"].startswith(
        "weight_kg = 75.0 conflicts with Observation/weight-now (72.0) at the same time")


def test_an_earlier_assessment_date_sees_the_record_as_it_was() -> None:
    """Assessed on 2021-03-06, the same chart gives the induction phase and the child's
    height of that week; nothing later is used."""
    mapped = facts_from_bundle(chart(), assessment_date=dt.date(2021, 3, 6),
                               code_map=INSTITUTION)
    assert mapped.facts.phase.value == "induction"
    assert mapped.facts.height_cm == 155
    assert mapped.facts.weight_kg == 40
    assert mapped.facts.age_years == pytest.approx(12.82, abs=0.01)

"""The encodings real labs and servers send: WBC units (UCUM and HL7 v2 strings), CBC
panels, qualitative answers, comparators, absent data, cut pages and OperationOutcomes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fhir.resources")

from all_rules.fhir import CodeMap, facts_from_bundle

from ..support.fhir_charts import LOINC, SNOMED, bundle, diagnosis

ON = dt.date(2026, 11, 27)
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def wbc(quantity: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "w", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "6690-2"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-20",
            "valueQuantity": quantity, **fields}


def mapped_wbc(*resources: dict[str, Any]) -> Any:
    return facts_from_bundle(bundle(diagnosis(), *resources), assessment_date=ON)


@pytest.mark.parametrize(("value", "code", "expected"), [
    (45, "10*3/uL", 45), (45, "10*9/L", 45), (45000, "/uL", 45), (45000, "/mm3", 45),
    (45000, "{cells}/uL", 45), (45, "/nL", 45), (45, "10*3/mm3", 45), (45000, "10*6/L", 45)])
def test_wbc_ucum_codes(value: float, code: str, expected: float) -> None:
    mapped = mapped_wbc(wbc({"value": value, "unit": code, "system": UCUM, "code": code}))
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l == pytest.approx(expected)


@pytest.mark.parametrize("unit", ["K/uL", "x10E3/uL", "10^3/uL", "10*3/µL", "thou/uL",
                                  "k/ul", "10*3/μL"])
def test_wbc_unit_strings_without_a_code(unit: str) -> None:
    """HL7 v2 feeds send only a unit string: the documented table reads it (the micro sign
    and the Greek mu both accepted, case ignored)."""
    mapped = mapped_wbc(wbc({"value": 45, "unit": unit}))
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l == 45


def test_a_ucum_code_wins_over_its_display_string() -> None:
    """A code that cannot be converted is not rescued by a convertible-looking unit text."""
    mapped = mapped_wbc(wbc({"value": 45, "unit": "K/uL", "system": UCUM, "code": "g/dL"}))
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l is None
    assert mapped.unmapped[0].reason.startswith("unit 'g/dL' cannot be converted")


def test_wbc_as_a_component_of_a_cbc_panel() -> None:
    panel = {"resourceType": "Observation", "id": "cbc", "status": "final",
             "code": {"coding": [{"system": LOINC, "code": "58410-2"}]},
             "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-19",
             "component": [{"code": {"coding": [{"system": LOINC, "code": "6690-2"}]},
                            "valueQuantity": {"value": 12.5, "unit": "x10E3/uL"}}]}
    mapped = mapped_wbc(panel)
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l == 12.5
    assert mapped.provenance["wbc_at_diagnosis_10e9_per_l"] == "Observation/cbc (2026-11-19)"


@pytest.mark.parametrize(("fields", "reason"), [
    ({"valueQuantity": {"value": 100, "comparator": ">", "unit": "10*3/uL", "system": UCUM,
                        "code": "10*3/uL"}},
     "value >100 has a comparator: not read as the bare number"),
    ({"valueQuantity": None, "dataAbsentReason": {"coding": [{"code": "error"}]}},
     "no value (dataAbsentReason error)"),
    ({"valueQuantity": {"value": 4.5, "unit": "furlongs"}},
     "unit 'furlongs' cannot be converted"),
])
def test_values_that_cannot_be_read_are_reported(fields: dict[str, Any], reason: str) -> None:
    resource = {**wbc({}), **fields}
    if resource["valueQuantity"] is None:
        del resource["valueQuantity"]
    mapped = mapped_wbc(resource)
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l is None
    (report,) = mapped.unmapped
    assert (report.resource, report.fact) == ("Observation/w", "wbc_at_diagnosis_10e9_per_l")
    assert report.reason.startswith(reason)


def qualitative_map(tmp_path: Path) -> CodeMap:
    local = tmp_path / "codes.yaml"
    local.write_text(
        "observations:\n"
        "  - {fact: ph_status, kind: coded, codes: [{system: 'urn:lab', code: 'BCR-ABL1'}]}\n"
        "  - {fact: kmt2a_rearranged, kind: coded, codes: [{system: 'urn:lab', code: 'KMT2A'}]}\n"
        "  - {fact: cd19_positive, kind: coded, codes: [{system: 'urn:lab', code: 'CD19'}]}\n",
        encoding="utf-8")
    return CodeMap.load(extra=local)


def result(code: str, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": code.lower(), "status": "final",
            "code": {"coding": [{"system": "urn:lab", "code": code}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-21", **value}


def concept(system: str, code: str) -> dict[str, Any]:
    return {"valueCodeableConcept": {"coding": [{"system": system, "code": code}]}}


@pytest.mark.parametrize(("value", "positive"), [
    (concept(LOINC, "LA6576-8"), True), (concept(LOINC, "LA6577-6"), False),
    (concept(LOINC, "LA9633-4"), True), (concept(LOINC, "LA9634-2"), False),
    (concept(LOINC, "LA11882-0"), True), (concept(LOINC, "LA11883-8"), False),
    (concept(SNOMED, "10828004"), True), (concept(SNOMED, "260385009"), False),
    (concept(SNOMED, "260373001"), True), (concept(SNOMED, "260415000"), False),
    ({"interpretation": [{"coding": [{"system": INTERPRETATION, "code": "POS"}]}]}, True),
    ({"interpretation": [{"coding": [{"system": INTERPRETATION, "code": "NEG"}]}]}, False),
    ({"valueBoolean": True}, True), ({"valueBoolean": False}, False),
    ({"valueString": " Detected "}, True), ({"valueString": "NOT DETECTED"}, False),
    ({"valueCodeableConcept": {"text": "Negative"}}, False),
])
def test_qualitative_answers(tmp_path: Path, value: dict[str, Any], positive: bool) -> None:
    mapped = facts_from_bundle(
        bundle(diagnosis(), result("BCR-ABL1", **value), result("KMT2A", **value),
               result("CD19", **value)), assessment_date=ON, code_map=qualitative_map(tmp_path))
    facts = mapped.facts
    assert facts.ph_status == ("positive" if positive else "negative")
    assert (facts.kmt2a_rearranged, facts.cd19_positive) == (positive, positive)


@pytest.mark.parametrize(("value", "reason"), [
    ({"valueString": "weakly positive"}, "not a recognised positive/negative answer"),
    ({"valueString": "not positive"}, "not a recognised positive/negative answer"),
    (concept(SNOMED, "419984006"), "not a recognised positive/negative answer"),
    ({**concept(LOINC, "LA6576-8"),
      "interpretation": [{"coding": [{"system": INTERPRETATION, "code": "NEG"}]}]},
     "the result says both positive and negative"),
    ({}, "not a recognised positive/negative answer"),
])
def test_other_answers_are_reported_and_left_unknown(tmp_path: Path, value: dict[str, Any],
                                                     reason: str) -> None:
    mapped = facts_from_bundle(bundle(diagnosis(), result("CD19", **value)),
                               assessment_date=ON, code_map=qualitative_map(tmp_path))
    assert mapped.facts.cd19_positive is None
    (report,) = mapped.unmapped
    assert report.resource == "Observation/cd19"
    assert reason in report.reason


def test_a_cut_search_result_is_reported() -> None:
    """A page with a `next` link not followed, inside or outside the Bundle given, marks the
    record incomplete; an OperationOutcome is said, not read as 'no data'."""
    page = {"resourceType": "Bundle", "id": "obs-page-1", "type": "searchset",
            "link": [{"relation": "self", "url": "https://ehr.example/fhir/Observation?p=1"},
                     {"relation": "next", "url": "https://ehr.example/fhir/Observation?p=2"}],
            "entry": [{"resource": wbc({"value": 45, "unit": "10*3/uL", "system": UCUM,
                                        "code": "10*3/uL"})}]}
    outcome = {"resourceType": "OperationOutcome", "id": "oo",
               "issue": [{"severity": "error", "code": "too-costly"}]}
    record = bundle(diagnosis(), page, outcome)
    mapped = facts_from_bundle(record, assessment_date=ON)
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l == 45
    assert mapped.incomplete
    said = {u.resource: u.reason for u in mapped.unmapped}
    assert said["Bundle/obs-page-1"].startswith("the search result has a `next` page")
    assert said["OperationOutcome/oo"] == ("the server reported: error too-costly; not read "
                                           "as 'no data'")
    whole = facts_from_bundle(bundle(diagnosis()), assessment_date=ON)
    assert not whole.incomplete


@pytest.mark.parametrize(("reference", "used"), [
    ("Patient/p1", True), ("https://ehr.example/fhir/Patient/p1", True),
    ("Patient/p1/_history/3", True), ("urn:uuid:7d2c3e52-4b0e-4a4e-9d0c-1f0ad2b9c001", True),
    ("Patient/p2", False), ("https://ehr.example/fhir/Patient/p10", False),
    ("Group/p1", False), (None, False),
])
def test_the_patient_in_the_forms_servers_reference_it(reference: str | None,
                                                       used: bool) -> None:
    """By id, absolute URL, version, or the Patient entry's fullUrl; a subject naming only an
    identifier cannot be checked and is not used."""
    subject: dict[str, Any] = {"reference": reference} if reference else {
        "identifier": {"system": "urn:mrn", "value": "123"}}
    record = bundle(diagnosis(), wbc({"value": 45, "unit": "10*9/L"}, subject=subject))
    record["entry"][0]["fullUrl"] = "urn:uuid:7d2c3e52-4b0e-4a4e-9d0c-1f0ad2b9c001"
    mapped = facts_from_bundle(record, assessment_date=ON)
    assert (mapped.facts.wbc_at_diagnosis_10e9_per_l == 45) is used
    if not used:
        assert ("Observation/w", "its subject is not this Bundle's patient") in {
            (u.resource, u.reason) for u in mapped.unmapped}

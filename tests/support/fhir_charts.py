"""FHIR charts for tests: resources, Bundles and the worked adult Ph+ chart, dated as needed."""

from __future__ import annotations

import datetime as dt
from typing import Any

ON = dt.date(2026, 11, 27)


LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"


SNOMED = "http://snomed.info/sct"
ICD10CM, ICD10 = "http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def observation(ident: str, code: str, value: float, unit: str, status: str = "final",
                system: str = LOINC, when: str = "2026-11-20",
                subject: str = "Patient/p1") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": ident, "status": status,
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": subject}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def diagnosis(ident: str = "dx", code: str = "91857003", system: str = SNOMED,
              onset: str | None = "2026-11-20", **fields: Any) -> dict[str, Any]:
    """An ALL Condition of the patient (SNOMED CT 91857003 unless told)."""
    resource = {"resourceType": "Condition", "id": ident, "subject": {"reference": "Patient/p1"},
                "code": {"coding": [{"system": system, "code": code}]}, **fields}
    if onset is not None:
        resource["onsetDateTime"] = onset
    return resource


def bundle(*resources: dict[str, Any], birth: str = "1984-03-02") -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": birth, "gender": "male"}
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in (patient, *resources)]}


ADULT_PH = bundle(
    observation("wbc-1", "6690-2", 45, "10*3/uL"),
    observation("height-1", "8302-2", 1.78, "m"),
    observation("weight-1", "29463-7", 82, "kg"),
    {"resourceType": "Condition", "id": "dx-1", "subject": {"reference": "Patient/p1"},
     "onsetDateTime": "2026-11-20",
     "code": {"coding": [{"system": ICDO3, "code": "9812/3"}]}},
)


_DATED = ("effectiveDateTime", "onsetDateTime", "recordedDate", "issued", "birthDate",
          "authoredOn")


def as_of(record: Any, day: dt.date) -> Any:
    """``record`` (dated as of ``ON``) with every date moved so that it reads as of ``day``:
    the same ages and intervals. Services assess at today's date; tests built on ``ON``
    must not age into stale values."""
    shift = day - ON
    if isinstance(record, dict):
        return {key: (_shifted(value, shift) if key in _DATED and isinstance(value, str)
                      else as_of(value, day)) for key, value in record.items()}
    if isinstance(record, list):
        return [as_of(value, day) for value in record]
    return record


def _shifted(text: str, shift: dt.timedelta) -> str:
    if len(text) < 10:  # a partial date (year or month) is kept as it is
        return text
    return (dt.date.fromisoformat(text[:10]) + shift).isoformat() + text[10:]


CDS_ADULT_PH = as_of(ADULT_PH, dt.date.today())


def status(clinical: str | None = None, verification: str | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if clinical:
        fields["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": clinical}]}
    if verification:
        fields["verificationStatus"] = {"coding": [{"system": VERIFICATION,
                                                    "code": verification}]}
    return fields



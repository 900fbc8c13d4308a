"""The shape of a CDS Hooks request's prefetch and draft orders, and whose record it is.

Before anything is mapped, the service checks that what a client sent has the structure the
mapping reads (a Bundle's ``entry`` is a list of objects, a dosage is a list, a dose value is a
number, …) and that every resource belongs to ``context.patientId``: the prefetched Patient
is that patient, and every Observation, Condition, Procedure and draft order whose
``subject`` names a patient names that one. A request that fails either check is refused
(400) with every problem named by its path; no card is computed from it. Messages name
fields and resource ids, never another patient's id or any clinical value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["FHIR_ID", "UnusableInputError", "check_draft_orders", "check_prefetch",
           "is_fhir_id", "subject_problem"]

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
"""A FHIR resource id (R4 ``id`` datatype)."""

SEARCHES = {"observations": "Observation", "conditions": "Condition",
            "procedures": "Procedure"}
"""Each prefetch search key and the resource type its Bundle holds."""
_SUBJECT = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


class UnusableInputError(Exception):
    """The request cannot be used; ``problems`` names each fault by its path."""

    def __init__(self, problems: list[str], code: str = "invalid_request") -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.code = code


def is_fhir_id(value: object) -> bool:
    """A usable FHIR id: the R4 pattern, and not a dot segment (``.``, ``..``)."""
    return isinstance(value, str) and FHIR_ID.fullmatch(value) is not None and \
        value.strip(".") != ""


def _ref(resource: Mapping[str, Any]) -> str:
    ident = resource.get("id")
    return f"{resource.get('resourceType')}/{ident if is_fhir_id(ident) else '?'}"


def subject_problem(resource: Mapping[str, Any], patient_id: str, *,
                    required: bool) -> str | None:
    """Why the resource's ``subject`` is not ``Patient/<patient_id>``, or None if it is.

    A resource without a ``subject`` passes unless ``required``: a prefetch search
    (``Observation?patient=…``) is already scoped to the patient by the client's server.
    """
    subject = resource.get("subject")
    if subject is None:
        return f"{_ref(resource)}: subject is missing" if required else None
    reference = subject.get("reference") if isinstance(subject, Mapping) else None
    if not isinstance(reference, str):
        return f"{_ref(resource)}: subject is not a reference to a Patient"
    match = _SUBJECT.search(reference)
    if match is None or match.group(1) != patient_id:
        return f"{_ref(resource)}: subject is another patient, not context.patientId"
    return None


def _entries(bundle: object, path: str, problems: list[str]) -> list[Mapping[str, Any]]:
    """The resources of a Bundle, each checked to be an object; faults go to ``problems``."""
    if not isinstance(bundle, Mapping):
        problems.append(f"{path}: expected a FHIR Bundle (a JSON object), got "
                        f"{type(bundle).__name__}")
        return []
    if bundle.get("resourceType") != "Bundle":
        problems.append(f"{path}.resourceType: expected 'Bundle'")
        return []
    entries = bundle.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        problems.append(f"{path}.entry: expected a list, got {type(entries).__name__}")
        return []
    resources = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(resource, Mapping) or \
                not isinstance(resource.get("resourceType"), str):
            problems.append(f"{path}.entry[{index}]: expected an object with a `resource` "
                            "that has a resourceType")
            continue
        resources.append(resource)
    return resources


def is_missing(value: object) -> bool:
    """A prefetch value the client could not fill: absent, null, or an OperationOutcome."""
    return value is None or (isinstance(value, Mapping)
                             and value.get("resourceType") == "OperationOutcome")


def check_prefetch(prefetch: Mapping[str, Any], patient_id: str
                   ) -> dict[str, list[Mapping[str, Any]]]:
    """The prefetch's resources by key (``patient``, ``observations``, ``conditions``,
    ``procedures``).

    Raises UnusableInputError when a value has the wrong shape (400) or names another patient.
    """
    problems: list[str] = []
    found: dict[str, list[Mapping[str, Any]]] = {}
    patient = prefetch.get("patient")
    if not is_missing(patient):
        if not isinstance(patient, Mapping) or patient.get("resourceType") != "Patient":
            problems.append("prefetch.patient: expected a Patient resource")
        elif patient.get("id") != patient_id:
            raise UnusableInputError(["prefetch.patient: is not the Patient of context.patientId"],
                                "patient_mismatch")
        else:
            found["patient"] = [patient]
    mismatched: list[str] = []
    for key, kind in SEARCHES.items():
        value = prefetch.get(key)
        if is_missing(value):
            continue
        resources = _entries(value, f"prefetch.{key}", problems)
        kept = []
        for index, resource in enumerate(resources):
            if resource.get("resourceType") == "OperationOutcome":
                continue  # a search's warning, not a record
            if resource.get("resourceType") != kind:
                problems.append(f"prefetch.{key}.entry[{index}]: a "
                                f"{resource.get('resourceType')} where {kind} resources "
                                "belong")
                continue
            wrong = subject_problem(resource, patient_id, required=False)
            if wrong:
                mismatched.append(f"prefetch.{key}: {wrong}")
            kept.append(resource)
        found[key] = kept
    if mismatched:
        raise UnusableInputError(mismatched, "patient_mismatch")
    if problems:
        raise UnusableInputError(problems)
    return found


def _list_of_objects(value: object, path: str, problems: list[str]) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        problems.append(f"{path}: expected a list of objects, got {type(value).__name__}")
        return []
    return value


def _concept(value: object, path: str, problems: list[str]) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        problems.append(f"{path}: expected a CodeableConcept object")
        return
    _list_of_objects(value.get("coding"), f"{path}.coding", problems)


def _medication_request(resource: Mapping[str, Any], path: str, problems: list[str]) -> None:
    _concept(resource.get("medicationCodeableConcept"), f"{path}.medicationCodeableConcept",
             problems)
    dosages = _list_of_objects(resource.get("dosageInstruction"),
                               f"{path}.dosageInstruction", problems)
    for d_index, dosage in enumerate(dosages):
        d_path = f"{path}.dosageInstruction[{d_index}]"
        _concept(dosage.get("route"), f"{d_path}.route", problems)
        rates = _list_of_objects(dosage.get("doseAndRate"), f"{d_path}.doseAndRate", problems)
        for r_index, rate in enumerate(rates):
            quantity = rate.get("doseQuantity")
            q_path = f"{d_path}.doseAndRate[{r_index}].doseQuantity"
            if quantity is None:
                continue
            if not isinstance(quantity, Mapping):
                problems.append(f"{q_path}: expected a Quantity object")
                continue
            value = quantity.get("value")
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)):
                problems.append(f"{q_path}.value: expected a number")
            for field in ("unit", "code", "system"):
                if quantity.get(field) is not None and not isinstance(quantity[field], str):
                    problems.append(f"{q_path}.{field}: expected a string")


def check_draft_orders(draft: object, patient_id: str) -> None:
    """``context.draftOrders`` has the shape the order mapping reads, and every order is for
    ``context.patientId`` (an order must name its subject). Raises UnusableInputError."""
    problems: list[str] = []
    resources = _entries(draft, "context.draftOrders", problems)
    mismatched: list[str] = []
    for index, resource in enumerate(resources):
        path = f"context.draftOrders.entry[{index}].resource"
        kind = resource.get("resourceType")
        if kind not in ("MedicationRequest", "ServiceRequest"):
            continue
        wrong = subject_problem(resource, patient_id, required=True)
        if wrong:
            mismatched.append(f"context.draftOrders: {wrong}")
        if kind == "MedicationRequest":
            _medication_request(resource, path, problems)
        else:
            _concept(resource.get("code"), f"{path}.code", problems)
    if mismatched:
        raise UnusableInputError(mismatched, "patient_mismatch")
    if problems:
        raise UnusableInputError(problems)

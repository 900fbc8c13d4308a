"""Patient identity in hook requests, and the ALL diagnosis gate (docs/security.md)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")

from ..support.cds_service import call, free_port, running, service
from ..support.cds_service import hook_request as _hook_request
from ..support.fhir_charts import CDS_ADULT_PH as ADULT_PH

PATIENT_VIEW = "/cds-services/all-rules-patient-view"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    with running(service(port), port) as base:
        yield base


def hook_request(hook: str, bundle: dict[str, Any], **context: Any) -> dict[str, Any]:
    """A hook request on a deep copy of the bundle (tests change it)."""
    return _hook_request(hook, copy.deepcopy(bundle), **context)

ORDER_SIGN = "/cds-services/all-rules-order-sign"


def _request(**changes: Any) -> dict[str, Any]:
    request = hook_request("patient-view", ADULT_PH)
    request.update(changes)
    return request


def _with_subject(kind: str, reference: str) -> dict[str, Any]:
    request = hook_request("patient-view", ADULT_PH)
    key = {"Observation": "observations", "Condition": "conditions"}[kind]
    request["prefetch"][key]["entry"][0]["resource"]["subject"] = {"reference": reference}
    return request


def test_prefetch_patient_other_than_context_is_refused(server: str) -> None:
    """A prefetched Patient that is not context.patientId: 400, no cards, and the other
    patient's id is not echoed."""
    request = _request()
    request["prefetch"]["patient"] = {**request["prefetch"]["patient"], "id": "someone-else"}
    response = call(server, PATIENT_VIEW, request)
    assert response.status_code == 400
    assert response.json()["code"] == "patient_mismatch"
    assert "cards" not in response.json()
    assert "someone-else" not in response.text


def test_context_patient_other_than_prefetch_is_refused(server: str) -> None:
    """The same mismatch seen from the other side: context names a different patient."""
    request = _request()
    request["context"]["patientId"] = "p2"
    response = call(server, PATIENT_VIEW, request)
    assert response.status_code == 400
    assert response.json()["code"] == "patient_mismatch"


@pytest.mark.parametrize(("kind", "reference"), [
    ("Observation", "Patient/p2"),
    ("Observation", "https://ehr.example.org/fhir/Patient/p2/_history/3"),
    ("Condition", "Patient/p2"),
    ("Condition", "Group/p1"),
])
def test_resources_of_another_subject_are_refused(server: str, kind: str,
                                                  reference: str) -> None:
    """An Observation or Condition whose subject is not context.patientId is never used:
    the request is refused naming the resource."""
    response = call(server, PATIENT_VIEW, _with_subject(kind, reference))
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "patient_mismatch"
    assert f"prefetch.{kind.lower()}s: {kind}/" in response.json()["error"]


@pytest.mark.parametrize("reference", ["Patient/p1", "https://ehr.example.org/fhir/Patient/p1",
                                       "Patient/p1/_history/2"])
def test_subject_of_the_patient_in_any_reference_form_is_used(server: str,
                                                              reference: str) -> None:
    """Relative, absolute and versioned references to the patient are the patient."""
    response = call(server, PATIENT_VIEW, _with_subject("Observation", reference))
    assert response.status_code == 200, response.text
    assert response.json()["cards"]


def _draft(subject: dict[str, Any] | None) -> dict[str, Any]:
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest", "id": "mr-1", "status": "draft",
        "intent": "order", "medicationCodeableConcept": {"coding": [{
            "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "11202"}]},
        "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {
            "value": 2.5, "unit": "mg", "system": "http://unitsofmeasure.org",
            "code": "mg"}}]}]}
    if subject is not None:
        order["subject"] = subject
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}


@pytest.mark.parametrize(("subject", "problem"), [
    ({"reference": "Patient/p2"}, "MedicationRequest/mr-1: subject is another patient"),
    (None, "MedicationRequest/mr-1: subject is missing"),
    ({"display": "p1"}, "MedicationRequest/mr-1: subject is not a reference"),
])
def test_draft_orders_for_another_patient_are_refused(server: str, subject: Any,
                                                      problem: str) -> None:
    """order-sign: a draft order that does not name context.patientId as its subject is
    refused, never audited as if it were this patient's."""
    request = hook_request("order-sign", ADULT_PH, draftOrders=_draft(subject))
    response = call(server, ORDER_SIGN, request)
    assert response.status_code == 400, response.text
    assert problem in response.json()["error"]


def _condition(**fields: Any) -> dict[str, Any]:
    base = copy.deepcopy(ADULT_PH["entry"][-1]["resource"])
    assert base["resourceType"] == "Condition"
    return {**base, **fields}


def _status(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": f"http://terminology.hl7.org/CodeSystem/{system}",
                        "code": code}]}


def _without_all(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    request = hook_request("patient-view", ADULT_PH)
    request["prefetch"]["conditions"]["entry"] = [{"resource": c} for c in conditions]
    return request


def test_no_all_condition_gives_no_treatment_cards(server: str) -> None:
    """A patient with no ALL Condition at all gets no cards from patient-view."""
    response = call(server, PATIENT_VIEW, _without_all([]))
    assert response.status_code == 200, response.text
    assert response.json()["cards"] == []


def test_inactive_all_condition_gives_one_informational_card(server: str) -> None:
    """An ALL Condition that is resolved gives one info card saying so, nothing else."""
    resolved = _condition(clinicalStatus=_status("condition-clinical", "resolved"))
    response = call(server, PATIENT_VIEW, _without_all([resolved]))
    (card,) = response.json()["cards"]
    assert card["indicator"] == "info"
    assert "no active, confirmed ALL diagnosis" in card["summary"]


def test_order_sign_audits_only_patients_with_all(server: str) -> None:
    """order-sign on a patient without an active ALL Condition: no audit cards, even for a
    vincristine dose that would be flagged for an ALL patient."""
    request = hook_request("order-sign", ADULT_PH,
                           draftOrders=_draft({"reference": "Patient/p1"}))
    flagged = call(server, ORDER_SIGN, request).json()["cards"]
    assert "audit.vincristine_dose" in {c["source"]["topic"]["code"] for c in flagged}
    request["prefetch"]["conditions"]["entry"] = []
    response = call(server, ORDER_SIGN, request)
    assert response.status_code == 200
    assert response.json()["cards"] == []

"""CDS Hooks conformance: malformed input is a 400 naming the problem (never a 500), the
error shape is one, discovery, card summaries, feedback validation and CORS."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from ..support.cds_service import call, free_port, hook_request, running, service, token  # noqa: E402
from ..support.fhir_charts import CDS_ADULT_PH as ADULT_PH  # noqa: E402

PATIENT_VIEW = "/cds-services/all-rules-patient-view"
ORDER_SIGN = "/cds-services/all-rules-order-sign"
ORIGIN = "https://ehr-app.example.org"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    with running(service(port, cors_origins=[ORIGIN]), port) as base:
        yield base


def _patient_view(**prefetch: Any) -> dict[str, Any]:
    request = hook_request("patient-view", copy.deepcopy(ADULT_PH))
    request["prefetch"].update(prefetch)
    return request


@pytest.mark.parametrize(("prefetch", "message"), [
    ({"observations": {"resourceType": "Bundle", "entry": 5}},
     "prefetch.observations.entry: expected a list, got int"),
    ({"observations": "Observation?patient=p1"},
     "prefetch.observations: expected a FHIR Bundle (a JSON object), got str"),
    ({"conditions": {"resourceType": "Bundle", "entry": ["a string"]}},
     "prefetch.conditions.entry[0]: expected an object with a `resource`"),
    ({"conditions": {"resourceType": "Bundle", "entry": [{"resource": "Condition/1"}]}},
     "prefetch.conditions.entry[0]: expected an object with a `resource`"),
    ({"patient": ["not", "a", "patient"]}, "prefetch.patient: expected a Patient resource"),
    ({"observations": {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}}]}},
     "prefetch.observations.entry[0]: a Patient where Observation resources belong"),
    ({"conditions": {"resourceType": "Parameters"}},
     "prefetch.conditions.resourceType: expected 'Bundle'"),
])
def test_malformed_prefetch_is_400_naming_the_problem(server: str, prefetch: dict[str, Any],
                                                      message: str) -> None:
    response = call(server, PATIENT_VIEW, _patient_view(**prefetch))
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def _order(**fields: Any) -> dict[str, Any]:
    order = {"resourceType": "MedicationRequest", "id": "mr-1", "status": "draft",
             "intent": "order", "subject": {"reference": "Patient/p1"},
             "medicationCodeableConcept": {"coding": [{
                 "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "11202"}]},
             "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {
                 "value": 1.5, "unit": "mg", "system": "http://unitsofmeasure.org",
                 "code": "mg"}}]}]}
    order.update(fields)
    return order


@pytest.mark.parametrize(("draft", "message"), [
    ({"resourceType": "Bundle", "entry": 5}, "context.draftOrders.entry: expected a list"),
    ("MedicationRequest/1", "context.draftOrders: expected a FHIR Bundle"),
    ({"resourceType": "Bundle", "entry": [{"resource": _order(
        dosageInstruction=[{"doseAndRate": {"doseQuantity": {"value": 1.5, "unit": "mg"}}}])}]},
     "dosageInstruction[0].doseAndRate: expected a list of objects, got dict"),  # STU3 shape
    ({"resourceType": "Bundle", "entry": [{"resource": _order(
        dosageInstruction={"text": "1.5 mg"})}]},
     "dosageInstruction: expected a list of objects, got dict"),
    ({"resourceType": "Bundle", "entry": [{"resource": _order(dosageInstruction=[
        {"doseAndRate": [{"doseQuantity": {"value": "1.5", "unit": "mg"}}]}])}]},
     "doseQuantity.value: expected a number"),
    ({"resourceType": "Bundle", "entry": [{"resource": _order(
        medicationCodeableConcept="vincristine")}]},
     "medicationCodeableConcept: expected a CodeableConcept object"),
])
def test_malformed_draft_orders_are_400_naming_the_problem(server: str, draft: Any,
                                                           message: str) -> None:
    request = hook_request("order-sign", copy.deepcopy(ADULT_PH), draftOrders=draft)
    response = call(server, ORDER_SIGN, request)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"{not json", 400, "invalid_request"),
    (b"[]", 400, "invalid_request"),
    ({"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": []}, 400,
     "invalid_request"),
    ({"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
      "context": {"patientId": "p1"}, "prefetch": 7}, 400, "invalid_request"),
    ({"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
      "context": {"patientId": "p1"}, "fhirServer": "http://127.0.0.1:9",
      "fhirAuthorization": "tok"}, 400, "invalid_request"),
    ({"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
      "context": {"patientId": "p1"}, "fhirAuthorization": {"access_token": "t"}}, 400,
     "invalid_request"),  # a token with no fhirServer: the specification forbids it
])
def test_error_bodies_have_one_shape(server: str, body: Any, status: int, code: str) -> None:
    """Every error is {"status", "code", "error"}; the status repeats the HTTP status."""
    response = call(server, PATIENT_VIEW, body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"status", "code", "error"}
    assert response.json()["status"] == status
    assert response.json()["code"] == code


def test_unknown_routes_and_methods_have_the_same_shape(server: str) -> None:
    with httpx.Client() as client:
        missing = client.get(server + "/nowhere")
        wrong = client.get(server + PATIENT_VIEW)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    assert (wrong.status_code, wrong.json()["code"]) == (405, "method_not_allowed")
    unknown = call(server, "/cds-services/no-such-service", {})
    assert unknown.json() == {"status": 404, "code": "unknown_service",
                              "error": "no such service"}


def test_discovery_carries_the_recommended_fields(server: str) -> None:
    """Each service: id, hook, title, description, prefetch, usageRequirements."""
    services = call(server, "/cds-services", method="GET").json()["services"]
    for entry in services:
        assert {"id", "hook", "title", "description", "prefetch",
                "usageRequirements"} <= set(entry)
        assert all(isinstance(entry[k], str) and entry[k] for k in
                   ("title", "description", "usageRequirements"))


def test_card_summaries_are_under_140_characters() -> None:
    """The specification: summary < 140 characters (a 139-character cut, with an ellipsis)."""
    from all_rules.cds._answer import _summary
    from all_rules.output import Kind

    class Item:
        text = "x" * 200
        kind = Kind.RECOMMEND

    assert len(_summary(Item())) == 139  # type: ignore[arg-type]
    Item.text = "y" * 140
    assert len(_summary(Item())) < 140  # type: ignore[arg-type]
    Item.text = "z" * 139
    assert _summary(Item()) == "z" * 139  # type: ignore[arg-type]
    Item.kind = Kind.SCOPE  # a scope item's label counts too
    assert len(_summary(Item())) == 139  # type: ignore[arg-type]
    assert _summary(Item()).startswith("Not decided by this guideline: z")  # type: ignore[arg-type]


def _issued(server: str) -> str:
    cards = call(server, PATIENT_VIEW, _patient_view()).json()["cards"]
    return str(cards[0]["uuid"])


@pytest.mark.parametrize(("change", "message"), [
    ({"outcome": "ignored"}, "feedback[0].outcome: expected one of"),
    ({"card": "d90087d4-5e26-5ff3-a326-eb25f7fdd651"}, "feedback[0].card: not a card"),
    ({"card": 17}, "feedback[0].card: not a card"),
    ({"outcomeTimestamp": "yesterday"}, "feedback[0].outcomeTimestamp"),
    ({"overrideReason": "because"}, "feedback[0].overrideReason: expected an object"),
])
def test_feedback_is_validated(server: str, change: dict[str, Any], message: str) -> None:
    """400 on an unknown outcome, a card this service did not issue, or a malformed item."""
    item = {"card": _issued(server), "outcome": "accepted",
            "outcomeTimestamp": "2026-11-27T10:00:00Z", **change}
    response = call(server, PATIENT_VIEW + "/feedback", {"feedback": [item]})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_feedback_names_the_service_that_issued_the_card(server: str) -> None:
    """A patient-view card is not order-sign's: feedback to the other service is refused."""
    item = {"card": _issued(server), "outcome": "accepted",
            "outcomeTimestamp": "2026-11-27T10:00:00Z"}
    assert call(server, PATIENT_VIEW + "/feedback", {"feedback": [item]}).status_code == 200
    assert call(server, ORDER_SIGN + "/feedback", {"feedback": [item]}).status_code == 400


def test_cors_preflight_for_configured_origins_only(server: str) -> None:
    """A browser CDS client's preflight is answered for a configured origin (without a
    token, as browsers send none), and not for any other."""
    headers = {"Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,content-type"}
    with httpx.Client() as client:
        allowed = client.options(server + PATIENT_VIEW, headers={**headers, "Origin": ORIGIN})
        other = client.options(server + PATIENT_VIEW,
                               headers={**headers, "Origin": "https://evil.example"})
        url = server + "/cds-services"
        simple = client.get(url, headers={"Origin": ORIGIN,
                                          "Authorization": f"Bearer {token(url)}"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers
    assert simple.headers["access-control-allow-origin"] == ORIGIN


def test_cors_any_origin_under_insecure() -> None:
    port = free_port()
    with running(service(port, insecure=True), port) as base, httpx.Client() as client:
        answer = client.options(base + PATIENT_VIEW, headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] in ("*", "http://localhost:3000")


def test_configuration_examples_in_the_docs_are_valid() -> None:
    """The service.yaml of docs/fhir.md and the fragment of docs/security.md load as
    ServiceSettings (so the documented keys cannot drift from the code)."""
    import re

    import yaml

    from all_rules.cds import ServiceSettings

    from ..conftest import ROOT

    fhir_page = (ROOT / "docs" / "fhir.md").read_text(encoding="utf-8")
    (config,) = [b for b in re.findall(r"```yaml\n(.*?)```", fhir_page, re.DOTALL)
                 if "# service.yaml" in b]
    settings = ServiceSettings.model_validate(yaml.safe_load(config))
    assert settings.fhir_servers
    assert settings.cors_origins
    security_page = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    (fragment,) = [b for b in re.findall(r"```yaml\n(.*?)```", security_page, re.DOTALL)
                   if "fhir_servers" in b]
    ServiceSettings.model_validate({"base_url": "https://cds.example",
                                    "issuers": {"https://ehr.hospital.example": {"keys": []}},
                                    **yaml.safe_load(fragment)})

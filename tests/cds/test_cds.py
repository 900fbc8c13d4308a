"""The CDS Hooks service, started on loopback and called by a real HTTP client with JWTs
signed by test keys."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")
jwt = pytest.importorskip("jwt")
uvicorn = pytest.importorskip("uvicorn")


from all_rules import assess  # noqa: E402
from all_rules.fhir._select import AT_DIAGNOSIS  # noqa: E402

from ..conftest import FIXTURES  # noqa: E402
from ..support.cds_service import (  # noqa: E402
    ISSUER,
    OTHER_KEY,
    RSA_KEY,
    FhirStub,
    call,
    free_port,
    hook_request,
    running,
    service,
    token,
)
from ..support.fhir_charts import CDS_ADULT_PH as ADULT_PH  # noqa: E402
from ..support.fhir_charts import observation  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    with running(service(port, max_body_bytes=200_000), port) as base:
        yield base








def test_discovery_lists_both_services_with_prefetch(server: str) -> None:
    response = call(server, "/cds-services", method="GET")
    assert response.status_code == 200
    services = {s["id"]: s for s in response.json()["services"]}
    assert {s["hook"] for s in services.values()} == {"patient-view", "order-sign"}
    for described in services.values():
        assert described["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        assert described["prefetch"]["procedures"] == "Procedure?patient={{context.patientId}}"


def test_patient_view_cards_match_the_assessment(server: str) -> None:
    """Cards are the assessment's items: summary ≤ 140, indicator from severity, rule id as
    topic, a stable uuid, Markdown detail with reason and the evidence's sources."""
    request = hook_request("patient-view", ADULT_PH)
    response = call(server, "/cds-services/all-rules-patient-view", request)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    import datetime as dt

    from all_rules.fhir import facts_from_bundle
    expected = assess(facts_from_bundle(ADULT_PH, assessment_date=dt.date.today()).facts)
    assert [c["source"]["topic"]["code"] for c in cards] == expected.ids()
    by_id = {c["source"]["topic"]["code"]: c for c in cards}
    tki = by_id["ph.tki_required"]
    assert tki["indicator"] == "warning"
    assert all(len(c["summary"]) <= 140 for c in cards)
    assert "**Why:**" in by_id["risk.wbc_b_over_30"]["detail"]
    assert "Observation/wbc-1" in by_id["risk.wbc_b_over_30"]["detail"]
    again = call(server, "/cds-services/all-rules-patient-view", request).json()["cards"]
    assert [c["uuid"] for c in again] == [c["uuid"] for c in cards]


def test_order_sign_audits_draft_orders(server: str) -> None:
    """A vincristine order over the 2 mg cap and no TKI for Ph+ become critical alert cards."""
    vincristine = {"resourceType": "MedicationRequest", "id": "mr-1", "status": "draft",
                   "intent": "order", "subject": {"reference": "Patient/p1"},
                   "medicationCodeableConcept": {"coding": [{
                       "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                       "code": "11202"}]},
                   "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {
                       "value": 2.5, "unit": "mg", "system": "http://unitsofmeasure.org",
                       "code": "mg"}}]}]}
    draft = {"resourceType": "Bundle", "type": "collection",
             "entry": [{"resource": vincristine}]}
    request = hook_request("order-sign", ADULT_PH, draftOrders=draft)
    response = call(server, "/cds-services/all-rules-order-sign", request)
    assert response.status_code == 200, response.text
    cards = {c["source"]["topic"]["code"]: c for c in response.json()["cards"]}
    assert cards["audit.vincristine_dose"]["indicator"] == "critical"
    assert "MedicationRequest/mr-1" in cards["audit.vincristine_dose"]["detail"]
    assert all(code.startswith("audit.") for code in cards)


@pytest.mark.parametrize(("case", "make", "message"), [
    ("no token", lambda url: None, "missing bearer token"),
    ("expired", lambda url: token(url, issued=time.time() - 3600), "token expired"),
    ("wrong audience", lambda url: token(url + "-other"), "audience is not this endpoint"),
    ("unknown issuer", lambda url: token(url, issuer="https://evil"), "issuer is not trusted"),
    ("unknown kid", lambda url: token(url, kid="nope"), "no key with this kid"),
    ("wrong key", lambda url: token(url, key=OTHER_KEY), "token rejected"),
    ("alg none", lambda url: jwt.encode({"iss": ISSUER, "aud": url, "iat": int(time.time()),
                                         "exp": int(time.time()) + 60, "jti": "n"}, None,
                                        algorithm="none", headers={"kid": "ec-1"}),
     "algorithm 'none' is not accepted"),
    ("HMAC with the public key", lambda url: jwt.encode(
        {"iss": ISSUER, "aud": url, "iat": int(time.time()), "exp": int(time.time()) + 60,
         "jti": "h"}, "a-shared-secret-of-sufficient-length-000000", algorithm="HS256",
        headers={"kid": "ec-1"}), "algorithm 'HS256' is not accepted"),
])
def test_bad_tokens_are_refused(server: str, case: str, make: Any, message: str) -> None:
    url = server + "/cds-services/all-rules-patient-view"
    response = call(server, "/cds-services/all-rules-patient-view",
                    hook_request("patient-view", ADULT_PH), bearer=make(url))
    assert response.status_code == 401, case
    assert message in response.json()["error"]


def test_replayed_token_is_refused(server: str) -> None:
    path = "/cds-services/all-rules-patient-view"
    bearer = token(server + path, alg="RS384", key=RSA_KEY, kid="rsa-1")
    first = call(server, path, hook_request("patient-view", ADULT_PH), bearer=bearer)
    second = call(server, path, hook_request("patient-view", ADULT_PH), bearer=bearer)
    assert first.status_code == 200
    assert second.status_code == 401
    assert "replayed" in second.json()["error"]


def test_spec_example_is_understood(server: str) -> None:
    """The specification's own patient-view example parses; it lacks this service's prefetch,
    and its fhirServer is not one configured for the caller, so the answer is 412 naming
    what is missing (nothing is fetched: docs/security.md)."""
    request = json.loads((FIXTURES / "cds" / "spec_patient_view.json").read_text())
    response = call(server, "/cds-services/all-rules-patient-view", request)
    assert response.status_code == 412
    assert response.json()["code"] == "fhir_server_not_trusted"
    assert "patient, observations, conditions" in response.json()["error"]
    del request["fhirServer"]
    del request["fhirAuthorization"]
    response = call(server, "/cds-services/all-rules-patient-view", request)
    assert response.status_code == 412
    assert "patient, observations, conditions" in response.json()["error"]




def test_missing_prefetch_is_fetched_from_the_fhir_server() -> None:
    """With a fhirServer configured for the caller and its access token, missing prefetch is
    fetched (here from a FHIR stub on loopback), and the cards are the same as with
    prefetch; the token goes to that server only."""
    stub = FhirStub()
    with running(stub.app, free_port()) as fhir_base:
        port = free_port()
        app = service(port, fhir_servers={ISSUER: [f"{fhir_base}/fhir/"]})
        with running(app, port) as server:
            with_prefetch = hook_request("patient-view", ADULT_PH)
            fetched = {**with_prefetch, "prefetch": {}, "fhirServer": f"{fhir_base}/fhir",
                       "fhirAuthorization": {"access_token": "tok-123", "token_type": "Bearer",
                                             "expires_in": 300, "scope": "patient/*.read",
                                             "subject": "all-rules"}}
            path = "/cds-services/all-rules-patient-view"
            expected = [c["source"]["topic"]["code"]
                        for c in call(server, path, with_prefetch).json()["cards"]]
            response = call(server, path, fetched)
    assert response.status_code == 200, response.text
    assert [c["source"]["topic"]["code"] for c in response.json()["cards"]] == expected
    assert [auth for _, auth in stub.seen] == ["Bearer tok-123"] * 4
    assert sorted(url.removeprefix(fhir_base) for url, _ in stub.seen) == [
        "/fhir/Condition?patient=p1", "/fhir/Observation?patient=p1", "/fhir/Patient/p1",
        "/fhir/Procedure?patient=p1"]


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"{not json", 400, "malformed CDS Hooks request"),
    ({"hook": "patient-view", "hookInstance": "not-a-uuid", "context": {}}, 400,
     "hookInstance"),
    ({"hook": "order-sign", "hookInstance": str(uuid.uuid4()),
      "context": {"patientId": "p1"}}, 400, "answers hook 'patient-view'"),
    (b"x" * 300_000, 413, "over 200000 bytes"),
])
def test_malformed_requests(server: str, body: Any, status: int, message: str) -> None:
    response = call(server, "/cds-services/all-rules-patient-view", body)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_unmappable_record_gives_a_warning_card_not_an_error(server: str) -> None:
    """A record that cannot be mapped (a birth date without the day) is said in one
    warning card naming the resource; nothing is guessed."""
    patient = {**ADULT_PH["entry"][0]["resource"], "birthDate": "1984-03"}
    broken = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": patient}, ADULT_PH["entry"][-1],
        {"resource": observation("w9", "6690-2", 45, "10*9/L")}]}
    response = call(server, "/cds-services/all-rules-patient-view",
                    hook_request("patient-view", broken))
    (card,) = response.json()["cards"]
    assert card["indicator"] == "warning"
    assert "Patient/p1" in card["detail"]


def test_feedback_is_accepted_and_logged_without_patient_data(
        server: str, caplog: pytest.LogCaptureFixture) -> None:
    """Feedback on an issued card is logged as card, outcome and override-reason code only
    (never the user's comment)."""
    caplog.set_level("INFO", logger="all_rules.cds")
    issued = call(server, "/cds-services/all-rules-patient-view",
                  hook_request("patient-view", ADULT_PH)).json()["cards"][0]["uuid"]
    response = call(server, "/cds-services/all-rules-patient-view/feedback", {"feedback": [
        {"card": issued, "outcome": "overridden",
         "overrideReason": {"reason": {"code": "patient-declined"},
                            "userComment": "Mr Smith said no"},
         "outcomeTimestamp": "2026-11-27T10:00:00Z"}]})
    assert response.status_code == 200
    logged = [json.loads(r.getMessage()) for r in caplog.records
              if r.name == "all_rules.cds" and "\"event\": \"feedback\"" in r.getMessage()]
    assert logged[-1]["outcome"] == "overridden"
    assert logged[-1]["overrideReason"] == "patient-declined"
    assert set(logged[-1]) == {"event", "service", "card", "outcome", "overrideReason"}
    assert not any("Smith" in r.getMessage() for r in caplog.records)
    bad = call(server, "/cds-services/all-rules-patient-view/feedback", {"nope": 1})
    assert bad.status_code == 400


def test_hook_logs_carry_no_patient_data(server: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="all_rules.cds")
    call(server, "/cds-services/all-rules-patient-view", hook_request("patient-view", ADULT_PH))
    # The audit line is written as the response completes, which the client may see first.
    deadline = time.monotonic() + 5
    while True:
        records = [r.getMessage() for r in caplog.records if r.name == "all_rules.cds"]
        if any('"fired"' in r for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert any('"fired"' in r and '"digest"' in r for r in records)
    for record in records:
        assert "1984-03-02" not in record
        assert '"p1"' not in record


INSTITUTION = FIXTURES / "cds" / "institution_codes.yaml"
LOCAL = "urn:example:all"
_QUANTITIES = {"mrd_end_of_induction_percent": ("mrd-eoi", "%"),
               "mrd_consolidation_percent": ("mrd-cons", "%"),
               "mrd_current_percent": ("mrd-now", "%"),
               "weeks_to_complete_remission": ("weeks-to-cr", "wk"),
               "relapse_count": ("relapses", "{count}"),
               "remission_number": ("remission-number", "{count}"),
               "courses_since_remission": ("courses", "{count}"),
               "wbc_at_diagnosis_10e9_per_l": ("6690-2", "10*9/L"),
               "height_cm": ("8302-2", "cm"), "weight_kg": ("29463-7", "kg"),
               "bsa_m2": ("8277-6", "m2")}
_CODED = {"phase": "phase", "cns_status": "cns", "relapse_site": "relapse-site",
          "resource_level": "resources"}
_BOOLEANS = ("complete_remission", "transplant_eligible", "substantial_comorbidities",
             "tki_available", "specialized_center", "kmt2a_rearranged", "cd19_positive",
             "cd22_positive", "testicular_involvement")


def bundle_for(facts: dict[str, Any], on: Any) -> dict[str, Any]:
    """A FHIR Bundle carrying a worked example's facts, coded with the institution's map."""
    import datetime as dt

    born = on - dt.timedelta(days=round(facts["age_years"] * 365.25))
    # The diagnosis date follows from the age at diagnosis; facts defined at diagnosis are
    # dated then (the mapping reads them nearest the diagnosis), the others today.
    diagnosed = born + dt.timedelta(days=round(
        facts.get("age_at_diagnosis_years", facts["age_years"]) * 365.25))
    resources: list[dict[str, Any]] = []

    def dated(name: str) -> str:
        return (diagnosed if name in AT_DIAGNOSIS else on).isoformat()

    def coded(ident: str, code: str, value_system: str, value: str, fact: str) -> None:
        resources.append({"resourceType": "Observation", "id": ident, "status": "final",
                          "code": {"coding": [{"system": LOCAL, "code": code}]},
                          "effectiveDateTime": dated(fact),
                          "subject": {"reference": "Patient/p1"},
                          "valueCodeableConcept": {"coding": [{"system": value_system,
                                                               "code": value}]}})

    for name, value in facts.items():
        if name in _QUANTITIES:
            code, unit = _QUANTITIES[name]
            system = LOCAL if not code[0].isdigit() else "http://loinc.org"
            resources.append(observation(name.replace("_", "-"), code, value, unit,
                                         system=system, when=dated(name),
                                         subject="Patient/p1"))
        elif name in _CODED:
            coded(name.replace("_", "-"), _CODED[name], LOCAL, value, name)
        elif name in _BOOLEANS:
            coded(name.replace("_", "-"), name, "http://snomed.info/sct",
                  "373066001" if value else "373067005", name)
        elif name == "ph_status":
            coded("bcr-abl1", "bcr-abl1", "http://snomed.info/sct",
                  "10828004" if value == "positive" else "260385009", name)
        elif name == "lineage":
            resources.append({"resourceType": "Condition", "id": "dx",
                              "subject": {"reference": "Patient/p1"},
                              "onsetDateTime": diagnosed.isoformat(),
                              "code": {"coding": [{
                                  "system": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
                                  "code": "C8644" if value == "B" else "C3183"}]}})
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": born.isoformat()}
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in (patient, *resources)]}


@pytest.fixture(scope="module")
def institution_server() -> Iterator[str]:
    port = free_port()
    with running(service(port, code_map=str(INSTITUTION)), port) as base:
        yield base


EXAMPLE_NAMES = ["adult_ph_positive", "standard_risk_child", "infant", "relapsed_b_all",
                 "cr2_mrd_positive", "induction_plan_dose_errors"]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_worked_example_cards_equal_the_assessment(institution_server: str, name: str) -> None:
    """Each worked example as a FHIR Bundle: patient-view cards are exactly the items of
    assess() on the example's facts (plans are order-sign's, so they are left out here)."""
    import datetime as dt

    from ..conftest import EXAMPLES

    facts = json.loads((EXAMPLES / f"{name}.json").read_text())
    facts.pop("plan", None)
    facts.pop("sex", None)
    # A record without an HSCT Procedure says nothing of one (unknown), so "no prior allogeneic
    # HSCT" cannot travel in a Bundle: compare with the fact unknown on both sides.
    facts.pop("prior_allogeneic_hsct", None)
    today = dt.datetime.now(dt.UTC).date()
    request = hook_request("patient-view", bundle_for(facts, today))
    response = call(institution_server, "/cds-services/all-rules-patient-view", request)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    expected = assess({k: v for k, v in facts.items() if k != "patient_id"})
    assert [c["source"]["topic"]["code"] for c in cards] == expected.ids()
    assert [c["indicator"] for c in cards] == [i.severity.value for i in expected.recommendations]


def test_insecure_mode_is_loud_and_open() -> None:
    """Insecure mode accepts unauthenticated calls and says so on every response."""
    port = free_port()
    with running(service(port, insecure=True), port) as base:
        response = call(base, "/cds-services", bearer=None, method="GET")
    assert response.status_code == 200
    assert response.headers["X-All-Rules-Insecure"] == "requests are not authenticated"


def test_order_sign_reads_institution_coded_orders(institution_server: str) -> None:
    """Pegaspargase and procedures carry local codes: with the institution's map, a low
    pegaspargase dose and a cranial irradiation order without indication become cards."""
    import datetime as dt

    facts = {"age_years": 7, "lineage": "B", "ph_status": "negative", "bsa_m2": 0.9,
             "wbc_at_diagnosis_10e9_per_l": 12, "cns_status": "CNS1", "phase": "induction"}
    peg = {"resourceType": "MedicationRequest", "id": "peg", "status": "draft",
           "intent": "order", "subject": {"reference": "Patient/p1"},
           "medicationCodeableConcept": {"coding": [{"system": "urn:example:formulary",
                                                     "code": "PEG-ASP"}]},
           "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {
               "value": 1500, "code": "[iU]/m2", "system": "http://unitsofmeasure.org"}}]}]}
    crt = {"resourceType": "ServiceRequest", "id": "crt", "status": "draft", "intent": "order",
           "subject": {"reference": "Patient/p1"},
           "code": {"coding": [{"system": "urn:example:procedures", "code": "CRT"}]}}
    draft = {"resourceType": "Bundle", "type": "collection",
             "entry": [{"resource": peg}, {"resource": crt}]}
    request = hook_request("order-sign", bundle_for(facts, dt.datetime.now(dt.UTC).date()),
                           draftOrders=draft)
    response = call(institution_server, "/cds-services/all-rules-order-sign", request)
    assert response.status_code == 200, response.text
    cards = {c["source"]["topic"]["code"]: c for c in response.json()["cards"]}
    assert set(cards) == {"audit.pegaspargase_dose", "audit.routine_cranial_irradiation"}
    assert "MedicationRequest/peg" in cards["audit.pegaspargase_dose"]["detail"]
    assert "ServiceRequest/crt" in cards["audit.routine_cranial_irradiation"]["detail"]

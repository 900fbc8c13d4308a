"""The CDS Hooks service, started on loopback and called by a real HTTP client with JWTs
signed by test keys."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")
jwt = pytest.importorskip("jwt")
uvicorn = pytest.importorskip("uvicorn")

from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402

from all_rules import assess  # noqa: E402
from all_rules.cds import ServiceSettings, create_app  # noqa: E402

from .conftest import FIXTURES  # noqa: E402
from .test_fhir import ADULT_PH, observation  # noqa: E402

ISSUER = "https://ehr.example.org"
EC_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = ec.generate_private_key(ec.SECP384R1())


def _jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else \
        jwt.algorithms.RSAAlgorithm
    data = json.loads(algorithm.to_jwk(key.public_key()))
    return {**data, "kid": kid, "alg": alg, "use": "sig"}


JWKS = {"keys": [_jwk(EC_KEY, "ec-1", "ES384"), _jwk(RSA_KEY, "rsa-1", "RS384")]}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    settings = ServiceSettings(base_url=base, issuers={ISSUER: JWKS}, max_body_bytes=200_000)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                            log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance.started
    yield base
    instance.should_exit = True
    thread.join(timeout=10)


def token(audience: str, *, key: Any = EC_KEY, kid: str = "ec-1", alg: str = "ES384",
          issuer: str = ISSUER, lifetime: int = 60, issued: float | None = None,
          jti: str | None = None) -> str:
    now = time.time() if issued is None else issued
    claims = {"iss": issuer, "aud": audience, "iat": int(now), "exp": int(now) + lifetime,
              "jti": jti or str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def call(base: str, path: str, body: Any = None, bearer: str | None = "auto",
         method: str = "POST") -> Any:
    url = base + path
    headers = {}
    if bearer == "auto":
        headers["Authorization"] = f"Bearer {token(url)}"
    elif bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    with httpx.Client(timeout=30) as client:
        if method == "GET":
            return client.get(url, headers=headers)
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return client.post(url, content=content,
                           headers={**headers, "Content-Type": "application/json"})


def hook_request(hook: str, bundle: dict[str, Any], **context: Any) -> dict[str, Any]:
    resources = [e["resource"] for e in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")

    def search(kind: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": r} for r in resources if r["resourceType"] == kind]}

    return {"hook": hook, "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": patient["id"], **context},
            "prefetch": {"patient": patient, "observations": search("Observation"),
                         "conditions": search("Condition")}}


def test_discovery_lists_both_services_with_prefetch(server: str) -> None:
    response = call(server, "/cds-services", method="GET")
    assert response.status_code == 200
    services = {s["id"]: s for s in response.json()["services"]}
    assert {s["hook"] for s in services.values()} == {"patient-view", "order-sign"}
    for service in services.values():
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"


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


def test_spec_example_without_our_prefetch_gets_412(server: str) -> None:
    """The specification's own patient-view example lacks this service's prefetch; with no
    way to fetch, the answer is 412 naming what is missing."""
    request = json.loads((FIXTURES / "cds" / "spec_patient_view.json").read_text())
    response = call(server, "/cds-services/all-rules-patient-view", request)
    assert response.status_code == 412
    assert "patient, observations, conditions" in response.json()["error"]


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
    """A record that cannot be mapped (a unit that cannot be converted) is said in one
    warning card naming the resource; nothing is guessed."""
    broken = {"resourceType": "Bundle", "type": "collection", "entry": [
        *ADULT_PH["entry"][:1], {"resource": observation("w9", "6690-2", 4.5, "g/dL")}]}
    response = call(server, "/cds-services/all-rules-patient-view",
                    hook_request("patient-view", broken))
    (card,) = response.json()["cards"]
    assert card["indicator"] == "warning"
    assert "Observation/w9" in card["detail"]


def test_feedback_is_accepted_and_logged_without_patient_data(
        server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="all_rules.cds")
    response = call(server, "/cds-services/all-rules-patient-view/feedback", {"feedback": [
        {"card": str(uuid.uuid4()), "outcome": "overridden",
         "overrideReason": {"reason": {"code": "patient-declined"}},
         "outcomeTimestamp": "2026-11-27T10:00:00Z"}]})
    assert response.status_code == 200
    bad = call(server, "/cds-services/all-rules-patient-view/feedback", {"nope": 1})
    assert bad.status_code == 400


def test_hook_logs_carry_no_patient_data(server: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="all_rules.cds")
    call(server, "/cds-services/all-rules-patient-view", hook_request("patient-view", ADULT_PH))
    records = [r.getMessage() for r in caplog.records if r.name == "all_rules.cds"]
    assert any('"fired"' in r and '"digest"' in r for r in records)
    for record in records:
        assert "1984-03-02" not in record
        assert '"p1"' not in record

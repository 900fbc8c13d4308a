"""Trust in FHIR servers: the service fetches only from a configured base, sends the token
only there, and keeps every fetch bounded (docs/security.md). Every FHIR server here is a
stub on loopback that records what it was asked."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from all_rules.cds import ServiceSettings  # noqa: E402
from all_rules.cds._fetch import normalized_base, trusted_base  # noqa: E402

from ..support.cds_service import ISSUER, FhirStub, call, free_port, hook_request, running, service  # noqa: E402
from ..support.fhir_charts import CDS_ADULT_PH as ADULT_PH  # noqa: E402

PATH = "/cds-services/all-rules-patient-view"
TOKEN = {"access_token": "tok-secret", "token_type": "Bearer", "expires_in": 300,
         "scope": "patient/*.read", "subject": "all-rules"}


def _fetching(fhir_server: str, patient_id: str = "p1") -> dict[str, Any]:
    request = hook_request("patient-view", copy.deepcopy(ADULT_PH))
    request["context"]["patientId"] = patient_id
    return {**request, "prefetch": {}, "fhirServer": fhir_server, "fhirAuthorization": TOKEN}


@pytest.fixture(scope="module")
def trusted() -> Iterator[tuple[str, str, FhirStub, str, FhirStub]]:
    """A service trusting one stub's /fhir base, and a second stub it does not trust:
    (service, trusted stub base, its stub, untrusted stub base, its stub)."""
    good, other = FhirStub(), FhirStub()
    with running(good.app, free_port()) as good_base, \
            running(other.app, free_port()) as other_base:
        port = free_port()
        app = service(port, fhir_servers={ISSUER: [f"{good_base}/fhir"]})
        with running(app, port) as server:
            yield server, good_base, good, other_base, other


Trusted = tuple[str, str, FhirStub, str, FhirStub]


def test_unconfigured_fhir_server_gets_412_and_no_request(trusted: Trusted) -> None:
    """A fhirServer that is not configured for the caller: 412, and the server named in the
    request receives nothing (not even the token)."""
    server, _, _, other_base, other = trusted
    other.seen.clear()
    response = call(server, PATH, _fetching(f"{other_base}/fhir"))
    assert response.status_code == 412
    assert response.json()["code"] == "fhir_server_not_trusted"
    assert other.seen == []


@pytest.mark.parametrize(("variant", "trusted_variant"), [
    ("{base}/fhir/", True), ("{base}/FHIR", False), ("{base}/fhir/../fhir", False),
    ("{base}/fhir?x=1", False), ("{base}/fhir/sub", False)])
def test_only_the_configured_base_itself_is_trusted(trusted: Trusted, variant: str,
                                                    trusted_variant: bool) -> None:
    """Equal up to a trailing slash; a path that differs, dot segments, a query or a deeper
    path are other servers (412, nothing fetched)."""
    server, good_base, good, _, _ = trusted
    good.seen.clear()
    response = call(server, PATH, _fetching(variant.format(base=good_base)))
    if trusted_variant:
        assert response.status_code == 200, response.text
        assert len(good.seen) == 4  # Patient, Observations, Conditions, Procedures
    else:
        assert response.status_code == 412, variant
        assert good.seen == []


def test_token_is_sent_to_the_configured_base_only(trusted: Trusted) -> None:
    """The fhirAuthorization token reaches the configured server, and only it."""
    server, good_base, good, _, other = trusted
    good.seen.clear()
    other.seen.clear()
    assert call(server, PATH, _fetching(f"{good_base}/fhir")).status_code == 200
    assert {auth for _, auth in good.seen} == {"Bearer tok-secret"}
    assert other.seen == []


def test_insecure_mode_never_fetches() -> None:
    """Under --insecure (no issuer, no configuration) nothing is ever fetched: 412."""
    stub = FhirStub()
    with running(stub.app, free_port()) as fhir_base:
        port = free_port()
        with running(service(port, insecure=True), port) as server:
            response = call(server, PATH, _fetching(f"{fhir_base}/fhir"), bearer=None)
    assert response.status_code == 412
    assert stub.seen == []


def test_next_link_off_the_base_is_not_followed() -> None:
    """A search page whose link.next points to another server: not followed (that server
    gets nothing, so never the token), and the call answers 412 rather than use a partial
    record."""
    other = FhirStub()
    with running(other.app, free_port()) as other_base:
        stub = FhirStub(Observation={"link": [{"relation": "next",
                                               "url": f"{other_base}/fhir/Observation?p=2"}]})
        with running(stub.app, free_port()) as fhir_base:
            port = free_port()
            app = service(port, fhir_servers={ISSUER: [f"{fhir_base}/fhir"]})
            with running(app, port) as server:
                response = call(server, PATH, _fetching(f"{fhir_base}/fhir"))
    assert response.status_code == 412
    assert "not on the configured FHIR server" in response.json()["error"]
    assert other.seen == []


def test_next_link_within_the_base_is_followed() -> None:
    """Paging within the configured base is followed: the second page is asked for, with
    the token, and its entries are used."""
    stub = FhirStub(Observation=lambda own: {"link": [
        {"relation": "next", "url": f"{own}/fhir/Observation?patient=p1&page=2"}]})
    with running(stub.app, free_port()) as fhir_base:
        port = free_port()
        app = service(port, fhir_servers={ISSUER: [f"{fhir_base}/fhir"]})
        with running(app, port) as server:
            response = call(server, PATH, _fetching(f"{fhir_base}/fhir"))
    assert response.status_code == 200, response.text
    assert any("page=2" in url for url, _ in stub.seen)
    assert {auth for _, auth in stub.seen} == {"Bearer tok-secret"}


@pytest.mark.parametrize("patient_id", ["../Observation", "..", "p1/../../admin", "p1?x=1",
                                        "p%2F1", "a" * 65])
def test_patient_ids_cannot_traverse_paths(patient_id: str) -> None:
    """context.patientId must be a FHIR id: anything else is 400 and nothing is fetched."""
    stub = FhirStub()
    with running(stub.app, free_port()) as fhir_base:
        port = free_port()
        app = service(port, fhir_servers={ISSUER: [f"{fhir_base}/fhir"]})
        with running(app, port) as server:
            response = call(server, PATH, _fetching(f"{fhir_base}/fhir", patient_id))
    assert response.status_code == 400
    assert "context.patientId" in response.json()["error"]
    assert stub.seen == []


def test_fetch_failures_are_412() -> None:
    """An unreachable or failing fhirServer is 412 (the specification), not 502; so is an
    answer over the size limit or one that is too slow."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def huge(request: Any) -> Response:
        return Response(b"{" + b" " * 50_000 + b"}", media_type="application/json")

    async def slow(request: Any) -> Response:
        await asyncio.sleep(3)
        return JSONResponse({})

    async def failing(request: Any) -> Response:
        return JSONResponse({"resourceType": "OperationOutcome"}, status_code=500)

    stub = Starlette(routes=[Route("/huge/{rest:path}", huge), Route("/slow/{rest:path}", slow),
                             Route("/fail/{rest:path}", failing)])
    closed = free_port()  # nothing listens there
    with running(stub, free_port()) as base:
        port = free_port()
        bases = [f"{base}/huge", f"{base}/slow", f"{base}/fail", f"http://127.0.0.1:{closed}"]
        app = service(port, fhir_servers={ISSUER: bases}, fetch_timeout_seconds=1.0,
                      max_fetch_bytes=20_000)
        with running(app, port) as server:
            answers = {b: call(server, PATH, _fetching(b)) for b in bases}
    for fhir_base, response in answers.items():
        assert response.status_code == 412, fhir_base
        assert response.json()["code"] == "fhir_server_failed"
    assert "over 20000 bytes" in answers[f"{base}/huge"].json()["error"]


def test_fetched_record_of_another_patient_is_refused() -> None:
    """What the FHIR server returns is checked like prefetch: a Patient other than
    context.patientId is not used (412)."""
    other = copy.deepcopy(ADULT_PH)
    other["entry"][0]["resource"]["id"] = "p2"
    stub = FhirStub(other)
    with running(stub.app, free_port()) as fhir_base:
        port = free_port()
        app = service(port, fhir_servers={ISSUER: [f"{fhir_base}/fhir"]})
        with running(app, port) as server:
            response = call(server, PATH, _fetching(f"{fhir_base}/fhir"))
    assert response.status_code == 412
    assert "not the Patient of context.patientId" in response.json()["error"]


def test_base_urls() -> None:
    """Configured bases are compared normalized; credentials, queries and dot segments are
    never bases; a configuration with one is refused at start-up."""
    assert normalized_base("HTTPS://EHR.example.org:8443/fhir/") == \
        "https://ehr.example.org:8443/fhir"
    assert trusted_base("https://ehr.example.org/fhir", ["https://ehr.example.org/fhir/"])
    assert trusted_base("https://ehr.example.org.evil/fhir", ["https://ehr.example.org/fhir"]) \
        is None
    for bad in ("https://user:pw@ehr.example.org/fhir", "https://ehr/fhir?x=1",
                "https://ehr/fhir/../x", "file:///etc/passwd", "ehr.example.org/fhir"):
        assert normalized_base(bad) is None, bad
    with pytest.raises(ValueError, match="not an http"):
        ServiceSettings(base_url="http://127.0.0.1", issuers={ISSUER: {"keys": []}},
                        fhir_servers={ISSUER: ["ftp://x"]})
    with pytest.raises(ValueError, match="issuers not in `issuers`"):
        ServiceSettings(base_url="http://127.0.0.1", fhir_servers={ISSUER: ["https://x/r4"]})


def test_malformed_draft_orders_are_refused_before_any_fetch() -> None:
    """order-sign with missing prefetch and malformed draft orders: 400, and the configured
    FHIR server is not asked (the request is refused before anything leaves)."""
    stub = FhirStub()
    with running(stub.app, free_port()) as fhir_base:
        port = free_port()
        app = service(port, fhir_servers={ISSUER: [f"{fhir_base}/fhir"]})
        with running(app, port) as server:
            request = {**_fetching(f"{fhir_base}/fhir"), "hook": "order-sign"}
            request["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": 5}
            response = call(server, "/cds-services/all-rules-order-sign", request)
    assert response.status_code == 400
    assert stub.seen == []

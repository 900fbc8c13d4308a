"""The service reads the patient's Procedures (docs/fhir.md, "The CDS Hooks service"): a
``procedures`` prefetch, or a search of a FHIR server configured for the caller, gives the
history facts (a past allogeneic HSCT, cranial irradiation) coded in the institution's code
map; a Procedure of another patient is refused like any other resource; a call without
Procedures is answered as before, the two facts unknown. Every FHIR server is a stub on
loopback."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from all_rules import Guideline  # noqa: E402
from all_rules.cds import ServiceSettings, create_app  # noqa: E402

from ..support.cds_service import ISSUER, JWKS, FhirStub, call, free_port, hook_request, running  # noqa: E402
from ..support.fhir_charts import CDS_ADULT_PH as ADULT_PH  # noqa: E402

PATH = "/cds-services/all-rules-patient-view"
LOCAL = "urn:example:procedures"
TOKEN = {"access_token": "tok-proc", "token_type": "Bearer", "expires_in": 300,
         "scope": "patient/*.read", "subject": "all-rules"}
HISTORY = ("prior_allogeneic_hsct", "prior_cranial_irradiation")


class Recording:
    """The shipped guideline, keeping the facts each assessment was given."""

    def __init__(self) -> None:
        self.guideline = Guideline.default()
        self.ruleset = self.guideline.ruleset
        self.facts: list[Any] = []

    def assess(self, facts: Any) -> Any:
        self.facts.append(facts)
        return self.guideline.assess(facts)

    def last(self) -> dict[str, Any]:
        """The history facts of the last assessment (None: unknown)."""
        return {fact: getattr(self.facts[-1], fact) for fact in HISTORY}


@pytest.fixture(scope="module")
def code_map(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An institution's extension of the code map: its own codes for the two procedures."""
    path: Path = tmp_path_factory.mktemp("codes") / "institution.yaml"
    path.write_text(
        "history_procedures:\n"
        f"  - fact: prior_allogeneic_hsct\n    codes: [{{system: '{LOCAL}', code: 'ALLO'}}]\n"
        f"  - fact: prior_cranial_irradiation\n    codes: [{{system: '{LOCAL}', code: 'CRT'}}]\n",
        encoding="utf-8")
    return str(path)


def _app(port: int, recording: Recording, code_map: str, **settings: Any) -> Any:
    return create_app(ServiceSettings(base_url=f"http://127.0.0.1:{port}",
                                      issuers={ISSUER: JWKS}, code_map=code_map, **settings),
                      cast(Guideline, recording))


@pytest.fixture(scope="module")
def served(code_map: str) -> Iterator[tuple[str, Recording]]:
    recording = Recording()
    port = free_port()
    with running(_app(port, recording, code_map), port) as base:
        yield base, recording


def procedure(code: str = "ALLO", state: str = "completed", subject: str = "Patient/p1",
              ident: str = "hsct-1") -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": ident, "status": state,
            "subject": {"reference": subject},
            "code": {"coding": [{"system": LOCAL, "code": code}]},
            "performedDateTime": (dt.date.today() - dt.timedelta(days=400)).isoformat()}


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": r} for r in resources]}


def request_with(*procedures: dict[str, Any]) -> dict[str, Any]:
    """A patient-view request for ADULT_PH with these Procedures prefetched."""
    request = hook_request("patient-view", copy.deepcopy(ADULT_PH))
    request["prefetch"]["procedures"] = searchset(*procedures)
    return request


def topics(cards: list[dict[str, Any]]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards if "topic" in c["source"]]


def own(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in cards if "topic" not in c["source"]]


def test_discovery_asks_for_procedures(served: tuple[str, Recording]) -> None:
    """Both services list the Procedure search and say they need read access to it."""
    server, _ = served
    response = call(server, "/cds-services", method="GET")
    assert response.status_code == 200
    for described in response.json()["services"]:
        assert described["prefetch"]["procedures"] == "Procedure?patient={{context.patientId}}"
        assert "Procedure" in described["usageRequirements"]


@pytest.mark.parametrize(("code", "fact"), [("ALLO", "prior_allogeneic_hsct"),
                                            ("CRT", "prior_cranial_irradiation")])
def test_prefetched_completed_procedure_reaches_the_assessment(
        served: tuple[str, Recording], code: str, fact: str) -> None:
    """A completed Procedure coded with the institution's code makes its fact true in the
    facts the guideline assesses; the other history fact stays unknown."""
    server, recording = served
    response = call(server, PATH, request_with(procedure(code)))
    assert response.status_code == 200, response.text
    other = next(f for f in HISTORY if f != fact)
    assert recording.last() == {fact: True, other: None}


def test_procedures_that_do_not_count_leave_the_facts_unknown(
        served: tuple[str, Recording]) -> None:
    """A Procedure not done, or with a code not in the map, says nothing (never false)."""
    server, recording = served
    response = call(server, PATH, request_with(procedure(state="not-done"),
                                               procedure("AUTO", ident="auto-1")))
    assert response.status_code == 200, response.text
    assert recording.last() == {"prior_allogeneic_hsct": None,
                                "prior_cranial_irradiation": None}


def test_without_procedures_the_call_is_answered_as_before(
        served: tuple[str, Recording]) -> None:
    """No procedures prefetch and no fhirServer: not 412; the same cards as with an empty
    Procedure search, the history facts unknown, and no card about missing data."""
    server, recording = served
    without = hook_request("patient-view", copy.deepcopy(ADULT_PH))
    assert "procedures" not in without["prefetch"]
    response = call(server, PATH, without)
    assert response.status_code == 200, response.text
    assert recording.last() == {"prior_allogeneic_hsct": None,
                                "prior_cranial_irradiation": None}
    cards = response.json()["cards"]
    assert topics(cards) == topics(call(server, PATH, request_with()).json()["cards"])
    assert not any("incomplete" in c["summary"] for c in own(cards))


@pytest.mark.parametrize("reference", ["Patient/p2",
                                       "https://ehr.example.org/fhir/Patient/p2/_history/3",
                                       "Group/p1"])
def test_procedure_of_another_patient_is_refused(served: tuple[str, Recording],
                                                 reference: str) -> None:
    """A Procedure whose subject is not context.patientId is refused exactly like an
    Observation or Condition of another patient: 400 patient_mismatch, naming the resource,
    never the other patient's id, and nothing assessed."""
    server, recording = served
    before = len(recording.facts)
    response = call(server, PATH, request_with(procedure(subject=reference)))
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "patient_mismatch"
    assert "prefetch.procedures: Procedure/hsct-1: subject is another patient" in \
        response.json()["error"]
    assert "p2" not in response.json()["error"]
    assert "cards" not in response.json()
    assert len(recording.facts) == before


def test_wrong_resource_in_the_procedure_search_is_400(served: tuple[str, Recording]) -> None:
    server, _ = served
    response = call(server, PATH, request_with({"resourceType": "Observation", "id": "x"}))
    assert response.status_code == 400
    assert "prefetch.procedures.entry[0]: a Observation where Procedure resources belong" in \
        response.json()["error"]


def _with_procedure(*resources: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = copy.deepcopy(ADULT_PH)
    record["entry"].extend({"resource": r} for r in resources)
    return record


def _fetching(fhir_base: str, **prefetch: Any) -> dict[str, Any]:
    request = hook_request("patient-view", copy.deepcopy(ADULT_PH))
    return {**request, "prefetch": prefetch, "fhirServer": f"{fhir_base}/fhir",
            "fhirAuthorization": TOKEN}


def _through_server(fhir_app: Any, code_map: str, prefetch: dict[str, Any] | None = None,
                    **settings: Any) -> tuple[Any, Recording, str]:
    """Call the service with *prefetch*, a FHIR server (*fhir_app*, on loopback) configured
    for the caller: the response, the recording guideline and the server's base URL."""
    recording = Recording()
    with running(fhir_app, free_port()) as fhir_base:
        port = free_port()
        app = _app(port, recording, code_map, fhir_servers={ISSUER: [f"{fhir_base}/fhir"]},
                   **settings)
        with running(app, port) as server:
            response = call(server, PATH, _fetching(fhir_base, **(prefetch or {})))
    return response, recording, fhir_base


def test_missing_prefetch_fetches_procedures_too(code_map: str) -> None:
    """Without prefetch, the configured FHIR server is asked for the Procedures as well (with
    the token), and a completed HSCT there reaches the assessment."""
    stub = FhirStub(_with_procedure(procedure()))
    response, recording, fhir_base = _through_server(stub.app, code_map)
    assert response.status_code == 200, response.text
    assert sorted(url.removeprefix(fhir_base) for url, _ in stub.seen) == [
        "/fhir/Condition?patient=p1", "/fhir/Observation?patient=p1", "/fhir/Patient/p1",
        "/fhir/Procedure?patient=p1"]
    assert {auth for _, auth in stub.seen} == {"Bearer tok-proc"}
    assert recording.last()["prior_allogeneic_hsct"] is True


def test_only_procedures_missing_fetches_only_procedures(code_map: str) -> None:
    """The rest prefetched, the Procedures not: only they are fetched from the trusted
    server."""
    stub = FhirStub(_with_procedure(procedure("CRT", ident="crt-1")))
    prefetch = hook_request("patient-view", copy.deepcopy(ADULT_PH))["prefetch"]
    response, recording, fhir_base = _through_server(stub.app, code_map, prefetch)
    assert response.status_code == 200, response.text
    assert [url.removeprefix(fhir_base) for url, _ in stub.seen] == [
        "/fhir/Procedure?patient=p1"]
    assert recording.last() == {"prior_allogeneic_hsct": None,
                                "prior_cranial_irradiation": True}


def test_untrusted_server_is_not_asked_for_procedures(
        served: tuple[str, Recording]) -> None:
    """The rest prefetched and a fhirServer not configured for the caller: nothing is sent
    to it, and the call is answered as before (the history facts unknown)."""
    server, recording = served
    stub = FhirStub(_with_procedure(procedure()))
    prefetch = hook_request("patient-view", copy.deepcopy(ADULT_PH))["prefetch"]
    with running(stub.app, free_port()) as fhir_base:
        response = call(server, PATH, _fetching(fhir_base, **prefetch))
    assert response.status_code == 200, response.text
    assert stub.seen == []
    assert recording.last()["prior_allogeneic_hsct"] is None


def test_fetched_procedure_of_another_patient_is_refused(code_map: str) -> None:
    """What the FHIR server returns is checked like prefetch: a Procedure of another patient
    is not used (412, as for an Observation of another patient)."""
    stub = FhirStub(_with_procedure(procedure(subject="Patient/p2")))
    response, recording, _ = _through_server(stub.app, code_map)
    assert response.status_code == 412
    assert response.json()["code"] == "fhir_server_failed"
    assert "Procedure/hsct-1: subject is another patient" in response.json()["error"]
    assert recording.facts == []


@pytest.mark.parametrize("failure", ["forbidden", "slow", "not a bundle"])
def test_procedure_search_the_server_cannot_give_says_the_record_may_be_incomplete(
        code_map: str, failure: str) -> None:
    """A server that does not give the Procedures (403: no read access to them; too slow;
    an answer that is not a Bundle) does not refuse a call answerable without them: the
    cards come with the warning that the record may be incomplete, and the history facts
    stay unknown."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    asked: list[str] = []

    async def failing(request: Request) -> Response:
        asked.append(request.url.path)
        if failure == "slow":
            await asyncio.sleep(3)
        if failure == "not a bundle":
            return JSONResponse([1, 2])
        return JSONResponse({"resourceType": "OperationOutcome"}, status_code=403)

    refusing = Starlette(routes=[Route("/fhir/{kind}", failing)])
    prefetch = hook_request("patient-view", copy.deepcopy(ADULT_PH))["prefetch"]
    response, recording, _ = _through_server(refusing, code_map, prefetch,
                                             fetch_timeout_seconds=1.0)
    assert response.status_code == 200, response.text
    assert asked == ["/fhir/Procedure"]
    cards = response.json()["cards"]
    (warning,) = own(cards)
    assert "data may be incomplete" in warning["summary"]
    assert "OperationOutcome/procedures-not-fetched" in warning["detail"]
    assert topics(cards)  # still assessed
    assert recording.last()["prior_allogeneic_hsct"] is None


def test_required_search_failing_is_still_412(code_map: str) -> None:
    """Only the Procedure search is optional: when the Observations cannot be fetched the
    call is 412 as before, whatever the Procedures."""
    stub = FhirStub(Observation={"link": [{"relation": "next",
                                           "url": "http://127.0.0.1:9/fhir/Observation?p=2"}]})
    response, recording, _ = _through_server(stub.app, code_map)
    assert response.status_code == 412
    assert response.json()["code"] == "fhir_server_failed"
    assert recording.facts == []

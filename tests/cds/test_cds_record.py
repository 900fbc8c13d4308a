"""The service on real charts: the diagnosis gate from the FHIR mapping (every ALL code
family), records that may be incomplete (unfollowed pages, server outcomes, the fetch page
cap), values the mapping did not use, and a treatment phase it could not determine
(docs/fhir.md, "The CDS Hooks service")."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("fhir.resources")

from all_rules import Guideline
from all_rules.cds._cards import phase_specific
from all_rules.fhir import facts_from_bundle

from ..support.cds_service import ISSUER, FhirStub, call, free_port, running, service
from ..support.cds_service import hook_request as _hook_request
from ..support.fhir_charts import (
    ICD10,
    ICD10CM,
    ICDO3,
    NCIT,
    SNOMED,
    bundle,
    diagnosis,
    observation,
    status,
)

PATIENT_VIEW = "/cds-services/all-rules-patient-view"
ORDER_SIGN = "/cds-services/all-rules-order-sign"
RULE = "https://all-rules/rule"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    with running(service(port), port) as base:
        yield base


def hook_request(hook: str, record: dict[str, Any], **context: Any) -> dict[str, Any]:
    return _hook_request(hook, copy.deepcopy(record), **context)


def chart(*resources: dict[str, Any], code: str = "91857003", system: str = SNOMED,
          **fields: Any) -> dict[str, Any]:
    """A recent adult ALL chart: one ALL Condition (code and status as told), a WBC at
    diagnosis, height and weight measured now."""
    today = dt.date.today()
    onset = (today - dt.timedelta(days=3)).isoformat()
    now = (today - dt.timedelta(days=1)).isoformat()
    return bundle(diagnosis(code=code, system=system, onset=onset, **fields),
                  observation("wbc-1", "6690-2", 45, "10*3/uL", when=onset),
                  observation("height-1", "8302-2", 178, "cm", when=now),
                  observation("weight-1", "29463-7", 82, "kg", when=now), *resources)


def topics(cards: list[dict[str, Any]]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards if "topic" in c["source"]]


def own(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The service's own cards (about the record), not the guideline's items."""
    return [c for c in cards if "topic" not in c["source"]]


def mapped_assessment(record: dict[str, Any]) -> Any:
    mapped = facts_from_bundle(record, assessment_date=dt.date.today())
    return Guideline.default().assess(mapped.facts), mapped


# -- the diagnosis gate -------------------------------------------------------------------

@pytest.mark.parametrize(("system", "code"), [
    (SNOMED, "91857003"), (ICD10CM, "C91.00"), (ICD10, "C91.0"), (ICDO3, "9811/3"),
    (NCIT, "C3167"),
])
def test_every_all_code_family_opens_the_gate(server: str, system: str, code: str) -> None:
    """A Condition with a plain ALL code of each family gives the patient's guideline cards
    (the same items as assessing the mapped facts) — not 'no ALL'."""
    record = chart(code=code, system=system)
    response = call(server, PATIENT_VIEW, hook_request("patient-view", record))
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    expected, _ = mapped_assessment(record)
    assert topics(cards) == expected.ids()
    assert expected.ids()
    assert own(cards) == []


@pytest.mark.parametrize("fields", [
    status("resolved"), status("inactive"), status("active", "refuted"),
    status(None, "entered-in-error"), status("active", "provisional"),
    status("active", "unconfirmed"),
])
@pytest.mark.parametrize(("system", "code"), [(SNOMED, "91857003"), (ICD10CM, "C91.00")])
def test_inactive_or_unconfirmed_all_gives_one_info_card(server: str, fields: dict[str, Any],
                                                         system: str, code: str) -> None:
    response = call(server, PATIENT_VIEW,
                    hook_request("patient-view", chart(code=code, system=system, **fields)))
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert card["indicator"] == "info"
    assert "no active, confirmed ALL diagnosis" in card["summary"]
    assert "Condition/dx" in card["detail"]


def test_remission_status_is_still_an_all_patient(server: str) -> None:
    """clinicalStatus remission (maintenance, follow-up) keeps the gate open, as the
    mapping reads it."""
    response = call(server, PATIENT_VIEW,
                    hook_request("patient-view", chart(**status("remission"))))
    assert topics(response.json()["cards"])


VINCRISTINE_2_5_MG = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "MedicationRequest", "id": "mr-1", "status": "draft",
        "intent": "order", "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"coding": [{
            "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "11202"}]},
        "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {
            "value": 2.5, "unit": "mg", "system": "http://unitsofmeasure.org",
            "code": "mg"}}]}]}}]}


def test_order_sign_audits_only_patients_with_all(server: str) -> None:
    draft = VINCRISTINE_2_5_MG
    flagged = call(server, ORDER_SIGN, hook_request("order-sign", chart(), draftOrders=draft))
    assert "audit.vincristine_dose" in topics(flagged.json()["cards"])
    resolved = chart(**status("resolved"))
    response = call(server, ORDER_SIGN, hook_request("order-sign", resolved, draftOrders=draft))
    assert response.status_code == 200
    assert response.json()["cards"] == []


# -- incomplete records -------------------------------------------------------------------

def test_unfollowed_next_link_in_prefetch_gives_a_warning(server: str) -> None:
    request = hook_request("patient-view", chart())
    request["prefetch"]["observations"]["link"] = [
        {"relation": "next", "url": "https://fhir.example.org/Observation?page=2"}]
    cards = call(server, PATIENT_VIEW, request).json()["cards"]
    (warning,) = own(cards)
    assert warning["indicator"] == "warning"
    assert "data may be incomplete" in warning["summary"]
    assert "Bundle/observations" in warning["detail"]
    assert "fhir.example.org" not in warning["detail"]
    assert topics(cards)  # still assessed, with the warning first
    assert cards[0] == warning


def test_operation_outcome_in_a_search_gives_a_warning(server: str) -> None:
    request = hook_request("patient-view", chart())
    request["prefetch"]["observations"]["entry"].append({"resource": {
        "resourceType": "OperationOutcome", "id": "oo-1", "issue": [
            {"severity": "error", "code": "too-costly", "diagnostics": "secret text"}]}})
    cards = call(server, PATIENT_VIEW, request).json()["cards"]
    (warning,) = own(cards)
    assert "data may be incomplete" in warning["summary"]
    assert "OperationOutcome/oo-1" in warning["detail"]
    assert "secret text" not in warning["detail"]


def test_cut_conditions_without_all_are_not_silent(server: str) -> None:
    """No ALL Condition in a cut Condition search: an ALL diagnosis may be on the next page,
    so patient-view warns instead of answering nothing."""
    request = hook_request("patient-view", chart())
    request["prefetch"]["conditions"]["entry"] = []
    request["prefetch"]["conditions"]["link"] = [
        {"relation": "next", "url": "https://fhir.example.org/Condition?page=2"}]
    (card,) = call(server, PATIENT_VIEW, request).json()["cards"]
    assert card["indicator"] == "warning"
    assert "no ALL diagnosis in the part received" in card["summary"]
    del request["prefetch"]["conditions"]["link"]
    assert call(server, PATIENT_VIEW, request).json()["cards"] == []


def test_fetch_cut_at_the_page_cap_is_reported() -> None:
    """The service follows next within the base up to its page cap (20); a search still
    going on there is used as far as fetched, and the cut is said in a warning card."""
    stub = FhirStub(chart(), Observation=lambda base: {"link": [
        {"relation": "next", "url": f"{base}/fhir/Observation?patient=p1&cursor=more"}]})
    with running(stub.app, free_port()) as fhir_base:
        port = free_port()
        app = service(port, fhir_servers={ISSUER: [f"{fhir_base}/fhir"]})
        with running(app, port) as server:
            request = {**hook_request("patient-view", chart()), "prefetch": {},
                       "fhirServer": f"{fhir_base}/fhir",
                       "fhirAuthorization": {"access_token": "tok"}}
            response = call(server, PATIENT_VIEW, request)
    assert response.status_code == 200, response.text
    assert sum("/Observation" in url for url, _ in stub.seen) == 20
    cards = response.json()["cards"]
    (warning,) = own(cards)
    assert "data may be incomplete" in warning["summary"]
    assert "Bundle/observations" in warning["detail"]
    assert topics(cards)


# -- values not used, and the phase -------------------------------------------------------

def test_values_not_used_are_listed_by_fact_and_resource(server: str) -> None:
    stone = observation("weight-2", "29463-7", 13, "[stone_av]",
                        when=(dt.date.today() - dt.timedelta(days=1)).isoformat())
    preliminary = observation("height-2", "8302-2", 181, "cm", status="preliminary")
    other = observation("weight-3", "29463-7", 77, "kg",  # same day as weight-1: a conflict
                        when=(dt.date.today() - dt.timedelta(days=1)).isoformat())
    cards = call(server, PATIENT_VIEW, hook_request(
        "patient-view", chart(stone, preliminary, other))).json()["cards"]
    (report,) = own(cards)
    assert report["indicator"] == "warning"
    assert len(report["summary"]) < 140
    assert "`weight_kg`" in report["detail"]
    assert "Observation/weight-2" in report["detail"]
    assert "`height_cm`" in report["detail"]
    assert "Observation/height-2" in report["detail"]
    assert "stone" not in report["detail"]
    assert "181" not in report["detail"]
    lines = {line.split("`")[1]: line for line in report["detail"].splitlines()
             if line.startswith("- `")}
    assert set(lines) == {"weight_kg", "height_cm"}
    assert lines["weight_kg"].endswith("left unknown")
    assert "Observation/weight-3" in lines["weight_kg"]
    assert "left unknown" not in lines["height_cm"]  # height-1 was used
    assert "77" not in report["detail"]


def test_in_remission_without_a_phase_withholds_phase_specific_advice(server: str) -> None:
    """ICD-10-CM C91.01 (in remission) opens the gate but names no phase: the phase is unknown
    (no default, issue 17 §1), so no phase-specific item fires at all, the guideline asks for
    the phase (data.phase, shown) and one warning says so, and what to send."""
    record = chart(code="C91.01", system=ICD10CM)
    assessment, mapped = mapped_assessment(record)
    assert "phase" in mapped.undetermined
    specific = [i.id for i in assessment.recommendations if phase_specific(i)]
    assert specific == [], "an unknown phase gives no phase-specific item"
    assert "data.phase" in assessment.ids()
    cards = call(server, PATIENT_VIEW, hook_request("patient-view", record)).json()["cards"]
    (warning,) = own(cards)
    assert "phase not determined" in warning["summary"]
    assert "No phase-specific recommendation applied." in warning["detail"]
    assert "phase" in warning["detail"]
    shown = topics(cards)
    assert shown == assessment.ids()
    assert "data.phase" in shown
    not_in_remission = chart(code="C91.00", system=ICD10CM)
    cards = call(server, PATIENT_VIEW,
                 hook_request("patient-view", not_in_remission)).json()["cards"]
    assert own(cards) == []


def test_phase_undetermined_keeps_plan_alerts_that_hold_in_every_phase(server: str) -> None:
    """order-sign for a patient in remission without a phase: the vincristine cap alert does
    not rest on the phase and is still given, after the phase warning."""
    record = chart(code="C91.01", system=ICD10CM)
    response = call(server, ORDER_SIGN, hook_request("order-sign", record,
                                                     draftOrders=VINCRISTINE_2_5_MG))
    cards = response.json()["cards"]
    (warning,) = own(cards)
    assert "phase not determined" in warning["summary"]
    assert "audit.vincristine_dose" in topics(cards)


def test_unreadable_patient_follows_the_gate(server: str) -> None:
    """A Patient without a full birth date cannot be mapped: for an ALL patient a warning
    says so; without an ALL Condition there is no card (the service does not apply), unless
    the record may be incomplete; with only a resolved one, the info card."""
    def request(record: dict[str, Any]) -> dict[str, Any]:
        made = hook_request("patient-view", record)
        made["prefetch"]["patient"]["birthDate"] = "1984-03"
        return made

    (card,) = call(server, PATIENT_VIEW, request(chart())).json()["cards"]
    assert "could not be read completely" in card["summary"]
    without = request(chart())
    without["prefetch"]["conditions"]["entry"] = []
    assert call(server, PATIENT_VIEW, without).json()["cards"] == []
    without["prefetch"]["conditions"]["link"] = [
        {"relation": "next", "url": "https://fhir.example.org/Condition?page=2"}]
    (card,) = call(server, PATIENT_VIEW, without).json()["cards"]
    assert card["indicator"] == "warning"
    (card,) = call(server, PATIENT_VIEW,
                   request(chart(**status("resolved")))).json()["cards"]
    assert card["indicator"] == "info"


def test_record_warnings_put_no_resource_or_value_in_the_log(
        server: str, caplog: pytest.LogCaptureFixture) -> None:
    """The audit line says the record was incomplete and which items were withheld (rule
    ids), never the resources or values the warning cards name."""
    caplog.set_level("INFO", logger="all_rules.cds")
    stone = observation("weight-2", "29463-7", 13, "[stone_av]")
    request = hook_request("patient-view", chart(stone, code="C91.01", system=ICD10CM))
    request["prefetch"]["observations"]["link"] = [
        {"relation": "next", "url": "https://fhir.example.org/Observation?page=2"}]
    cards = call(server, PATIENT_VIEW, request).json()["cards"]
    assert len(own(cards)) == 3  # incomplete, phase, values not used
    deadline = time.monotonic() + 10  # the audit line is written as the response ends
    while True:
        lines = [r.getMessage() for r in caplog.records if r.name == "all_rules.cds"]
        found = [json.loads(r) for r in lines if '"withheld"' in r]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    (line,) = found
    assert line["incomplete"] is True
    assert line["withheld"] == []  # an unknown phase gives no phase-specific item to withhold
    for text in lines:
        for secret in ("weight-2", "Observation/", "Condition/", "stone", "fhir.example.org",
                       '"p1"', "1984-03-02"):
            assert secret not in text

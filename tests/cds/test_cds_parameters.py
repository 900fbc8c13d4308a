"""CDS Hooks cards made under local parameters say so: a card listing them (critical when one
is outside its safe range) before the guideline's cards, and a line on each guideline card."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("starlette")

from all_rules import Guideline, PatientFacts
from all_rules.cds._answer import answer
from all_rules.fhir import FhirFacts

FACTS = {"age_years": 12, "height_cm": 150, "weight_kg": 40, "lineage": "B",
         "ph_status": "negative", "phase": "induction"}
DOCS = "https://example.org/docs"


def _cards(guideline: Guideline, only_alerts: bool = False) -> list[dict[str, Any]]:
    facts = PatientFacts.model_validate(FACTS)
    mapped = FhirFacts(facts=facts, provenance={}, unmapped=())
    return answer(guideline.assess(facts), mapped, "hook-1", only_alerts, [], DOCS)


def test_an_unsafe_override_gives_a_critical_card_and_a_line_on_every_card() -> None:
    """The card names the parameter, shipped and local value, the safe range and the
    reason; every guideline card's detail ends with the local-parameters line."""
    local = Guideline.load(unsafe_overrides={
        "vincristine_cap_mg": {"value": 2.5, "reason": "protocol XY"}})
    try:
        cards = _cards(local)
    finally:
        local.close()
    first = cards[0]
    assert first["summary"] == "ALL guideline: local parameters in use; 1 OUTSIDE the safe range"
    assert first["indicator"] == "critical"
    assert ("- vincristine_cap_mg = 2.5 mg (shipped 2 mg; OUTSIDE its safe range 1–2 mg; "
            "reason given: protocol XY)") in first["detail"]
    items = cards[1:]
    assert items
    assert all(card["detail"].endswith(
        "**Local parameters:** made with 1 value(s) that differ from the shipped guideline "
        "(`vincristine_cap_mg`); OUTSIDE the safe range: `vincristine_cap_mg`. See the card "
        "on local parameters.") for card in items)


def test_an_override_inside_the_safe_range_gives_a_warning_card() -> None:
    """A local value inside its safe range is still announced (a warning card)."""
    local = Guideline.load(parameters={"dose_tolerance_percent": 2})
    try:
        cards = _cards(local)
    finally:
        local.close()
    assert cards[0]["indicator"] == "warning"
    assert "dose_tolerance_percent = 2 % (shipped 5 %)" in cards[0]["detail"]
    assert "local parameters in use" in cards[0]["summary"]


def test_the_shipped_guideline_gives_no_local_parameters_card() -> None:
    """With the shipped values there is no such card and no such line."""
    cards = _cards(Guideline.default())
    assert not any("local parameters" in card["summary"] for card in cards)
    assert not any("**Local parameters:**" in card["detail"] for card in cards)

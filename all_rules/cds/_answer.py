"""The cards that answer a call, from its assessment and the mapping's result.

The guideline's items become CDS Hooks cards with their reason, evidence and citations
(order-sign: the plan alerts only). Before them come the service's own cards on the record
(``_cards``): incomplete, treatment phase undetermined — whose phase-specific items are then
withheld, since the facts do not hold the record's phase — and values not used; then,
when the guideline runs on local parameter values, a card listing them (each guideline card
says so too). A record without an active ALL diagnosis gets no guideline card, only what the
clinician should know about why.
"""

from __future__ import annotations

import uuid
from typing import Any

from all_rules.engine._wording import evidence_phrase
from all_rules.fhir import FhirFacts, Unmapped
from all_rules.output import Assessment, Recommendation

from ._cards import (
    CARD_NAMESPACE,
    incomplete_card,
    local_parameters_card,
    local_parameters_line,
    no_diagnosis_card,
    phase_card,
    phase_specific,
    reports_card,
)

__all__ = ["answer", "cards", "closed_gate", "notes", "withheld_items"]

_SUMMARY_MAX = 139
"""The specification asks for a summary of fewer than 140 characters."""


_SCOPE_LABEL = "Not decided by this guideline"
"""How a scope item (policy 7) is worded on a card: the decision is due, the guideline does not
make it, and the card says where to turn; its indicator is ``info``, not a warning to act on."""


def _indicator(item: Recommendation) -> str:
    return "info" if item.kind.value == "scope" else item.severity.value


def _summary(item: Recommendation) -> str:
    text = f"{_SCOPE_LABEL}: {item.text}" if item.kind.value == "scope" else item.text
    return text if len(text) <= _SUMMARY_MAX else text[:_SUMMARY_MAX - 1].rstrip() + "…"


def _detail(item: Recommendation, local: str | None = None) -> str:
    lines = [item.text, "", f"**Why:** {item.reason}", "", "**Evidence:**"]
    if item.kind.value == "scope":
        lines[:0] = [f"**{_SCOPE_LABEL}** (a decision due for this patient that this "
                     "guideline does not make):", ""]
    for e in item.evidence:
        source = f" — {e.source}" if e.source else ""
        lines.append(f"- {evidence_phrase(e.fact, e.value, e.test)}{source}")
    lines.append("")
    lines.append("**Citations:** " + ", ".join(f"[{c}]" for c in item.citations))
    if local is not None:
        lines += ["", local]
    return "\n".join(lines)


def cards(assessment: Assessment, hook_instance: str, docs_url: str,
          only_alerts: bool, withhold: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The assessment's items as CDS Hooks cards (order-sign: the plan alerts only), but
    those in ``withhold``."""
    label = f"all-rules {assessment.ruleset.name} {assessment.ruleset.version}"
    local = local_parameters_line(assessment.parameter_overrides)
    result = []
    for item in assessment.recommendations:
        if (only_alerts and item.kind.value != "alert") or item.id in withhold:
            continue
        result.append({
            "uuid": str(uuid.uuid5(CARD_NAMESPACE, f"{hook_instance}:{item.id}")),
            "summary": _summary(item),
            "detail": _detail(item, local),
            "indicator": _indicator(item),
            "source": {"label": label, "url": docs_url,
                       "topic": {"system": "https://all-rules/rule", "code": item.id}},
            "links": [{"label": f"Rule {item.id}", "url": f"{docs_url}#{item.id}",
                       "type": "absolute"}],
        })
    return result


def closed_gate(hook_instance: str, only_alerts: bool, rejected: tuple[Unmapped, ...],
                mapped: FhirFacts | None, ordered: bool, docs_url: str) -> list[dict[str, Any]]:
    """The answer for a record without an active ALL diagnosis: nothing; one info card
    (patient-view) when its ALL Conditions are all inactive or unconfirmed; a warning
    when the record may be incomplete (patient-view, or order-sign with ALL orders)."""
    if mapped is not None and mapped.incomplete and (ordered or not only_alerts):
        return [incomplete_card(hook_instance, mapped.unmapped, docs_url, diagnosed=False)]
    if rejected and not only_alerts:
        return [no_diagnosis_card(hook_instance, rejected, docs_url)]
    return []


def withheld_items(assessment: Assessment, mapped: FhirFacts, only_alerts: bool) -> list[str]:
    """The ids of the items not shown because they rest on a phase the record does not
    determine (order-sign: among the plan alerts)."""
    if "phase" not in mapped.undetermined:  # the facts hold the record's phase
        return []
    return [i.id for i in assessment.recommendations if phase_specific(i)
            and (not only_alerts or i.kind.value == "alert")]


def notes(hook_instance: str, mapped: FhirFacts, only_alerts: bool,
          withheld: list[str], docs_url: str) -> list[dict[str, Any]]:
    """The warnings on the record that come before the guideline's cards: incomplete
    record, phase undetermined (both hooks), values not used (patient-view)."""
    found: list[dict[str, Any]] = []
    if mapped.incomplete:
        found.append(incomplete_card(hook_instance, mapped.unmapped, docs_url, diagnosed=True))
    phase = "phase" in mapped.undetermined
    if phase:
        found.append(phase_card(hook_instance, mapped.unmapped, withheld, docs_url))
    if not only_alerts:
        reports = reports_card(hook_instance, mapped.unmapped, mapped.undetermined, docs_url,
                               skip=frozenset({"phase"}) if phase else frozenset())
        if reports is not None:
            found.append(reports)
    return found


def answer(assessment: Assessment, mapped: FhirFacts, hook_instance: str, only_alerts: bool,
           withheld: list[str], docs_url: str) -> list[dict[str, Any]]:
    """The cards of an assessed record: the notes on the record, then the guideline's
    cards but the ``withheld`` ones."""
    local = local_parameters_card(hook_instance, assessment.parameter_overrides, docs_url)
    return notes(hook_instance, mapped, only_alerts, withheld, docs_url) + \
        ([local] if local is not None else []) + \
        cards(assessment, hook_instance, docs_url, only_alerts, withhold=frozenset(withheld))

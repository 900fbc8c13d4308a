"""The service's own cards: what it says about the record rather than the guideline's items.

Each is built from the FHIR mapping's result (``FhirFacts``): the diagnosis gate, a record
that may be incomplete, values that were not used, and a treatment phase that could not be
determined; one more says which local parameter values the assessment was made with. They
name facts, resource ids and the reasons the mapping gives for searches and server
outcomes — never a patient's values (docs/fhir.md, "The CDS Hooks service").
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from all_rules.fhir import Unmapped
from all_rules.output import ParameterOverride, Recommendation

CARD_NAMESPACE = uuid.UUID("6d1c8e0e-4a8f-4b7e-9f43-8a1f0e2d5c11")
_LISTED = 5
"""Resources named per fact; the rest are counted."""
PHASE_CODES = ("an Observation with the institution's phase code (the code map's "
               "`observations`, fact `phase`: docs/fhir.md), or ICD-10-CM C91.02 "
               "(in relapse)")


def _card(hook_instance: str, name: str, summary: str, detail: str, indicator: str,
          docs_url: str) -> dict[str, Any]:
    return {"uuid": str(uuid.uuid5(CARD_NAMESPACE, f"{hook_instance}:({name})")),
            "summary": summary, "detail": detail, "indicator": indicator,
            "source": {"label": "all-rules", "url": docs_url}}


def problem_card(hook_instance: str, problems: list[str], docs_url: str) -> dict[str, Any]:
    return _card(hook_instance, "mapping",
                 "ALL guideline not assessed: the record could not be read completely",
                 "The patient's record could not be mapped to the guideline's facts, so no "
                 "recommendation is given:\n\n" + "\n".join(f"- {p}" for p in problems),
                 "warning", docs_url)


def no_diagnosis_card(hook_instance: str, rejected: Iterable[Unmapped],
                      docs_url: str) -> dict[str, Any]:
    """The record's ALL Conditions are all resolved, inactive, refuted or unconfirmed."""
    why = "\n".join(f"- {u.resource}: {u.reason}" for u in rejected)
    return _card(hook_instance, "no-active-diagnosis",
                 "ALL guideline not applied: no active, confirmed ALL diagnosis on record",
                 "The record has an acute lymphoblastic leukemia Condition, but none that is "
                 "current (clinicalStatus active, recurrence, relapse or remission, or none) "
                 "and confirmed, so no ALL treatment recommendation is given:\n\n" + why,
                 "info", docs_url)


def cut_reports(unmapped: Iterable[Unmapped]) -> list[Unmapped]:
    """The reports that make a record incomplete: unfollowed pages and server outcomes."""
    return [u for u in unmapped if u.fact is None and
            u.resource.split("/", 1)[0] in ("Bundle", "OperationOutcome")]


def incomplete_card(hook_instance: str, unmapped: Iterable[Unmapped], docs_url: str,
                    diagnosed: bool) -> dict[str, Any]:
    """The record was cut (a ``next`` page not followed) or the server reported a problem."""
    why = "\n".join(f"- {u.resource}: {u.reason}" for u in cut_reports(unmapped))
    if diagnosed:
        summary = "ALL guideline: data may be incomplete; the advice below may miss results"
        lead = ("The record received may be incomplete, so the recommendations are based on "
                "part of it: a fact shown as unknown, or an older value, may have a newer "
                "result in what was not received.")
    else:
        summary = "ALL guideline: data may be incomplete; no ALL diagnosis in the part received"
        lead = ("No active ALL Condition was found in the record received, but the record "
                "may be incomplete: an ALL diagnosis may be in what was not received, so no "
                "ALL recommendation could be checked.")
    return _card(hook_instance, "incomplete", summary, f"{lead}\n\n{why}", "warning", docs_url)


def _resources(refs: list[str]) -> str:
    shown = ", ".join(refs[:_LISTED])
    return shown + (f" and {len(refs) - _LISTED} more" if len(refs) > _LISTED else "")


def reports_card(hook_instance: str, unmapped: Iterable[Unmapped], undetermined: Iterable[str],
                 docs_url: str, skip: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """One card listing the facts with values not used, by fact and resource id, or None."""
    by_fact: dict[str, list[str]] = {}
    for u in unmapped:
        if u.fact is not None and u.fact not in skip:
            found = by_fact.setdefault(u.fact, [])
            if u.resource not in found:
                found.append(u.resource)
    unknown = sorted(set(undetermined) - skip)
    for fact in unknown:
        by_fact.setdefault(fact, [])
    if not by_fact:
        return None
    lines = []
    for fact in sorted(by_fact):
        state = " — left unknown" if fact in unknown else ""
        refs = f": not used from {_resources(by_fact[fact])}" if by_fact[fact] else ""
        lines.append(f"- `{fact}`{refs}{state}")
    count = len(by_fact)
    summary = (f"ALL guideline: record values not used for {count} fact"
               f"{'s' if count > 1 else ''}; check the data before relying on the advice")
    detail = ("Some values in the record could not be used (a unit that cannot be converted, "
              "a non-final result, a value outside its time window, two values that "
              "disagree, …). A fact marked *left unknown* is treated as unknown; the others "
              "come from another resource or are unknown. Why each resource was left out: "
              "docs/fhir.md, \"Resources that are not used\".\n\n" + "\n".join(lines))
    return _card(hook_instance, "reports", summary, detail, "warning", docs_url)


def phase_specific(item: Recommendation) -> bool:
    """Whether the item rests on the treatment phase: its evidence uses a known ``phase`` (it
    fired because of the phase value; an item asking for an unknown phase does not), or it is
    advice for one phase (not ``any``). A plan alert
    that does not test the phase — a dose cap — holds in every phase and is not."""
    if any(e.fact == "phase" and e.value is not None for e in item.evidence):
        return True
    return item.phase.value != "any" and item.kind.value != "alert"


def phase_card(hook_instance: str, unmapped: Iterable[Unmapped], withheld: list[str],
               docs_url: str) -> dict[str, Any]:
    """The treatment phase is undetermined: phase-specific items were withheld."""
    refs = sorted({u.resource for u in unmapped if u.fact == "phase"})
    said = f" ({_resources(refs)})" if refs else ""
    held = (f"{len(withheld)} phase-specific recommendation(s) withheld: "
            + ", ".join(f"`{i}`" for i in withheld)) if withheld else \
        "No phase-specific recommendation applied."
    detail = (f"The record does not determine the treatment phase{said}: for example "
              "ICD-10-CM C91.01 says *in remission* but not which phase, or two phase results "
              "disagree. The guideline treats the phase as unknown, so advice that rests on "
              "a phase the patient may not be in is not shown.\n\n"
              f"{held}.\n\nTo get them, send the phase: {PHASE_CODES}.")
    return _card(hook_instance, "phase-undetermined",
                 "ALL guideline: treatment phase not determined; phase-specific advice withheld",
                 detail, "warning", docs_url)


def local_parameters_line(overrides: Iterable[ParameterOverride]) -> str | None:
    """The line each guideline card ends with when local parameters were used, or None."""
    found = list(overrides)
    if not found:
        return None
    unsafe = [o.name for o in found if o.unsafe]
    names = ", ".join(f"`{o.name}`" for o in found)
    return (f"**Local parameters:** made with {len(found)} value(s) that differ from the "
            f"shipped guideline ({names})"
            + (f"; OUTSIDE the safe range: {', '.join(f'`{n}`' for n in unsafe)}"
               if unsafe else "") + ". See the card on local parameters.")


def local_parameters_card(hook_instance: str, overrides: Iterable[ParameterOverride],
                          docs_url: str) -> dict[str, Any] | None:
    """The assessment used parameters that differ from the shipped guideline: each with the
    shipped and local value, and the reason of an unsafe override (a critical card), or
    None when it used the shipped values."""
    found = list(overrides)
    if not found:
        return None
    unsafe = sum(o.unsafe for o in found)
    summary = ("ALL guideline: local parameters in use"
               + (f"; {unsafe} OUTSIDE the safe range" if unsafe else
                  "; thresholds or doses differ from the guideline"))
    detail = ("The recommendations were made with parameter values that differ from the "
              "shipped guideline (an institution's overlay or settings). Check them before "
              "relying on thresholds and doses:\n\n"
              + "\n".join(f"- {o.text()}" for o in found))
    return _card(hook_instance, "local-parameters", summary, detail,
                 "critical" if unsafe else "warning", docs_url)

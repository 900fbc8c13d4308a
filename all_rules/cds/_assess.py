"""Mapping a checked record and assessing it: the part of a call that runs in a worker thread.

The mapping (``all_rules.fhir``) turns the record and, for order-sign, the draft orders into
the guideline's facts; its result is the ALL diagnosis gate. A record without an active ALL
diagnosis is not assessed; one the mapping cannot read gets a card that says so; a structure
that makes the mapping fail is refused (400). The audit line learns the outcome, the rules
that fired and the items withheld. The engine holds the GIL, so few threads do this at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread

from all_rules.engine._guideline import Guideline
from all_rules.fhir import (
    CodeMap,
    FhirMappingError,
    OrderCodes,
    facts_from_bundle,
    plan_from_orders,
    with_provenance,
)

from ._answer import answer, closed_gate, withheld_items
from ._calls import HookRequest, RefusedError
from ._cards import problem_card
from ._request import SEARCHES
from ._settings import ServiceSettings

__all__ = ["Assessor"]

_ASSESSING_THREADS = 4
"""Worker threads for mapping and assessment. The engine holds the GIL and one lock, so more
threads only add contention, which starves the event loop that reads and verifies requests."""
_MAPPING_FAULTS = (TypeError, ValueError, KeyError, AttributeError, IndexError)


class Assessor:
    """Maps and assesses checked requests with the app's guideline and code maps."""

    def __init__(self, settings: ServiceSettings, guideline: Guideline) -> None:
        self.settings = settings
        self.guideline = guideline
        self.code_map = CodeMap.load(extra=settings.code_map)
        self.order_codes = OrderCodes.load(extra=settings.code_map)
        self.threads = anyio.CapacityLimiter(_ASSESSING_THREADS)

    async def cards(self, hook_request: HookRequest, values: Mapping[str, Any],
                    audit: dict[str, Any]) -> list[dict[str, Any]]:
        """The cards for a checked request, computed in a worker thread."""
        return await anyio.to_thread.run_sync(self.assess, hook_request, values, audit,
                                              limiter=self.threads)

    @staticmethod
    def record(values: Mapping[str, Any]) -> dict[str, Any]:
        """The Bundle the mapping reads: the Patient and each search Bundle as a whole, so
        the mapping sees their unfollowed ``next`` links and OperationOutcomes."""
        entries: list[dict[str, Any]] = [{"resource": values["patient"]}]
        for key in SEARCHES:
            search = values.get(key)
            if isinstance(search, Mapping):  # checked: a Bundle of the patient's resources
                entries.append({"resource": {**search, "id": search.get("id") or key}})
        return {"resourceType": "Bundle", "type": "collection", "entry": entries}

    def draft_plan(self, hook_request: HookRequest
                   ) -> tuple[dict[str, Any], dict[str, str], list[str]]:
        """For order-sign: the plan the draft orders give (as extra facts, unless they have
        problems), its provenance, and the problems; for patient-view: nothing."""
        extra: dict[str, Any] = {}
        provenance_extra: dict[str, str] = {}
        problems: list[str] = []
        if hook_request.hook == "order-sign":
            draft = hook_request.context.get("draftOrders")
            try:
                plan, provenance_extra, _, problems = plan_from_orders(
                    draft if isinstance(draft, Mapping) else {}, self.order_codes)
            except _MAPPING_FAULTS as error:
                raise RefusedError(400, "invalid_request", "context.draftOrders could not be read "
                                   f"({type(error).__name__})") from None
            if not problems:
                extra["plan"] = plan
        return extra, provenance_extra, problems

    def assess(self, hook_request: HookRequest, values: Mapping[str, Any],
               audit: dict[str, Any]) -> list[dict[str, Any]]:
        """The cards for a checked request (runs in a worker thread)."""
        hook_instance = str(hook_request.hookInstance)
        only_alerts = hook_request.hook == "order-sign"
        docs = self.settings.docs_url
        extra, provenance_extra, problems = self.draft_plan(hook_request)
        try:
            mapped = facts_from_bundle(self.record(values),
                                       assessment_date=dt.datetime.now(dt.UTC).date(),
                                       code_map=self.code_map, extra=extra)
        except FhirMappingError as error:
            if error.has_all_diagnosis is False and not error.incomplete:
                audit["outcome"] = "no_active_all_diagnosis"
                return closed_gate(hook_instance, only_alerts, error.rejected_diagnoses,
                                   None, False, docs)
            audit["outcome"] = "unmappable"
            return [problem_card(hook_instance, error.problems, docs)]
        except _MAPPING_FAULTS as error:
            raise RefusedError(400, "invalid_request", "the prefetch could not be read "
                               f"({type(error).__name__})") from None
        if not mapped.has_all_diagnosis:
            audit["outcome"] = "no_active_all_diagnosis"
            return closed_gate(hook_instance, only_alerts, mapped.rejected_diagnoses,
                               mapped, bool(problems or extra.get("plan")), docs)
        if problems:
            audit["outcome"] = "unmappable"
            return [problem_card(hook_instance, problems, docs)]
        assessment = self.guideline.assess(mapped.facts)
        assessment = with_provenance(assessment, {**mapped.provenance, **provenance_extra})
        audit.update(outcome="cards", fired=assessment.ids())
        withheld = withheld_items(assessment, mapped, only_alerts)
        audit.update(withheld=withheld, incomplete=mapped.incomplete)
        return answer(assessment, mapped, hook_instance, only_alerts, withheld, docs)

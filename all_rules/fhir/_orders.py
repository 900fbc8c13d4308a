"""Draft orders (a CDS Hooks ``order-sign`` request) → the ``plan`` of the facts.

MedicationRequests of vincristine, daunorubicin and pegaspargase become ``plan.doses`` (one
per request, dose and UCUM unit from the first ``doseAndRate``); a TKI order sets
``plan.tki``; an order by the intrathecal route sets ``plan.intrathecal_in_induction``;
ServiceRequests for cranial irradiation and allogeneic HSCT set those flags. Only current
orders (draft, active, on-hold) are the plan; the others are reported. Codes come from
the ``orders`` section of the code map. What is not recognised is reported, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import yaml

from ._code_map import CODE_MAP, Unmapped

CURRENT = frozenset({"draft", "active", "on-hold"})
"""Order statuses that are the current plan; completed, stopped, cancelled, revoked,
entered-in-error and unknown orders are not."""


def _key(coding: Mapping[str, Any]) -> tuple[str, str]:
    return (str(coding.get("system", "")), str(coding.get("code", "")))


@attrs.frozen
class OrderCodes:
    medications: Mapping[tuple[str, str], str]
    routes: frozenset[tuple[str, str]]
    procedures: Mapping[tuple[str, str], str]
    dose_units: Mapping[str, str]

    @classmethod
    def load(cls, extra: str | None = None) -> OrderCodes:
        documents = [yaml.safe_load(CODE_MAP.read_text(encoding="utf-8"))]
        if extra is not None:
            with open(extra, encoding="utf-8") as handle:
                documents.append(yaml.safe_load(handle) or {})
        medications: dict[tuple[str, str], str] = {}
        routes: set[tuple[str, str]] = set()
        procedures: dict[tuple[str, str], str] = {}
        units: dict[str, str] = {}
        for document in documents:
            orders = document.get("orders") or {}
            for name, codes in (orders.get("medications") or {}).items():
                medications.update({_key(c): name for c in codes or []})
            routes.update(_key(c) for c in orders.get("intrathecal_routes") or [])
            for name, codes in (orders.get("procedures") or {}).items():
                procedures.update({_key(c): name for c in codes or []})
            units.update(orders.get("dose_units") or {})
        return cls(medications, frozenset(routes), procedures, units)


_DEFAULT: list[OrderCodes] = []


def default_order_codes() -> OrderCodes:
    """The shipped order codes, read once."""
    if not _DEFAULT:
        _DEFAULT.append(OrderCodes.load())
    return _DEFAULT[0]


def _codings(concept: Any) -> list[Mapping[str, Any]]:
    if not isinstance(concept, Mapping):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, Mapping)]


def plan_from_orders(orders: Mapping[str, Any], codes: OrderCodes
                     ) -> tuple[dict[str, Any], dict[str, str], list[Unmapped], list[str]]:
    """(plan, provenance by plan field, unmapped, problems) for a Bundle of draft orders."""
    plan: dict[str, Any] = {}
    sources: dict[str, str] = {}
    unmapped: list[Unmapped] = []
    problems: list[str] = []
    doses: list[dict[str, Any]] = []
    for entry in orders.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(resource, Mapping):
            problems.append("draftOrders: an entry has no resource")
            continue
        ref = f"{resource.get('resourceType')}/{resource.get('id', '?')}"
        kind = resource.get("resourceType")
        status = resource.get("status")
        if kind in ("MedicationRequest", "ServiceRequest") and status not in CURRENT:
            unmapped.append(Unmapped(ref, f"status {status!r}: not the current plan", "plan"))
            continue
        if kind == "MedicationRequest":
            _medication(resource, ref, codes, plan, sources, doses, unmapped, problems)
        elif kind == "ServiceRequest":
            names = {codes.procedures.get(_key(c)) for c in _codings(resource.get("code"))}
            names.discard(None)
            if not names:
                unmapped.append(Unmapped(ref, "no procedure code in the code map"))
            for name in sorted(n for n in names if n):
                plan[name] = True
                sources[f"plan.{name}"] = ref
        else:
            unmapped.append(Unmapped(ref, "not a MedicationRequest or ServiceRequest"))
    if doses:
        plan["doses"] = doses
    return plan, sources, unmapped, problems


def _medication(resource: Mapping[str, Any], ref: str, codes: OrderCodes,
                plan: dict[str, Any], sources: dict[str, str], doses: list[dict[str, Any]],
                unmapped: list[Unmapped], problems: list[str]) -> None:
    drug = next((codes.medications[_key(c)] for c in
                 _codings(resource.get("medicationCodeableConcept"))
                 if _key(c) in codes.medications), None)
    dosage = (resource.get("dosageInstruction") or [{}])[0]
    route = {_key(c) for c in _codings(dosage.get("route"))}
    if route & codes.routes:
        plan["intrathecal_in_induction"] = True
        sources["plan.intrathecal_in_induction"] = ref
    if drug is None:
        if not route & codes.routes:
            unmapped.append(Unmapped(ref, "no medication code in the code map"))
        return
    if drug == "tki":
        plan["tki"] = True
        sources["plan.tki"] = ref
        return
    if route & codes.routes:
        return  # intrathecal administration: not a systemic dose to audit
    rate = (dosage.get("doseAndRate") or [{}])[0]
    quantity = rate.get("doseQuantity") if isinstance(rate, Mapping) else None
    if not isinstance(quantity, Mapping) or quantity.get("value") is None:
        problems.append(f"{ref}: {drug} order has no doseQuantity")
        return
    unit = codes.dose_units.get(str(quantity.get("code") or quantity.get("unit") or ""))
    if unit is None:
        problems.append(f"{ref}: dose unit {quantity.get('code') or quantity.get('unit')!r} "
                        f"cannot be used for {drug} (accepted: "
                        f"{', '.join(sorted(codes.dose_units))})")
        return
    doses.append({"drug": drug, "dose": float(quantity["value"]), "unit": unit})
    for fact in _DOSE_FACTS[drug]:
        sources.setdefault(fact, ref)


_DOSE_FACTS = {
    "vincristine": ("plan.vincristine_max_mg", "plan.vincristine_max_mg_per_m2"),
    "daunorubicin": ("plan.daunorubicin_min_mg_per_m2", "plan.daunorubicin_max_mg_per_m2"),
    "pegaspargase": ("plan.pegaspargase_min_iu_per_m2", "plan.pegaspargase_max_iu_per_m2"),
}

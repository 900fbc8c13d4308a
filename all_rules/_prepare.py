"""Turn validated patient facts into what the engine matches on.

Python's part before the engine: drop unknowns (the engine must see *absence*, never a
placeholder it could compare), settle body surface area, and aggregate planned doses into
per-drug quantities in both absolute and per-m² units. No guideline condition is decided here.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import attrs

from ._factspec import FACTS
from .facts import Dose, DoseUnit, Drug, PatientFacts, Plan

#: Derived per-m² doses are rounded to this many decimals, so that a dose entered in mg and
#: converted with the BSA is not flagged for a last-digit floating-point excess.
DOSE_DECIMALS = 3


@attrs.frozen
class PreparedFacts:
    """One patient, ready for the engine and for the renderer."""

    patient_id: str | None
    values: dict[str, Any]
    """Every testable fact by public name; ``None`` where unknown."""
    bsa_source: str | None
    """``"given"``, ``"mosteller"`` or ``None`` when no BSA can be had."""



def mosteller_bsa_m2(height_cm: float, weight_kg: float) -> float:
    """Body surface area by Mosteller: sqrt(height [cm] × weight [kg] / 3600), in m²."""
    return math.sqrt(height_cm * weight_kg / 3600.0)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return None if value.value == "unknown" else value.value
    return value


def _per_m2_and_absolute(dose: Dose, bsa: float | None) -> tuple[float | None, float | None]:
    if dose.unit in (DoseUnit.MG_PER_M2, DoseUnit.IU_PER_M2):
        absolute = None if bsa is None else dose.dose * bsa
        return dose.dose, absolute
    per_m2 = None if bsa is None else dose.dose / bsa
    return per_m2, dose.dose


def _dose_aggregates(doses: tuple[Dose, ...], bsa: float | None) -> dict[str, float | None]:
    per_m2: dict[Drug, list[float]] = {drug: [] for drug in Drug}
    absolute: dict[Drug, list[float]] = {drug: [] for drug in Drug}
    unknown: dict[Drug, bool] = dict.fromkeys(Drug, False)
    for dose in doses:
        dose_per_m2, dose_absolute = _per_m2_and_absolute(dose, bsa)
        if dose_per_m2 is None or dose_absolute is None:
            unknown[dose.drug] = True
        if dose_per_m2 is not None:
            per_m2[dose.drug].append(round(dose_per_m2, DOSE_DECIMALS))
        if dose_absolute is not None:
            absolute[dose.drug].append(round(dose_absolute, DOSE_DECIMALS))

    def pick(values: list[float], how: Any) -> float | None:
        return how(values) if values else None

    # An aggregate over doses some of which could not be converted is still a true bound
    # for the ones that could; the BSA data item tells the reader the rest is unknown.
    return {
        "plan.vincristine_max_mg": pick(absolute[Drug.VINCRISTINE], max),
        "plan.vincristine_max_mg_per_m2": pick(per_m2[Drug.VINCRISTINE], max),
        "plan.daunorubicin_min_mg_per_m2": pick(per_m2[Drug.DAUNORUBICIN], min),
        "plan.daunorubicin_max_mg_per_m2": pick(per_m2[Drug.DAUNORUBICIN], max),
        "plan.pegaspargase_min_iu_per_m2": pick(per_m2[Drug.PEGASPARGASE], min),
        "plan.pegaspargase_max_iu_per_m2": pick(per_m2[Drug.PEGASPARGASE], max),
    }


_FIELDS = tuple(name for name in PatientFacts.model_fields if name not in ("patient_id", "plan"))
_PLAN_FIELDS = tuple(name for name in Plan.model_fields if name != "doses")
_NO_PLAN = {name: None for name in FACTS if name.startswith("plan.")} | {"plan.given": False}


def prepare(facts: PatientFacts) -> PreparedFacts:
    """Settle derived quantities and unknowns for one validated patient."""
    data = facts.__dict__
    values: dict[str, Any] = {}
    for name in _FIELDS:
        value = data[name]
        if isinstance(value, Enum):
            value = None if value.value == "unknown" else value.value
        elif type(value) is float:
            value += 0.0  # -0.0 is 0.0 (they hash alike but print differently)
        values[name] = value

    bsa_source: str | None = None
    if facts.bsa_m2 is not None:
        bsa_source = "given"
    elif facts.height_cm is not None and facts.weight_kg is not None:
        values["bsa_m2"] = round(mosteller_bsa_m2(facts.height_cm, facts.weight_kg), 4)
        bsa_source = "mosteller"
    bsa = values["bsa_m2"]

    plan = facts.plan
    if plan is None:
        values.update(_NO_PLAN)
    else:
        values["plan.given"] = True
        for name in _PLAN_FIELDS:
            values["plan." + name] = _plain(getattr(plan, name))
        values["plan.has_doses"] = bool(plan.doses)
        values.update(_dose_aggregates(plan.doses, bsa))
    return PreparedFacts(patient_id=facts.patient_id, values=values, bsa_source=bsa_source)

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

from all_rules import facts as _facts
from all_rules.facts import Dose, DoseUnit, Drug, PatientFacts, Plan
from all_rules.ruleset._factspec import FACTS

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
    """A fact's value as the engine and the output hold it: enums as plain strings,
    ``unknown`` as None, -0.0 as 0.0 (they hash alike but print differently)."""
    kind = type(value)
    if kind is float:
        return value + 0.0
    if kind in _ENUMS:
        # ``_value_``, not ``.value``: the latter is a descriptor call on every access.
        return None if value == "unknown" else value._value_
    return value


def _per_m2_and_absolute(dose: Dose, bsa: float | None,
                         weight: float | None) -> tuple[float | None, ...]:
    """(per m², absolute, per kg); a quantity is None where BSA or weight is unknown."""
    if dose.unit in (DoseUnit.MG_PER_M2, DoseUnit.IU_PER_M2):
        per_m2: float | None = dose.dose
        absolute = None if bsa is None else dose.dose * bsa
    else:
        per_m2, absolute = (None if bsa is None else dose.dose / bsa), dose.dose
    per_kg = None if absolute is None or weight is None else absolute / weight
    return per_m2, absolute, per_kg


#: (derived fact, drug, which quantity, how the doses combine)
_AGGREGATES = (
    ("plan.vincristine_max_mg", Drug.VINCRISTINE.value, "absolute", max),
    ("plan.vincristine_max_mg_per_m2", Drug.VINCRISTINE.value, "per_m2", max),
    ("plan.daunorubicin_min_mg_per_m2", Drug.DAUNORUBICIN.value, "per_m2", min),
    ("plan.daunorubicin_max_mg_per_m2", Drug.DAUNORUBICIN.value, "per_m2", max),
    ("plan.pegaspargase_min_iu_per_m2", Drug.PEGASPARGASE.value, "per_m2", min),
    ("plan.pegaspargase_max_iu_per_m2", Drug.PEGASPARGASE.value, "per_m2", max),
    ("plan.pegaspargase_min_iu_per_kg", Drug.PEGASPARGASE.value, "per_kg", min),
    ("plan.pegaspargase_max_iu_per_kg", Drug.PEGASPARGASE.value, "per_kg", max),
)


def _dose_aggregates(doses: tuple[Dose, ...], bsa: float | None,
                     weight: float | None) -> dict[str, float | None]:
    """Per drug, the largest (or smallest) planned dose in absolute and per-m² units.

    An aggregate over doses some of which could not be converted (no BSA) is still a true
    bound for the ones that could; the BSA data item tells the reader the rest is unknown."""
    found: dict[tuple[str, str], list[float]] = {}
    for dose in doses:
        drug = dose.drug._value_
        for quantity, amount in zip(("per_m2", "absolute", "per_kg"),
                                    _per_m2_and_absolute(dose, bsa, weight), strict=True):
            if amount is not None:
                found.setdefault((drug, quantity), []).append(round(amount, DOSE_DECIMALS))
    return {name: how(found[drug, quantity]) if (drug, quantity) in found else None
            for name, drug, quantity, how in _AGGREGATES}


_FIELDS = tuple(name for name in PatientFacts.model_fields if name not in ("patient_id", "plan"))
_ENUMS = frozenset(cls for cls in vars(_facts).values() if isinstance(cls, type)
                   and issubclass(cls, Enum) and cls.__module__ == _facts.__name__)
_PLAN_FIELDS = tuple(name for name in Plan.model_fields if name != "doses")
_NO_PLAN = {name: None for name in FACTS if name.startswith("plan.")} | {"plan.given": False}


#: CNS involvement at relapse where the site alone decides it; a `combined` relapse does not
#: say whether the CNS was involved, so it stays unknown unless `relapse_cns_involved` is given.
_CNS_INVOLVED_BY_SITE = {"isolated_cns": True, "marrow": False, "isolated_testicular": False}


#: Phases in which the current age stands in for an unknown age at diagnosis.
_AT_DIAGNOSIS = frozenset(("diagnosis", "induction"))


def _settle_inconsistencies(values: dict[str, Any]) -> None:
    """Flag facts that contradict each other (``inconsistent.*``, each reported by a
    ``data.inconsistent.*`` rule) and make every fact of a contradiction unknown, so that no
    rule decides on either side of it. Which facts contradict is listed in the FactSpecs of
    ``inconsistent.*`` (docs/concepts.md)."""
    cr, weeks = values["complete_remission"], values["weeks_to_complete_remission"]
    relapses, remission = values["relapse_count"], values["remission_number"]
    age, at_diagnosis = values["age_years"], values["age_at_diagnosis_years"]
    flags = {
        "inconsistent.remission": cr is False and weeks is not None,
        "inconsistent.relapse_phase": values["phase"] == "relapsed" and relapses == 0,
        "inconsistent.remission_number": relapses is not None and remission is not None
        and not (remission == relapses + 1 if values["phase"] in _IN_REMISSION
                 else relapses <= remission <= relapses + 1),
        "inconsistent.relapse_site": relapses == 0 and (
            values["relapse_site"] is not None or values["relapse_cns_involved"] is not None),
        "inconsistent.age_at_diagnosis": at_diagnosis is not None and at_diagnosis > age,
    }
    values.update(flags)
    if flags["inconsistent.remission"]:
        values["complete_remission"] = values["weeks_to_complete_remission"] = None
    if flags["inconsistent.relapse_phase"]:
        values["relapse_count"] = values["phase"] = None
    if flags["inconsistent.relapse_site"]:
        values["relapse_count"] = None
    if flags["inconsistent.remission_number"]:
        values["relapse_count"] = values["remission_number"] = None
    _settle_diagnosis_age(values, flags["inconsistent.age_at_diagnosis"])
    values["weeks_to_complete_remission_completed"] = _completed_weeks(
        values["weeks_to_complete_remission"])


def _settle_diagnosis_age(values: dict[str, Any], inconsistent: bool) -> None:
    """The age at diagnosis (``diagnosis_age_years``: exact, or None) and its upper bound
    (``diagnosis_age_at_most_years``: the exact age, else the current age, which it cannot
    exceed). The bound may only decide "under X" tests (docs/clinical-policy.md)."""
    age, at_diagnosis = values["age_years"], values["age_at_diagnosis_years"]
    if inconsistent:
        values["age_at_diagnosis_years"] = None
        values["diagnosis_age_years"] = values["diagnosis_age_at_most_years"] = None
        return
    if at_diagnosis is not None:
        exact = at_diagnosis
    else:
        exact = age if values["phase"] in _AT_DIAGNOSIS else None
    values["diagnosis_age_years"] = exact
    values["diagnosis_age_at_most_years"] = age if exact is None else exact


def _completed_weeks(weeks: float | None) -> int | None:
    """Time to complete remission in completed weeks (day 33 is 4 completed weeks)."""
    return None if weeks is None else math.floor(weeks + 1e-9)


#: The MRD facts from the newest time point to the oldest (``mrd_latest_percent``).
_MRD_NEWEST_FIRST = ("mrd_current_percent", "mrd_consolidation_percent",
                     "mrd_end_of_induction_percent")

#: Phases that are given in remission: there the remission number is the current remission.
_IN_REMISSION = frozenset(("consolidation", "maintenance"))


def _flag_new_diagnosis_with_relapse(values: dict[str, Any]) -> None:
    """Phase ``diagnosis`` is a new (initial) diagnosis; a relapse (``relapse_count`` ≥ 1), a
    remission number of 2 or more, or (with no relapse count) a relapse site or CNS
    involvement at relapse contradicts it. No side is believed: the phase, the number of
    relapses and the remission number become unknown (``inconsistent.phase``). A relapse site
    with a relapse count of 0 is ``inconsistent.relapse_site`` instead."""
    relapses, remission = values["relapse_count"], values["remission_number"]
    relapse_facts = values["relapse_site"] is not None or values["relapse_cns_involved"] is not None
    flag = values["phase"] == "diagnosis" and (
        (relapses is not None and relapses >= 1) or (remission is not None and remission >= 2)
        or (relapses is None and relapse_facts))
    values["inconsistent.phase"] = flag
    if flag:
        values["phase"] = values["relapse_count"] = values["remission_number"] = None


def _settle_line_of_therapy(values: dict[str, Any]) -> None:
    """Derive the line of therapy from the relapse count and the remission number, not from
    the phase label (docs/concepts.md, "Line of therapy").

    ``relapse_line`` is the number of relapses so far: ``relapse_count``; when it is unknown,
    0 in the diagnosis phase (a new diagnosis), ``remission_number`` − 1 in consolidation or
    maintenance (given in remission, so the remission number is the current one), 1 in the
    relapsed phase with remission number 1; otherwise unknown. A count made unknown by a
    contradiction is not re-derived, and no count of 0 is derived where a relapse site or CNS
    involvement at relapse is recorded. ``line_of_therapy`` is ``first`` with no relapse,
    ``relapse`` after one (also known from a remission number of 2 or more, or the relapsed
    phase); ``current_remission_number`` is the remission the patient is in now, known only
    where the count says it (``remission_number`` = relapses + 1)."""
    relapses, remission, phase = (values["relapse_count"], values["remission_number"],
                                  values["phase"])
    contradicted = (values["inconsistent.relapse_phase"] or values["inconsistent.relapse_site"]
                    or values["inconsistent.remission_number"])
    if relapses is None and not contradicted:
        if phase == "diagnosis":
            relapses = 0
        elif remission is not None and phase in _IN_REMISSION:
            relapses = remission - 1
        elif remission == 1 and phase == "relapsed":
            relapses = 1
        if relapses == 0 and (values["relapse_site"] is not None
                              or values["relapse_cns_involved"] is not None):
            relapses = None  # a recorded relapse site says there was a relapse
    line = None if relapses is None else "first" if relapses == 0 else "relapse"
    if line is None and (phase == "relapsed" or (remission is not None and remission >= 2)):
        line = "relapse"
    values["relapse_line"] = relapses
    values["line_of_therapy"] = line
    current = (remission if remission is not None and relapses is not None
               and remission == relapses + 1 else None)
    if current is None and remission is None and relapses is not None \
            and phase in _IN_REMISSION and values["complete_remission"] is not False:
        current = relapses + 1  # given in remission: the remission after the last relapse
    values["current_remission_number"] = current
    values["mrd_latest_percent"] = next(
        (values[name] for name in _MRD_NEWEST_FIRST if values[name] is not None), None)


def prepare(facts: PatientFacts) -> PreparedFacts:
    """Settle derived quantities and unknowns for one validated patient."""
    data = facts.__dict__
    values = {name: _plain(data[name]) for name in _FIELDS}
    _flag_new_diagnosis_with_relapse(values)
    _settle_inconsistencies(values)
    _settle_line_of_therapy(values)
    if values["relapse_cns_involved"] is None:
        values["relapse_cns_involved"] = _CNS_INVOLVED_BY_SITE.get(values["relapse_site"])

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
        values.update(_dose_aggregates(plan.doses, bsa, facts.weight_kg))
    return PreparedFacts(patient_id=facts.patient_id, values=values, bsa_source=bsa_source)

"""Hypothesis strategies for valid patient facts, covering every field and unknowns."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from all_rules.facts import (
    CnsStatus,
    Drug,
    Lineage,
    Phase,
    PhStatus,
    Regimen,
    RelapseSite,
    ResourceLevel,
    Sex,
    Steroid,
)

_UNIT_FOR = {Drug.VINCRISTINE: (("mg", 0.1, 3.0), ("mg/m2", 0.5, 2.0)),
             Drug.DAUNORUBICIN: (("mg", 10.0, 120.0), ("mg/m2", 15.0, 40.0)),
             Drug.PEGASPARGASE: (("IU", 500.0, 8000.0), ("IU/m2", 1500.0, 3500.0))}


#: Yes/no facts added for clinical coverage (issue 18): drawn independently, true, false or
#: unknown; the facts model has no rule between them (any combination is a valid patient).
_NEW_FLAGS = ("testicular_involvement_end_of_induction", "hypodiploidy", "high_hyperdiploidy",
              "etv6_runx1", "iamp21", "tcf3_hlf", "ph_like", "abl1_t315i", "down_syndrome",
              "prior_allogeneic_hsct", "prior_cranial_irradiation")


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def _values(enum: Any) -> st.SearchStrategy[str]:
    return st.sampled_from([member.value for member in enum])


def _number(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)


@st.composite
def doses(draw: st.DrawFn) -> dict[str, Any]:
    drug = draw(st.sampled_from(list(Drug)))
    unit, low, high = draw(st.sampled_from(_UNIT_FOR[drug]))
    return {"drug": drug.value, "dose": draw(_number(low, high)), "unit": unit}


@st.composite
def plans(draw: st.DrawFn) -> dict[str, Any]:
    flags = ("intrathecal_in_induction", "cranial_irradiation", "mrd_monitoring", "tki",
             "allogeneic_hsct", "systemic_therapy")
    plan: dict[str, Any] = {name: draw(maybe(st.booleans())) for name in flags}
    plan["steroid"] = draw(maybe(_values(Steroid)))
    plan["regimen"] = draw(maybe(_values(Regimen)))
    plan["maintenance_years"] = draw(maybe(_number(0, 4)))
    plan["doses"] = draw(st.lists(doses(), max_size=4))
    return plan


@st.composite
def patients(draw: st.DrawFn) -> dict[str, Any]:
    """A valid patient; any field but age may be unknown (absent, null or "unknown")."""
    facts: dict[str, Any] = {
        "patient_id": draw(maybe(st.text(min_size=1, max_size=12))),
        "age_years": draw(st.one_of(_number(0, 120), st.sampled_from(
            [0.5, 1.0, 9.9, 10.0, 17.9, 18.0, 25.0, 35.0, 64.9, 65.0]))),
        "sex": draw(maybe(_values(Sex))),
        "height_cm": draw(maybe(_number(40, 200))),
        "weight_kg": draw(maybe(_number(3, 150))),
        "bsa_m2": draw(maybe(_number(0.2, 2.6))),
        "lineage": draw(maybe(_values(Lineage))),
        "ph_status": draw(maybe(_values(PhStatus))),
        "wbc_at_diagnosis_10e9_per_l": draw(maybe(st.one_of(
            _number(0, 2000), st.sampled_from([30.0, 50.0, 100.0])))),
        "cns_status": draw(maybe(_values(CnsStatus))),
        "testicular_involvement": draw(maybe(st.booleans())),
        "kmt2a_rearranged": draw(maybe(st.booleans())),
        **{name: draw(maybe(st.booleans())) for name in _NEW_FLAGS},
        "cd19_positive": draw(maybe(st.booleans())),
        "cd22_positive": draw(maybe(st.booleans())),
        "phase": draw(maybe(_values(Phase))),
        "complete_remission": draw(maybe(st.booleans())),
        "weeks_to_complete_remission": draw(maybe(_number(0, 20))),
        "mrd_end_of_induction_percent": draw(maybe(st.one_of(
            _number(0, 100), st.sampled_from([0.0, 0.01, 0.0099])))),
        "mrd_consolidation_percent": draw(maybe(_number(0, 100))),
        "relapse_count": draw(maybe(st.integers(0, 4))),
        "relapse_site": draw(maybe(_values(RelapseSite))),
        "relapse_cns_involved": draw(maybe(st.booleans())),
        "months_from_diagnosis_to_relapse": draw(maybe(st.one_of(
            _number(0, 600), st.sampled_from([17.9, 18.0, 35.9, 36.0])))),
        "remission_number": draw(maybe(st.integers(1, 4))),
        "mrd_current_percent": draw(maybe(_number(0, 100))),
        "courses_since_remission": draw(maybe(st.integers(0, 5))),
        "transplant_eligible": draw(maybe(st.booleans())),
        "substantial_comorbidities": draw(maybe(st.booleans())),
        "tki_available": draw(maybe(st.booleans())),
        "resource_level": draw(maybe(_values(ResourceLevel))),
        "specialized_center": draw(maybe(st.booleans())),
        "plan": draw(maybe(plans())),
    }
    # `relapse_cns_involved` may not contradict a site that decides it (isolated_cns: yes;
    # marrow, isolated_testicular: no); such input is refused, not a valid patient.
    site = facts["relapse_site"]
    if facts["relapse_cns_involved"] is not None and site in ("isolated_cns", "marrow",
                                                              "isolated_testicular"):
        facts["relapse_cns_involved"] = site == "isolated_cns"
    # Age at diagnosis: mostly at most the current age, sometimes above it (inconsistent).
    facts["age_at_diagnosis_years"] = draw(maybe(st.one_of(
        _number(0, facts["age_years"]), _number(0, 120))))
    # Drop some fields entirely: absent and null must behave alike.
    drop = draw(st.sets(st.sampled_from(sorted(k for k in facts if k != "age_years"))))
    return {k: v for k, v in facts.items() if k not in drop}

"""The facts a ruleset may test: names, types, units and labels.

Built from the pydantic models (input facts) plus the few quantities Python derives before
the engine sees a patient (body surface area, dose aggregates). The ruleset checker uses it
to refuse unknown names and ill-typed tests; the renderer uses labels and units.
"""

from __future__ import annotations

import types
import typing
from enum import Enum
from typing import Any, Literal

import attrs
from pydantic import BaseModel

from all_rules.facts import PatientFacts, Plan

FactType = Literal["number", "integer", "bool", "enum"]


@attrs.frozen
class FactSpec:
    """What one testable fact is."""

    name: str
    type: FactType
    label: str
    unit: str = ""
    values: tuple[str, ...] = ()
    derived: bool = False
    description: str = ""

    @property
    def key(self) -> str:
        """The field name inside the engine's fact (no dots: durable reads them as paths)."""
        return self.name.replace(".", "__")


_LABELS: dict[str, tuple[str, str]] = {
    "age_years": ("age", "years"),
    "age_at_diagnosis_years": ("age at diagnosis (as given)", "years"),
    "diagnosis_age_years": ("age at diagnosis", "years"),
    "height_cm": ("height", "cm"),
    "weight_kg": ("weight", "kg"),
    "bsa_m2": ("body surface area", "m²"),
    "wbc_at_diagnosis_10e9_per_l": ("WBC at diagnosis", "×10⁹/L"),
    "weeks_to_complete_remission": ("time to complete remission", "weeks"),
    "mrd_end_of_induction_percent": ("end-of-induction MRD", "%"),
    "mrd_consolidation_percent": ("consolidation MRD", "%"),
    "mrd_current_percent": ("current MRD", "%"),
    "relapse_count": ("number of relapses", ""),
    "remission_number": ("remission number", ""),
    "courses_since_remission": ("courses given in this remission", ""),
    "relapse_cns_involved": ("CNS involved at relapse", ""),
    "months_from_diagnosis_to_relapse": ("time from diagnosis to relapse", "months"),
    "plan.maintenance_years": ("planned maintenance", "years"),
    "cns_status": ("CNS status", ""),
    "ph_status": ("Ph (BCR::ABL1) status", ""),
    "kmt2a_rearranged": ("KMT2A rearranged", ""),
    "hypodiploidy": ("hypodiploidy (< 44 chromosomes)", ""),
    "high_hyperdiploidy": ("high hyperdiploidy", ""),
    "etv6_runx1": ("ETV6::RUNX1", ""),
    "iamp21": ("iAMP21", ""),
    "tcf3_hlf": ("TCF3::HLF", ""),
    "ph_like": ("Ph-like (BCR::ABL1-like)", ""),
    "abl1_t315i": ("ABL1 T315I mutation", ""),
    "down_syndrome": ("Down syndrome", ""),
    "testicular_involvement_end_of_induction": ("testicular involvement at end of induction", ""),
    "prior_allogeneic_hsct": ("prior allogeneic HSCT", ""),
    "prior_cranial_irradiation": ("prior cranial irradiation", ""),
    "cd19_positive": ("CD19 positive", ""),
    "cd22_positive": ("CD22 positive", ""),
    "tki_available": ("TKI available", ""),
    "plan.tki": ("TKI planned", ""),
}

_DERIVED: tuple[FactSpec, ...] = (
    FactSpec("diagnosis_age_years", "number", "age at diagnosis", "years", derived=True,
             description="`age_at_diagnosis_years`; when absent, `age_years` in the diagnosis "
             "and induction phases only; unknown later and when it contradicts `age_years` "
             "(the risk features defined at diagnosis read it)"),
    FactSpec("diagnosis_age_at_most_years", "number", "age at diagnosis (upper bound)", "years",
             derived=True, description="`diagnosis_age_years` when known; otherwise "
             "`age_years` (the age at diagnosis cannot exceed the current age), in every phase; "
             "unknown when `age_at_diagnosis_years` contradicts `age_years`. An upper bound: "
             "rules test it only with `lt`/`lte` (\"diagnosed under X\"), never to decide that "
             "the patient was diagnosed at X or older"),
    FactSpec("weeks_to_complete_remission_completed", "integer",
             "time to complete remission in completed weeks", "weeks", derived=True,
             description="`weeks_to_complete_remission` rounded down to whole weeks (a remission "
             "at the day-33 end-of-induction marrow, 4.7 weeks, is 4 completed weeks); unknown "
             "when it is"),
    FactSpec("inconsistent.remission", "bool", "remission facts contradict each other",
             derived=True, description="`complete_remission` false with "
             "`weeks_to_complete_remission` given; both are then unknown"),
    FactSpec("inconsistent.relapse_phase", "bool", "phase relapsed with no relapse",
             derived=True, description="phase `relapsed` with `relapse_count` 0; the phase and "
             "`relapse_count` are then unknown (no side is believed)"),
    FactSpec("inconsistent.remission_number", "bool",
             "remission number contradicts the number of relapses", derived=True,
             description="`remission_number` neither `relapse_count` nor `relapse_count` + 1 "
             "(in consolidation or maintenance, given in remission: not `relapse_count` + 1); "
             "both are then unknown"),
    FactSpec("inconsistent.relapse_site", "bool", "a relapse site with no relapse",
             derived=True, description="`relapse_site` or `relapse_cns_involved` given with "
             "`relapse_count` 0; `relapse_count` is then unknown"),
    FactSpec("inconsistent.age_at_diagnosis", "bool", "age at diagnosis above current age",
             derived=True, description="`age_at_diagnosis_years` above `age_years`; the age at "
             "diagnosis is then unknown (no stand-in)"),
    FactSpec("inconsistent.phase", "bool", "phase diagnosis with a relapse recorded",
             derived=True, description="phase `diagnosis` (a new diagnosis) with `relapse_count` "
             "1 or more, `remission_number` 2 or more, or (no `relapse_count`) a "
             "`relapse_site` or `relapse_cns_involved`; the phase, `relapse_count` and "
             "`remission_number` are then unknown"),
    FactSpec("relapse_line", "integer", "relapses so far", derived=True,
             description="`relapse_count`; when it is unknown: 0 in the diagnosis phase (a new "
             "diagnosis), `remission_number` − 1 in consolidation or maintenance (given in "
             "remission), 1 in the relapsed phase with `remission_number` 1; otherwise unknown "
             "(never re-derived when a contradiction made `relapse_count` unknown, and never 0 "
             "derived with a `relapse_site` or `relapse_cns_involved` recorded)"),
    FactSpec("line_of_therapy", "enum", "line of therapy", values=("first", "relapse"),
             derived=True, description="`first` when `relapse_line` is 0; `relapse` when it is "
             "1 or more, or with `remission_number` 2 or more, or in the relapsed phase; "
             "otherwise unknown. The first-line items (consolidation, HSCT in first remission) "
             "need `first`; the relapse pathway reads `relapse`, in any phase"),
    FactSpec("current_remission_number", "integer", "current remission", derived=True,
             description="the remission the patient is in now: `remission_number` when it is "
             "`relapse_line` + 1; unknown otherwise (e.g. a remission number that may be the "
             "latest remission before a further relapse); in consolidation or maintenance "
             "(given in remission) with no remission number, `relapse_line` + 1 unless "
             "`complete_remission` is false"),
    FactSpec("mrd_latest_percent", "number", "latest MRD", "%", derived=True,
             description="the newest MRD recorded: `mrd_current_percent`, else "
             "`mrd_consolidation_percent`, else `mrd_end_of_induction_percent`; unknown when "
             "none is. The first-line MRD decisions (intensify, standard consolidation, HSCT "
             "in first remission) read it, so a positive current MRD is never ignored"),
    FactSpec("plan.given", "bool", "a treatment plan was given", derived=True,
             description="true when `plan` is present"),
    FactSpec("plan.has_doses", "bool", "the plan lists doses", derived=True,
             description="true when `plan.doses` has at least one entry"),
    FactSpec("plan.vincristine_max_mg", "number", "largest planned vincristine dose", "mg",
             derived=True, description="largest single dose, converted with the BSA if in mg/m2"),
    FactSpec("plan.vincristine_max_mg_per_m2", "number", "largest planned vincristine dose",
             "mg/m²", derived=True, description="largest single dose per m² of BSA"),
    FactSpec("plan.daunorubicin_min_mg_per_m2", "number", "smallest planned daunorubicin dose",
             "mg/m²", derived=True, description="smallest single dose per m² of BSA"),
    FactSpec("plan.daunorubicin_max_mg_per_m2", "number", "largest planned daunorubicin dose",
             "mg/m²", derived=True, description="largest single dose per m² of BSA"),
    FactSpec("plan.pegaspargase_min_iu_per_m2", "number", "smallest planned pegaspargase dose",
             "IU/m²", derived=True, description="smallest single dose per m² of BSA"),
    FactSpec("plan.pegaspargase_min_iu_per_kg", "number", "smallest planned pegaspargase dose",
             "IU/kg", derived=True, description="smallest single dose per kg of weight"),
    FactSpec("plan.pegaspargase_max_iu_per_kg", "number", "largest planned pegaspargase dose",
             "IU/kg", derived=True, description="largest single dose per kg of weight"),
    FactSpec("plan.pegaspargase_max_iu_per_m2", "number", "largest planned pegaspargase dose",
             "IU/m²", derived=True, description="largest single dose per m² of BSA"),
)

# Input fields that are not facts a rule may test.
_NOT_TESTABLE = {"patient_id", "plan", "plan.doses"}


def _spec_for(name: str, annotation: Any, description: str) -> FactSpec:
    """The FactSpec of one pydantic field, from its annotation."""
    base = annotation
    if isinstance(base, types.UnionType) or typing.get_origin(base) is typing.Union:
        base = next(a for a in typing.get_args(base) if a is not type(None))
    if typing.get_origin(base) is typing.Annotated:
        base = typing.get_args(base)[0]
    label, unit = _LABELS.get(name, (name.replace("plan.", "planned ").replace("_", " "), ""))
    if isinstance(base, type) and issubclass(base, Enum):
        values = tuple(str(m.value) for m in base if m.value != "unknown")
        return FactSpec(name, "enum", label, unit, values, description=description)
    if base is bool:
        return FactSpec(name, "bool", label, unit, description=description)
    if base is int:
        return FactSpec(name, "integer", label, unit, description=description)
    if base is float:
        return FactSpec(name, "number", label, unit, description=description)
    raise TypeError(f"no fact type for field {name}: {annotation!r}")  # pragma: no cover


def _model_specs(model: type[BaseModel], prefix: str) -> list[FactSpec]:
    specs = []
    for field_name, info in model.model_fields.items():
        name = prefix + field_name
        if name in _NOT_TESTABLE:
            continue
        specs.append(_spec_for(name, info.annotation, info.description or ""))
    return specs


FACTS: dict[str, FactSpec] = {
    spec.name: spec
    for spec in (*_model_specs(PatientFacts, ""), *_model_specs(Plan, "plan."), *_DERIVED)
}
"""Every fact a rule may test, by public name."""

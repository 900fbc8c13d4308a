"""Patient facts: the typed input of an assessment (docs/facts.md).

Units live in the field names on purpose (``wbc_at_diagnosis_10e9_per_l``,
``mrd_end_of_induction_percent``) so that a value in another unit cannot be mistaken for
the right one. Every field but ``age_years`` may be absent or ``None``: *unknown*, which
the rules never read as "no" or "normal".

Numbers and booleans are strict (``"45"`` and ``1`` are refused, not coerced): a rule engine
compares ``"9" > 65`` as true and ``True == 1``, so types are settled here, at the boundary.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

__all__ = [
    "CnsStatus",
    "Dose",
    "DoseUnit",
    "Drug",
    "Lineage",
    "PatientFacts",
    "PhStatus",
    "Phase",
    "Plan",
    "Regimen",
    "RelapseSite",
    "ResourceLevel",
    "Sex",
    "Steroid",
]


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class Lineage(StrEnum):
    """Immunophenotype."""

    B = "B"
    T = "T"
    UNKNOWN = "unknown"


class PhStatus(StrEnum):
    """BCR::ABL1 / t(9;22) status."""

    POSITIVE = "positive"
    NEGATIVE = "negative"
    UNKNOWN = "unknown"


class CnsStatus(StrEnum):
    """CNS status at diagnosis; CNS3 means CNS involvement."""

    CNS1 = "CNS1"
    CNS2 = "CNS2"
    CNS3 = "CNS3"
    UNKNOWN = "unknown"


class Phase(StrEnum):
    """Where the patient is in the treatment pathway."""

    DIAGNOSIS = "diagnosis"
    INDUCTION = "induction"
    CONSOLIDATION = "consolidation"
    MAINTENANCE = "maintenance"
    RELAPSED = "relapsed"
    REFRACTORY = "refractory"


class RelapseSite(StrEnum):
    """Site of the latest relapse."""

    MARROW = "marrow"
    ISOLATED_CNS = "isolated_cns"
    ISOLATED_TESTICULAR = "isolated_testicular"
    COMBINED = "combined"


class ResourceLevel(StrEnum):
    """Resource level of the treating setting."""

    BASIC = "basic"
    CORE = "core"
    ENHANCED = "enhanced"
    MAXIMAL = "maximal"


class Steroid(StrEnum):
    PREDNISONE = "prednisone"
    DEXAMETHASONE = "dexamethasone"


class Regimen(StrEnum):
    """The induction regimen a plan follows (audits compare its doses with this regimen)."""

    SOURCE_BACKBONE = "source_backbone"
    """The source's four-drug backbone (daunorubicin 25-30 mg/m²)."""
    UKALL_XII_ECOG_2993 = "ukall_xii_ecog_2993"
    """UKALL XII / ECOG E2993 adult induction (daunorubicin 60 mg/m²)."""
    HYPER_CVAD = "hyper_cvad"
    OTHER = "other"


class Drug(StrEnum):
    VINCRISTINE = "vincristine"
    DAUNORUBICIN = "daunorubicin"
    PEGASPARGASE = "pegaspargase"


class DoseUnit(StrEnum):
    MG = "mg"
    MG_PER_M2 = "mg/m2"
    IU = "IU"
    IU_PER_M2 = "IU/m2"


def _number(ge: float, le: float, description: str) -> Any:
    return Field(default=None, ge=ge, le=le, description=description)


Number = Annotated[float, Strict()]
Count = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]

# Units a drug may be dosed in, and the largest single dose that is plausible at all in each
# unit: anything above is a data-entry error, not a dose to audit.
DOSE_UNITS: dict[Drug, dict[DoseUnit, float]] = {
    Drug.VINCRISTINE: {DoseUnit.MG: 10.0, DoseUnit.MG_PER_M2: 10.0},
    Drug.DAUNORUBICIN: {DoseUnit.MG: 500.0, DoseUnit.MG_PER_M2: 200.0},
    Drug.PEGASPARGASE: {DoseUnit.IU: 25_000.0, DoseUnit.IU_PER_M2: 10_000.0},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Dose(_Strict):
    """One planned administration of one drug."""

    drug: Drug
    dose: Number = Field(gt=0, description="amount of one administration, in `unit`")
    unit: DoseUnit

    @model_validator(mode="after")
    def _unit_fits_drug(self) -> Dose:
        allowed = DOSE_UNITS[self.drug]
        if self.unit not in allowed:
            units = " or ".join(u.value for u in allowed)
            raise ValueError(
                f"unit {self.unit.value!r} does not fit {self.drug.value}; use {units}")
        if self.dose > allowed[self.unit]:
            raise ValueError(
                f"dose {self.dose:g} {self.unit.value} of {self.drug.value} is implausible "
                f"(above {allowed[self.unit]:g} {self.unit.value})"
            )
        return self


class Plan(_Strict):
    """The proposed treatment, audited against the guideline."""

    intrathecal_in_induction: Flag | None = None
    cranial_irradiation: Flag | None = None
    mrd_monitoring: Flag | None = None
    tki: Flag | None = None
    allogeneic_hsct: Flag | None = None
    systemic_therapy: Flag | None = None
    steroid: Steroid | None = None
    maintenance_years: Number | None = _number(0, 10, "planned maintenance, years")
    regimen: Regimen | None = Field(
        default=None, description="the induction regimen the plan follows; absent: dose "
        "audits compare with the source's backbone for children only")
    doses: tuple[Dose, ...] = Field(default=(), description="one entry per administration")


class PatientFacts(_Strict):
    """One patient's facts at the time of assessment (docs/facts.md)."""

    patient_id: str | None = Field(default=None, max_length=200, description="opaque id, echoed")
    age_years: Number = Field(ge=0, le=120, description="age at assessment, years")
    age_at_diagnosis_years: Number | None = _number(
        0, 120, "age at diagnosis of ALL, years; absent: `age_years` stands in during diagnosis "
        "and induction only; above `age_years`: data.inconsistent.age_at_diagnosis")
    sex: Sex | None = None
    height_cm: Number | None = _number(30, 250, "height, cm")
    weight_kg: Number | None = _number(0.5, 350, "weight, kg")
    bsa_m2: Number | None = _number(0.1, 4.0, "body surface area, m²; wins over height/weight")
    lineage: Lineage | None = None
    ph_status: PhStatus | None = None
    wbc_at_diagnosis_10e9_per_l: Number | None = _number(0, 2000, "leukocytes, ×10⁹/L")
    cns_status: CnsStatus | None = None
    testicular_involvement: Flag | None = None
    kmt2a_rearranged: Flag | None = None
    cd19_positive: Flag | None = None
    cd22_positive: Flag | None = None
    phase: Phase | None = Field(
        default=None, description="treatment phase; `diagnosis` is a new (initial) diagnosis, "
        "which establishes first-line therapy; absent: unknown (data.phase)")
    complete_remission: Flag | None = None
    weeks_to_complete_remission: Number | None = _number(0, 104, "weeks from start of induction")
    mrd_end_of_induction_percent: Number | None = _number(0, 100, "MRD, % of cells")
    mrd_consolidation_percent: Number | None = _number(0, 100, "MRD, % of cells")
    relapse_count: Count | None = Field(default=None, ge=0, le=20,
                                        description="relapses so far; absent: unknown "
                                        "(data.relapse_count)")
    relapse_site: RelapseSite | None = None
    relapse_cns_involved: Flag | None = Field(
        default=None, description="CNS involved at the latest relapse; absent: derived from "
        "`relapse_site` where the site decides it (isolated_cns yes; marrow, isolated_testicular "
        "no; combined unknown)")
    months_from_diagnosis_to_relapse: Number | None = _number(
        0, 600, "months from the first diagnosis to the latest relapse")
    remission_number: Count | None = Field(default=None, ge=1, le=20)
    mrd_current_percent: Number | None = _number(0, 100, "MRD, % of cells")
    courses_since_remission: Count | None = Field(default=None, ge=0, le=50)
    transplant_eligible: Flag | None = None
    substantial_comorbidities: Flag | None = None
    tki_available: Flag | None = None
    resource_level: ResourceLevel | None = None
    specialized_center: Flag | None = None
    plan: Plan | None = None

    @model_validator(mode="after")
    def _relapse_cns_fits_site(self) -> PatientFacts:
        # Only the new, optional `relapse_cns_involved` can contradict the site; every input
        # accepted before it existed is still accepted.
        involved, site = self.relapse_cns_involved, self.relapse_site
        if involved is not None and site is not None and site is not RelapseSite.COMBINED \
                and involved is not (site is RelapseSite.ISOLATED_CNS):
            raise ValueError(
                f"relapse_cns_involved {str(involved).lower()} contradicts "
                f"relapse_site {site.value!r}; use relapse_site 'combined' for a relapse in "
                "the CNS and elsewhere")
        return self

"""Patient facts: the typed input of an assessment (docs/facts.md).

Units live in the field names on purpose (``wbc_at_diagnosis_10e9_per_l``,
``mrd_end_of_induction_percent``) so that a value in another unit cannot be mistaken for
the right one. Every field but ``age_years`` may be absent or ``None``: *unknown*, which
the rules never read as "no" or "normal".

Numbers and booleans are strict (``"45"`` and ``1`` are refused, not coerced): a rule engine
compares ``"9" > 65`` as true and ``True == 1``, so types are settled here, at the boundary.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
    model_validator,
)

__all__ = [
    "CnsStatus",
    "Dose",
    "DoseUnit",
    "Drug",
    "Lineage",
    "MrdQuantity",
    "MrdUnit",
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


def _flag(meaning: str, absent: str = "unknown") -> Any:
    """An optional yes/no fact: what true means, and what its absence means."""
    return Field(default=None, description=f"{meaning}; absent: {absent}")


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


class MrdUnit(StrEnum):
    """The unit of an MRD result given as a :class:`MrdQuantity`."""

    PERCENT = "%"
    """Percent of cells: 0.01 is 1 in 10,000 cells."""
    FRACTION = "fraction"
    """Fraction of cells: 0.0001 (10⁻⁴) is 1 in 10,000 cells."""
    LOG10 = "log10"
    """log10 of the fraction of cells: -4 is 1 in 10,000 cells (never above 0)."""


#: The values each MRD unit accepts: (lowest, highest). A log10 below -10 (1 cell in ten
#: billion) is below any assay's sensitivity and taken for a typing error.
MRD_RANGES: dict[MrdUnit, tuple[float, float]] = {
    MrdUnit.PERCENT: (0.0, 100.0), MrdUnit.FRACTION: (0.0, 1.0), MrdUnit.LOG10: (-10.0, 0.0)}


def _significant(value: float) -> float:
    """Twelve significant digits: 10⁻⁴ × 100 is exactly the 0.01 a threshold compares with."""
    return float(f"{value:.12g}")


class MrdQuantity(_Strict):
    """An MRD result with its unit, e.g. ``{"value": 3e-4, "unit": "fraction"}``.

    The engine reads MRD in percent of cells; :attr:`percent` converts. A bare number in an
    MRD field is a percent (as before this form existed)."""

    value: Number = Field(allow_inf_nan=False, description="the result, in `unit`")
    unit: MrdUnit = Field(description="`%` (percent of cells), `fraction` (of cells) or "
                          "`log10` (log10 of the fraction of cells, e.g. -4)")

    @model_validator(mode="after")
    def _in_range(self) -> MrdQuantity:
        mrd_to_percent(self.value, self.unit)
        return self

    @property
    def percent(self) -> float:
        """The result in percent of cells."""
        return mrd_to_percent(self.value, self.unit)


#: Why a value above (below) a unit's range is refused.
_ABOVE = {MrdUnit.PERCENT: "above 100 % is more cells than there are",
          MrdUnit.FRACTION: "a fraction of cells is at most 1",
          MrdUnit.LOG10: "log10 of a fraction of cells is at most 0"}
_BELOW = {MrdUnit.PERCENT: "a level is never below 0", MrdUnit.FRACTION:
          "a level is never below 0", MrdUnit.LOG10: "below -10 is taken for a typing error"}


def mrd_to_percent(value: float, unit: MrdUnit) -> float:
    """An MRD result in ``unit`` as percent of cells; ValueError, naming the value and the
    unit, when it is not a number the unit allows."""
    low, high = MRD_RANGES[unit]
    if not math.isfinite(value) or not low <= value <= high:
        why = _ABOVE[unit] if value > high else _BELOW[unit] if value < low else "not a number"
        raise ValueError(f"MRD {value!r} with unit {unit.value!r} is outside {low:g} to "
                         f"{high:g} ({why})")
    if unit is MrdUnit.PERCENT:
        return float(value)
    if unit is MrdUnit.FRACTION:
        return _significant(value * 100.0)
    return _significant(10.0 ** value * 100.0)


def _mrd_percent(value: Any) -> Any:
    """An MRD field's input as percent: a bare number is a percent already; a mapping (or an
    :class:`MrdQuantity`) carries its unit and is converted."""
    if isinstance(value, MrdQuantity):
        return value.percent
    if not isinstance(value, dict):
        return value
    if set(value) != {"value", "unit"}:
        raise ValueError(f"an MRD quantity has exactly `value` and `unit`, got {value!r}")
    unit, number = value["unit"], value["value"]
    if unit not in _MRD_UNITS:
        raise ValueError(f"MRD unit {unit!r} is not one of '%', 'fraction', 'log10'")
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise ValueError(f"MRD value {number!r} is not a number")
    return mrd_to_percent(number, _MRD_UNITS[unit])


_MRD_UNITS = {u.value: u for u in MrdUnit}

#: The JSON Schema of an MRD field's input: a bare percent, or a quantity with its unit.
_MRD_SCHEMA = {"anyOf": [
    {"type": "number", "minimum": 0, "maximum": 100, "description": "percent of cells"},
    {"type": "object", "additionalProperties": False, "required": ["value", "unit"],
     "properties": {"value": {"type": "number"},
                    "unit": {"enum": [u.value for u in MrdUnit]}}}]}

#: An MRD fact: percent of cells, given bare or as a :class:`MrdQuantity` (docs/facts.md).
MrdPercent = Annotated[float, Strict(), BeforeValidator(_mrd_percent),
                       WithJsonSchema(_MRD_SCHEMA, mode="validation")]

_MRD_MEANING = ("MRD, % of cells (0.01 = 1 in 10,000 cells); or a quantity with its unit: "
                '`{"value": 0.0001, "unit": "fraction"}`, `{"value": -4, "unit": "log10"}` or '
                '`{"value": 0.01, "unit": "%"}`')


def _mrd_schema(schema: dict[str, Any]) -> None:
    """Drop the bounds pydantic copies beside the input schema (they are not JSON Schema
    words; the bare number's own schema carries them)."""
    for option in schema.get("anyOf", ()):
        option.pop("ge", None)
        option.pop("le", None)


def _mrd(when: str) -> Any:
    return Field(default=None, ge=0, le=100, description=f"{when} {_MRD_MEANING}",
                 json_schema_extra=_mrd_schema)


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
    testicular_involvement: Flag | None = _flag("testicular leukemia at diagnosis")
    testicular_involvement_end_of_induction: Flag | None = _flag(
        "testicular leukemia still present at the end of induction (after testicular "
        "involvement at diagnosis)")
    kmt2a_rearranged: Flag | None = None
    hypodiploidy: Flag | None = _flag(
        "hypodiploid leukemia: fewer than 44 chromosomes (or a DNA index that means it)")
    high_hyperdiploidy: Flag | None = _flag("high hyperdiploidy: 51 to 67 chromosomes")
    etv6_runx1: Flag | None = _flag("ETV6::RUNX1 fusion, t(12;21)")
    iamp21: Flag | None = _flag("intrachromosomal amplification of chromosome 21")
    tcf3_hlf: Flag | None = _flag("TCF3::HLF fusion, t(17;19)")
    ph_like: Flag | None = _flag(
        "Ph-like (BCR::ABL1-like) ALL by expression profile or a defining kinase lesion")
    abl1_t315i: Flag | None = _flag(
        "ABL1 kinase-domain T315I mutation found (Ph-positive disease, tested at relapse or "
        "on resistance)", "not tested or unknown")
    down_syndrome: Flag | None = _flag("Down syndrome (constitutional trisomy 21)")
    cd19_positive: Flag | None = None
    cd22_positive: Flag | None = None
    phase: Phase | None = Field(
        default=None, description="treatment phase; `diagnosis` is a new (initial) diagnosis, "
        "which establishes first-line therapy; absent: unknown (data.phase)")
    complete_remission: Flag | None = None
    weeks_to_complete_remission: Number | None = _number(0, 104, "weeks from start of induction")
    mrd_end_of_induction_percent: MrdPercent | None = _mrd("at the end of induction:")
    mrd_consolidation_percent: MrdPercent | None = _mrd("during consolidation:")
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
    mrd_current_percent: MrdPercent | None = _mrd("latest, in the current remission:")
    courses_since_remission: Count | None = Field(default=None, ge=0, le=50)
    transplant_eligible: Flag | None = None
    prior_allogeneic_hsct: Flag | None = _flag(
        "an allogeneic HSCT was given before this assessment")
    prior_cranial_irradiation: Flag | None = _flag(
        "cranial (or craniospinal) irradiation was given before this assessment")
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

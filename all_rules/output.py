"""The assessment: what ``assess`` returns and the CLI prints (docs/output.md).

These are the boundary models of the output; ``Assessment.to_json()`` is byte for byte what
``all-rules assess --format json`` prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, SerializationInfo, model_serializer

__all__ = [
    "Assessment",
    "DoseLine",
    "Evidence",
    "ItemPhase",
    "Kind",
    "ParameterOverride",
    "Recommendation",
    "Risk",
    "RiskGroup",
    "RulesetInfo",
    "Severity",
]


class Kind(StrEnum):
    RECOMMEND = "recommend"
    CONSIDER = "consider"
    AVOID = "avoid"
    ALERT = "alert"
    DATA_NEEDED = "data_needed"
    INFO = "info"
    SCOPE = "scope"
    """The guideline does not decide this for this patient: where to turn instead (policy 7,
    docs/clinical-policy.md)."""


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class ItemPhase(StrEnum):
    """The pathway phase an output item belongs to; the output is ordered by it."""

    ANY = "any"
    DIAGNOSIS = "diagnosis"
    INDUCTION = "induction"
    CONSOLIDATION = "consolidation"
    MAINTENANCE = "maintenance"
    RELAPSED_REFRACTORY = "relapsed_refractory"


PHASE_ORDER = {phase: index for index, phase in enumerate(ItemPhase)}


class RiskGroup(StrEnum):
    STANDARD = "standard"
    PROVISIONAL_STANDARD = "provisional_standard"
    INDETERMINATE = "indeterminate"
    HIGH = "high"
    VERY_HIGH = "very_high"
    RELAPSED_REFRACTORY = "relapsed_refractory"
    """Relapsed or refractory disease: first-line risk groups do not apply (docs/concepts.md)."""


Citation = int | str


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _OmitAbsent(_Out):
    """An output model some of whose optional fields are left out when absent."""

    #: Optional fields left out of the JSON when absent (docs/output.md: *omitted*).
    _omit_if_none: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: Any, info: SerializationInfo) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in self._omit_if_none:
            if getattr(self, name) is None:
                data.pop(name, None)
        return data


class Evidence(_OmitAbsent):
    """One fact and the test it passed (``value`` is ``None`` when the test was "unknown").

    ``source`` names the record the fact came from (a FHIR resource such as
    ``Observation/wbc-1``) when the facts were mapped from one; it is left out otherwise."""

    fact: str
    value: Any
    test: str
    source: str | None = None

    _omit_if_none = ("source",)


class DoseLine(_Out):
    """A dose computed from body surface area; ``dose`` is ``None`` when BSA is unknown."""

    drug: str
    per_m2: float
    per_m2_max: float | None
    per_m2_unit: str
    dose: float | None
    dose_max: float | None
    unit: str
    cap: float | None
    capped: bool
    schedule: str


class Recommendation(_OmitAbsent):
    """One output item: what to do or know, why, on what evidence, from which sources."""

    id: str
    kind: Kind
    severity: Severity
    phase: ItemPhase
    text: str
    reason: str
    evidence: tuple[Evidence, ...]
    citations: tuple[Citation, ...]
    doses: tuple[DoseLine, ...] | None = None

    _omit_if_none = ("doses",)


class Risk(_Out):
    group: RiskGroup
    features: tuple[str, ...]
    missing: tuple[str, ...]


class RulesetInfo(_Out):
    name: str
    version: str
    digest: str


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.12f}".rstrip("0").rstrip(".")
    return text if text not in ("0", "-0") else f"{value:.12g}"


class ParameterOverride(_Out):
    """A parameter whose local value differs from the shipped guideline's: the assessment
    was made with the institution's threshold or dose, not the guideline's."""

    name: str
    shipped: float
    local: float
    unit: str
    safe_min: float | None
    safe_max: float | None
    unsafe: bool
    reason: str | None

    def text(self) -> str:
        """One line for people: ``vincristine_cap_mg = 2.5 mg (shipped 2 mg; OUTSIDE …)``."""
        unit = f" {self.unit}" if self.unit else ""
        line = (f"{self.name} = {_number(self.local)}{unit} (shipped "
                f"{_number(self.shipped)}{unit}")
        if self.unsafe:
            bounds = ("none declared" if self.safe_min is None or self.safe_max is None else
                      f"{_number(self.safe_min)}–{_number(self.safe_max)}{unit}")
            line += f"; OUTSIDE its safe range {bounds}; reason given: {self.reason or '-'}"
        elif self.reason:
            line += f"; reason given: {self.reason}"
        return line + ")"


class Assessment(_Out):
    """The guideline's answer for one patient."""

    patient_id: str | None
    ruleset: RulesetInfo
    parameter_overrides: tuple[ParameterOverride, ...] = ()
    """Empty when the shipped values were used; ``to_dict``/``to_json`` then leave it out."""
    risk: Risk
    recommendations: tuple[Recommendation, ...]

    def ids(self) -> list[str]:
        """The recommendation ids, in output order."""
        return [item.id for item in self.recommendations]

    def get(self, rule_id: str) -> Recommendation | None:
        """The item with this id, if it applies."""
        return next((item for item in self.recommendations if item.id == rule_id), None)

    def explain(self, rule_id: str, facts: Any, guideline: Any = None) -> Any:
        """Why ``rule_id`` fired for this assessment, or why not (an ``Explanation``).

        An assessment does not keep the facts it was made from: pass them, and the
        ``Guideline`` unless it is the shipped one. Refused (``ValueError``) when they do
        not give this very assessment, so an explanation never describes another one."""
        if guideline is None:
            if _shipped_guideline is None:  # pragma: no cover - the engine registers it on import
                raise RuntimeError("no guideline: pass one (all_rules.Guideline)")
            guideline = _shipped_guideline()
        if guideline.info != self.ruleset or guideline.assess(facts).to_dict() != self.to_dict():
            raise ValueError("these facts and guideline do not give this assessment")
        return guideline.explain(facts, rule_id)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dictionary described in docs/output.md (``parameter_overrides``
        left out when empty)."""
        data: dict[str, Any] = self.model_dump(mode="json")
        if not data["parameter_overrides"]:
            del data["parameter_overrides"]
        return data

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON text the CLI prints (UTF-8, keys in docs/output.md order); ``indent=None`` gives
        the compact one-line form of a cohort's JSON Lines output."""
        if indent is None:
            return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


_shipped_guideline: Callable[[], Any] | None = None
"""Gives the shipped ``Guideline`` for ``Assessment.explain``; set by the engine when it is
imported (``all_rules.engine._guideline``), so that this module, below the engine, never
imports it (docs/architecture.md: imports point one way)."""


def provide_shipped_guideline(provider: Callable[[], Any]) -> None:
    """Register what gives the shipped guideline (the engine calls this once, on import)."""
    global _shipped_guideline
    _shipped_guideline = provider


def _trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """Build an output model from values the library computed itself, without validation.

    The assessment is assembled per patient on a hot path (latency: tests/benchmarks/); every
    value here comes from validated facts and a checked ruleset, and the tests compare these
    objects with validated ones. ``model_construct`` does the same at three times the cost.
    """
    obj = object.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", _FIELDS_SET[cls])
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


_M = TypeVar("_M", bound=BaseModel)
_FIELDS_SET: dict[type[BaseModel], set[str]] = {
    model: set(model.model_fields)
    for model in (Evidence, DoseLine, Recommendation, Risk, RulesetInfo, ParameterOverride,
                  Assessment)
}

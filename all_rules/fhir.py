"""FHIR R4 → patient facts (docs/facts.md) (needs ``all-rules[fhir]``).

``facts_from_bundle(bundle, assessment_date=...)`` reads a Bundle's Patient, Observation,
Condition, MedicationRequest and ServiceRequest resources into :class:`PatientFacts`,
through a shipped code map (``fhir_codes.yaml``, extendable by an institution). Each
mapped fact records the resource it came from; :func:`assess_bundle` puts that provenance
into the evidence of every recommendation. What cannot be mapped is reported, never
guessed: an unconvertible unit, a partial birth date, conflicting values, or a resource in a
status that is not a result.

Resources are validated one by one with ``fhir.resources`` (R4B models, whose JSON for these
resource types is R4's): a malformed resource that matters is refused by name, while a
resource the mapping does not use cannot sink the whole Bundle.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from ._factspec import FACTS
from ._guideline import Guideline, validate_facts
from .exceptions import AllRulesError, InvalidFactsError
from .facts import PatientFacts
from .output import Assessment, Evidence, Recommendation, _trusted

__all__ = ["CodeMap", "FhirFacts", "FhirMappingError", "Unmapped", "assess_bundle",
           "facts_from_bundle"]

CODE_MAP = Path(__file__).with_name("fhir_codes.yaml")
_RESULT_STATUSES = {"final", "amended", "corrected"}
_CONDITION_SKIP = {"entered-in-error", "refuted"}


class FhirMappingError(AllRulesError, ValueError):
    """The Bundle cannot give valid facts; ``problems`` names each resource at fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"cannot map the FHIR Bundle to facts ({len(problems)} problem(s)):\n"
                         f"{lines}")


@attrs.frozen
class Unmapped:
    """A resource (or part of one) that was not used, and why."""

    resource: str
    reason: str


@attrs.frozen
class FhirFacts:
    """The facts read from a Bundle, where each came from, and what was left out."""

    facts: PatientFacts
    provenance: Mapping[str, str]
    unmapped: tuple[Unmapped, ...]


def _key(system: str | None, code: str | None) -> tuple[str, str]:
    return (system or "", code or "")


@attrs.frozen
class CodeMap:
    """Codes → facts, and UCUM units → factors (``fhir_codes.yaml``)."""

    observations: Mapping[tuple[str, str], tuple[str, str]]
    """(system, code) → (fact, kind: quantity | coded)."""
    coded_values: Mapping[str, Mapping[tuple[str, str], str]]
    """fact → (system, code) of a result value → the fact's value."""
    conditions: Mapping[tuple[str, str], Mapping[str, str]]
    units: Mapping[str, Mapping[str, float]]

    @classmethod
    def load(cls, extra: str | Path | None = None) -> CodeMap:
        """The shipped map, plus an institution's file of the same shape."""
        documents = [yaml.safe_load(CODE_MAP.read_text(encoding="utf-8"))]
        if extra is not None:
            documents.append(yaml.safe_load(Path(extra).read_text(encoding="utf-8")) or {})
        observations: dict[tuple[str, str], tuple[str, str]] = {}
        coded: dict[str, dict[tuple[str, str], str]] = {}
        conditions: dict[tuple[str, str], dict[str, str]] = {}
        units: dict[str, dict[str, float]] = {}
        for document in documents:
            for entry in document.get("observations", []):
                for code in entry.get("codes", []):
                    observations[_key(code["system"], code["code"])] = (entry["fact"],
                                                                        entry["kind"])
                for value, codes in (entry.get("values") or {}).items():
                    for code in codes:
                        coded.setdefault(entry["fact"], {})[_key(code["system"],
                                                                 code["code"])] = value
            for entry in document.get("conditions", []):
                code = entry["code"]
                conditions[_key(code["system"], code["code"])] = dict(entry["facts"])
            for fact, table in (document.get("units") or {}).items():
                units.setdefault(fact, {}).update({str(u): float(f) for u, f in table.items()})
        return cls(observations, coded, conditions, units)




_TYPES = {name: spec.type for name, spec in FACTS.items()}


def _typed(fact: str, value: Any) -> Any:
    """A coded value as the fact's type: booleans from ``true``/``false`` value keys."""
    if _TYPES.get(fact) == "bool" and isinstance(value, str):
        return value.lower() == "true"
    return value


def _model(resource: Mapping[str, Any]) -> Any:
    """The resource validated as its fhir.resources model (R4B)."""
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(str(resource["resourceType"])).model_validate(resource)


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"


def _age_years(birth: Any, on: dt.date) -> float:
    days = (on - birth).days
    if days < 0:
        raise ValueError(f"birthDate {birth} is after the assessment date {on}")
    return round(float(days) / 365.25, 3)


class _Reader:
    def __init__(self, code_map: CodeMap, on: dt.date) -> None:
        self.map, self.on = code_map, on
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        self.unmapped: list[Unmapped] = []
        self.problems: list[str] = []

    def set(self, fact: str, value: Any, ref: str) -> None:
        if fact in self.values and self.values[fact] != value:
            self.problems.append(f"{ref}: {fact} = {value!r} conflicts with "
                                 f"{self.sources[fact]} ({self.values[fact]!r})")
            return
        self.values[fact] = value
        self.sources.setdefault(fact, ref)

    def patient(self, resource: Any, ref: str) -> None:
        birth = getattr(resource, "birthDate", None)
        if birth is None:
            self.problems.append(f"{ref}: no birthDate, so no age")
        elif not isinstance(birth, dt.date):
            self.problems.append(f"{ref}: birthDate {birth} is not a full date; the age "
                                 "would be a guess")
        else:
            try:
                self.set("age_years", _age_years(birth, self.on), ref)
            except ValueError as error:
                self.problems.append(f"{ref}: {error}")
        gender = getattr(resource, "gender", None)
        if gender in ("female", "male", "other", "unknown"):
            self.set("sex", gender, ref)
        if getattr(resource, "id", None):
            self.values.setdefault("patient_id", resource.id)

    def observation(self, resource: Any, ref: str) -> None:
        if resource.status not in _RESULT_STATUSES:
            self.unmapped.append(Unmapped(ref, f"status {resource.status!r} is not a result"))
            return
        codes = [_key(c.system, c.code) for c in (resource.code.coding or [])]
        hit = next((self.map.observations[k] for k in codes if k in self.map.observations),
                   None)
        if hit is None:
            self.unmapped.append(Unmapped(ref, "no code in the code map"))
            return
        fact, kind = hit
        if kind == "quantity":
            quantity = resource.valueQuantity
            if quantity is None or quantity.value is None:
                self.problems.append(f"{ref}: {fact} needs a valueQuantity")
                return
            unit = quantity.code or quantity.unit or ""
            factor = self.map.units.get(fact, {}).get(unit)
            if factor is None:
                accepted = ", ".join(sorted(self.map.units.get(fact, {}))) or "none"
                self.problems.append(f"{ref}: unit {unit!r} cannot be converted for {fact} "
                                     f"(accepted UCUM codes: {accepted})")
                return
            number = round(float(quantity.value) * factor, 9)
            if _TYPES.get(fact) == "integer":
                if not number.is_integer():
                    self.problems.append(f"{ref}: {fact} must be a whole number, got {number}")
                    return
                self.set(fact, int(number), ref)
            else:
                self.set(fact, number, ref)
            return
        concept = resource.valueCodeableConcept
        values = self.map.coded_values.get(fact, {})
        value = None
        for coding in (concept.coding or []) if concept is not None else []:
            value = values.get(_key(coding.system, coding.code))
            if value is not None:
                break
        if value is None:
            self.problems.append(f"{ref}: the result of {fact} has no code in the code map")
            return
        self.set(fact, _typed(fact, value), ref)

    def condition(self, resource: Any, ref: str) -> None:
        status = resource.verificationStatus
        codes = [_key(c.system, c.code) for c in (status.coding or [])] if status else []
        if any(code in _CONDITION_SKIP for _, code in codes):
            self.unmapped.append(Unmapped(ref, "verification status excludes it"))
            return
        mapped = False
        for coding in resource.code.coding or [] if resource.code else []:
            facts = self.map.conditions.get(_key(coding.system, coding.code))
            if facts:
                mapped = True
                for fact, value in facts.items():
                    self.set(fact, _typed(fact, value), ref)
        if not mapped:
            self.unmapped.append(Unmapped(ref, "no code in the code map"))


def facts_from_bundle(bundle: Mapping[str, Any], *, assessment_date: dt.date,
                      code_map: CodeMap | None = None,
                      extra: Mapping[str, Any] | None = None,
                      order_codes: Any = None) -> FhirFacts:
    """The patient facts of the Bundle's patient, with provenance and what was left out.

    MedicationRequests and ServiceRequests in the Bundle are read into ``plan`` as draft
    orders are (``_orders``), with ``order_codes`` (default: the shipped map).

    ``extra`` adds facts the Bundle does not carry (e.g. ``phase``), recorded as given by the
    caller. Raises FhirMappingError naming every resource at fault.
    """
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise FhirMappingError(["(input): not a FHIR Bundle"])
    reader = _Reader(code_map or _default_map(), assessment_date)
    handlers = {"Patient": reader.patient, "Observation": reader.observation,
                "Condition": reader.condition}
    patients = 0
    orders: list[Any] = []
    for index, entry in enumerate(bundle.get("entry") or []):
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(resource, Mapping):
            reader.problems.append(f"entry[{index}]: no resource")
            continue
        ref = _ref(resource)
        if resource.get("resourceType") in ("MedicationRequest", "ServiceRequest"):
            orders.append(entry)
            continue
        handler = handlers.get(str(resource.get("resourceType")))
        if handler is None:
            reader.unmapped.append(Unmapped(ref, "resource type not read for facts"))
            continue
        try:
            model = _model(resource)
        except Exception as error:  # pydantic's ValidationError, or an unknown type
            first = str(error).splitlines()[0]
            reader.problems.append(f"{ref}: not a valid {resource.get('resourceType')} "
                                   f"({first})")
            continue
        patients += resource.get("resourceType") == "Patient"
        handler(model, ref)
    if patients != 1:
        reader.problems.append(f"(bundle): expected exactly one Patient, found {patients}")
    if orders:
        from ._orders import OrderCodes, plan_from_orders

        plan, plan_sources, unmapped, problems = plan_from_orders(
            {"entry": orders}, order_codes or OrderCodes.load())
        reader.problems.extend(problems)
        reader.unmapped.extend(unmapped)
        if plan:
            reader.values["plan"] = plan
            reader.sources.update(plan_sources)
    if reader.problems:
        raise FhirMappingError(reader.problems)
    values = dict(reader.values)
    for fact, value in (extra or {}).items():
        if fact == "plan" and isinstance(values.get("plan"), Mapping):
            value = {**values["plan"], **value}  # the caller's plan completes the Bundle's
        values[fact] = value
        reader.sources.setdefault(fact, "(caller)")
    try:
        facts = validate_facts(values)
    except InvalidFactsError as error:
        raise FhirMappingError([f"{reader.sources.get(e.field.split('.')[0], '(facts)')}: "
                                f"{e}" for e in error.errors]) from None
    return FhirFacts(facts, dict(reader.sources), tuple(reader.unmapped))


def _source(provenance: Mapping[str, str], fact: str) -> str | None:
    if fact == "diagnosis_age_years":  # derived: the age at diagnosis, or the age standing in
        return provenance.get("age_at_diagnosis_years") or provenance.get("age_years")
    return provenance.get(fact)


def with_provenance(assessment: Assessment, provenance: Mapping[str, str]) -> Assessment:
    """A copy whose evidence names, for each fact, the resource it came from (``source``)."""
    items = []
    for item in assessment.recommendations:
        evidence = tuple(
            _trusted(Evidence, {"fact": e.fact, "value": e.value, "test": e.test,
                                "source": _source(provenance, e.fact)})
            for e in item.evidence)
        items.append(_trusted(Recommendation, {**item.__dict__, "evidence": evidence}))
    return _trusted(Assessment, {**assessment.__dict__, "recommendations": tuple(items)})


def assess_bundle(bundle: Mapping[str, Any], *, assessment_date: dt.date,
                  guideline: Guideline | None = None, code_map: CodeMap | None = None,
                  extra: Mapping[str, Any] | None = None) -> tuple[Assessment, FhirFacts]:
    """Assess the Bundle's patient; evidence carries each fact's source resource."""
    mapped = facts_from_bundle(bundle, assessment_date=assessment_date, code_map=code_map,
                               extra=extra)
    assessment = (guideline or Guideline.default()).assess(mapped.facts)
    return with_provenance(assessment, mapped.provenance), mapped


_DEFAULT: list[CodeMap] = []


def _default_map() -> CodeMap:
    if not _DEFAULT:
        _DEFAULT.append(CodeMap.load())
    return _DEFAULT[0]



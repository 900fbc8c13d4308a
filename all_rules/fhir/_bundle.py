"""FHIR R4 → patient facts (docs/facts.md) (needs ``all-rules[fhir]``).

``facts_from_bundle(bundle, assessment_date=...)`` reads a patient's record — a Bundle of
Patient, Observation, Condition, MedicationRequest and ServiceRequest resources, often years
of them — into :class:`PatientFacts`, in three steps: reading each resource into dated
candidate values through the code map (``_read``, ``fhir_codes.yaml``), choosing each
fact's value by time relative to the assessment date (``_select``), then building the
facts and the current plan (here, and ``_orders``). Each fact records the resource and date
it came from; :func:`assess_bundle` puts that provenance into the evidence.

What cannot be used is reported in ``unmapped`` and the fact left unknown, never guessed: an
unconvertible unit, a comparator, a non-final status, another patient's resource, two
different values at the same time, a value too old. Only a Bundle that cannot be read at all
(not a Bundle, not exactly one Patient, no usable birth date) raises FhirMappingError.
``diagnosis`` is the active ALL Condition used, or None: without one the record is not an
ALL patient's, and no ALL treatment advice applies (``has_all_diagnosis``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

from all_rules.engine._guideline import Guideline, validate_facts
from all_rules.exceptions import InvalidFactsError
from all_rules.facts import PatientFacts
from all_rules.output import Assessment, Evidence, Recommendation, _trusted

from ._code_map import CODE_MAP, CodeMap, FhirMappingError, Unmapped, default_map
from ._orders import default_order_codes, plan_from_orders
from ._read import (
    MAP,
    Candidate,
    Diagnosis,
    Record,
    condition,
    observation,
    procedure,
    ref_of,
    subject_matches,
)
from ._select import Chosen, Source, Windows, choose

__all__ = ["CODE_MAP", "CodeMap", "Diagnosis", "FhirFacts", "FhirMappingError", "Source",
           "Unmapped", "Windows", "assess_bundle", "facts_from_bundle", "with_provenance"]

_ORDERS = ("MedicationRequest", "ServiceRequest")
_READERS = {"Observation": observation, "Condition": condition, "Procedure": procedure}
# Facts a diagnosis code may carry that an explicit, dated Observation states better.
_OBSERVATION_WINS = frozenset({"phase", "complete_remission", "relapse_count"})


@attrs.frozen
class FhirFacts:
    """The facts read from a Bundle, where each came from, and what was left out."""

    facts: PatientFacts
    provenance: Mapping[str, str]
    """fact → ``ResourceType/id (date)``: the resource, and the date of the value used."""
    unmapped: tuple[Unmapped, ...]
    diagnosis: Diagnosis | None = None
    """The active ALL Condition used as the diagnosis; None: no ALL diagnosis in the record."""
    incomplete: bool = False
    """The record was cut (a ``next`` page not followed) or the server reported a problem."""
    undetermined: frozenset[str] = frozenset()
    """Facts the record speaks of but that were left unknown (a conflict, a value not read)."""
    sources: Mapping[str, Source] = attrs.field(factory=dict)
    rejected_diagnoses: tuple[Unmapped, ...] = ()
    """ALL Conditions not used as the diagnosis (resolved, inactive, refuted, unconfirmed,
    provisional, differential, entered-in-error), each with why; also in ``unmapped``."""

    @property
    def has_all_diagnosis(self) -> bool:
        """True when the record holds an active, not refuted ALL Condition."""
        return self.diagnosis is not None


def _age_years(birth: dt.date, on: dt.date) -> float:
    days = (on - birth).days
    if days < 0:
        raise ValueError(f"birthDate {birth} is after the assessment date {on}")
    return round(float(days) / 365.25, 3)


def _patient_class() -> Any:
    """fhir.resources' Patient (R4B, whose Patient JSON is R4's), or the extra to install."""
    try:
        from fhir.resources.R4B.patient import Patient
    except ImportError:
        raise ImportError("FHIR needs fhir.resources: pip install 'all-rules[fhir]'") from None
    return Patient


def _entries(bundle: Mapping[str, Any], record_unmapped: list[Unmapped],
             cut: list[bool]) -> list[tuple[Mapping[str, Any], Any]]:
    """(resource, fullUrl) of the Bundle's entries and of search-result Bundles inside it."""
    resources: list[tuple[Mapping[str, Any], Any]] = []
    if any(isinstance(link, MAP) and link.get("relation") == "next"
           for link in bundle.get("link") or ()):
        record_unmapped.append(Unmapped(ref_of(bundle), "the search result has a `next` page "
                                        "that was not followed: the record may be cut"))
        cut.append(True)
    for index, entry in enumerate(bundle.get("entry") or ()):
        resource = entry.get("resource") if isinstance(entry, MAP) else None
        if not isinstance(resource, MAP):
            record_unmapped.append(Unmapped(f"entry[{index}]", "no resource"))
        elif resource.get("resourceType") == "Bundle":
            resources.extend(_entries(resource, record_unmapped, cut))
        else:
            resources.append((resource, entry.get("fullUrl")))
    return resources


def _outcome(resource: Mapping[str, Any], record: Record) -> None:
    issues = [i for i in resource.get("issue") or [] if isinstance(i, Mapping)]
    said = ", ".join(f"{i.get('severity')} {i.get('code')}" for i in issues) or "no issue"
    record.unmapped.append(Unmapped(ref_of(resource), f"the server reported: {said}; not read "
                                    "as 'no data'"))
    if any(i.get("severity") in ("fatal", "error", "warning") for i in issues):
        record.incomplete = True


def _read(bundle: Mapping[str, Any], code_map: CodeMap) -> Record:
    unmapped: list[Unmapped] = []
    cut: list[bool] = []
    resources = _entries(bundle, unmapped, cut)
    found = [(r, url) for r, url in resources if r.get("resourceType") == "Patient"]
    patients = {str(r.get("id")): r for r, _ in found}
    if len(patients) != 1:
        raise FhirMappingError([f"(bundle): expected exactly one Patient, found {len(patients)}"])
    (patient_id, patient), = patients.items()
    record = Record(patient, f"Patient/{patient_id}", unmapped=unmapped, incomplete=bool(cut))
    names = frozenset({record.patient_ref} | {str(url) for _, url in found if url})
    for resource, _ in resources:
        kind = resource.get("resourceType")
        ref = ref_of(resource)
        if kind == "Patient":
            continue
        if kind == "OperationOutcome":
            _outcome(resource, record)
            continue
        reader = _READERS.get(str(kind))
        if reader is None and kind not in _ORDERS:
            record.unmapped.append(Unmapped(ref, "resource type not read for facts"))
            continue
        if subject_matches(resource, names) is False:
            record.unmapped.append(Unmapped(ref, "its subject is not this Bundle's patient"))
            continue
        if reader is None:
            record.orders.append({"resource": resource})
            continue
        try:
            reader(resource, ref, code_map, record)
        except (AttributeError, TypeError, ValueError) as error:  # a malformed field
            record.unmapped.append(Unmapped(ref, f"not a valid {kind} "
                                            f"({type(error).__name__})"))
    return record


def _birth(record: Record, patient_class: Any) -> dt.date:
    ref = record.patient_ref
    try:
        model = patient_class.model_validate(record.patient)
    except Exception as error:  # pydantic's ValidationError
        first = str(error).splitlines()[0]
        raise FhirMappingError([f"{ref}: not a valid Patient ({first})"]) from None
    birth = getattr(model, "birthDate", None)
    if birth is None:
        raise FhirMappingError([f"{ref}: no birthDate, so no age"])
    if not isinstance(birth, dt.date):
        raise FhirMappingError([f"{ref}: birthDate {birth} is not a full date; the age would "
                                "be a guess"])
    return birth


def _diagnosis(record: Record) -> tuple[Diagnosis | None, list[Candidate]]:
    """The diagnosis (the earliest-dated active ALL Condition) and the facts its codes carry."""
    if not record.diagnoses:
        return None, []
    ordered = sorted(record.diagnoses, key=lambda d: (d[0].date is None,
                                                      d[0].date or dt.date.min))
    found = [Candidate(fact, value, facts.get("when"), d.resource)
             for d, facts in ordered for fact, value in facts.items() if fact != "when"]
    return ordered[0][0], found


def _merge(chosen: Chosen, carried: list[Candidate]) -> None:
    """Facts of the diagnosis codes join those chosen from Observations."""
    by_fact: dict[str, list[Candidate]] = {}
    for c in carried:
        by_fact.setdefault(c.fact, []).append(c)
    for fact, found in by_fact.items():
        if fact in _OBSERVATION_WINS and (fact in chosen.values or fact in chosen.undetermined):
            continue
        values = {repr(c.value) for c in found}
        known = chosen.values.get(fact)
        if len(values) > 1 or (fact in chosen.values and repr(known) not in values):
            for c in found:
                chosen.unmapped.append(Unmapped(c.ref, f"{fact} = {c.value!r} disagrees with "
                                                "another source: left unknown", fact))
            chosen.values.pop(fact, None)
            chosen.sources.pop(fact, None)
            chosen.undetermined.add(fact)
            continue
        if fact in chosen.undetermined:
            continue
        chosen.values[fact] = found[0].value
        if found[0].value is not None:
            when = found[0].when
            chosen.sources.setdefault(fact, Source(found[0].ref, when.text if when else None))


def _history(record: Record, on: dt.date, chosen: Chosen) -> list[Candidate]:
    """The history facts (Down syndrome, a past allogeneic HSCT, cranial irradiation) dated
    at or before the assessment date (or undated), earliest first; later ones reported."""
    used = []
    for c in record.history:
        if c.when is not None and c.when.day > on:
            chosen.unmapped.append(Unmapped(c.ref, f"dated {c.when.text}, after the "
                                            f"assessment date {on}", c.fact))
        else:
            used.append(c)
    return sorted(used, key=lambda c: (c.when is None, c.when.day if c.when else on))


def facts_from_bundle(bundle: Mapping[str, Any], *, assessment_date: dt.date,
                      code_map: CodeMap | None = None,
                      extra: Mapping[str, Any] | None = None,
                      order_codes: Any = None, windows: Windows | None = None) -> FhirFacts:
    """The patient facts (docs/facts.md) of the Bundle's patient at ``assessment_date``,
    with provenance.

    Current MedicationRequests and ServiceRequests (active, draft, on-hold) are read into
    ``plan`` as draft orders are (``_orders``), with ``order_codes`` (default: the shipped
    map). ``extra`` adds facts the Bundle does not carry (e.g. ``phase``); the caller's value
    wins. ``windows`` sets how old a value may be (docs/fhir.md).
    """
    patient_class = _patient_class()
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise FhirMappingError(["(input): not a FHIR Bundle"])
    code_map = code_map or default_map()
    windows = windows or Windows()
    record = _read(bundle, code_map)
    birth, age = _birth_and_age(record, patient_class, assessment_date)
    diagnosis, carried = _diagnosis(record)
    chosen = choose(record.candidates, on=assessment_date,
                    diagnosis_day=diagnosis.date if diagnosis else None, birth=birth,
                    windows=windows)
    _merge(chosen, [*carried, *_history(record, assessment_date, chosen)])
    values, sources = _patient_values(record, age, chosen)
    unmapped = [*record.unmapped, *chosen.unmapped]
    if diagnosis is not None:
        _age_at_diagnosis(diagnosis, birth, assessment_date, values, sources, unmapped)
        _uncoded_phase(diagnosis, values, extra or {}, unmapped, chosen.undetermined)
    plan_sources = _plan(record, order_codes, values, unmapped)
    _add_extra(extra or {}, values, sources, chosen.undetermined)
    facts = _validated(values, sources, set(extra or ()), unmapped, chosen.undetermined)
    provenance = {fact: str(source) for fact, source in sources.items() if fact in values}
    provenance.update(plan_sources)
    return FhirFacts(facts, provenance, tuple(unmapped), diagnosis, record.incomplete,
                     frozenset(chosen.undetermined), sources, tuple(record.rejected))


def _birth_and_age(record: Record, patient_class: Any, on: dt.date) -> tuple[dt.date, float]:
    """The patient's birth date and age on ``on``. Without them nothing can be assessed: the
    FhirMappingError carries what the gate saw of the record, for a caller that must decide."""
    try:
        birth = _birth(record, patient_class)
        try:
            age = _age_years(birth, on)
        except ValueError as error:
            raise FhirMappingError([f"{record.patient_ref}: {error}"]) from None
    except FhirMappingError as error:  # what the gate saw, for a caller that must decide
        error.has_all_diagnosis = bool(record.diagnoses)
        error.rejected_diagnoses = tuple(record.rejected)
        error.incomplete = record.incomplete
        raise
    return birth, age


def _patient_values(record: Record, age: float,
                    chosen: Chosen) -> tuple[dict[str, Any], dict[str, Source]]:
    """The facts and their sources so far: the Patient resource's (age, sex, id) and those
    chosen from the other resources."""
    values: dict[str, Any] = {"age_years": age, **chosen.values}
    sources: dict[str, Source] = {"age_years": Source(record.patient_ref), **chosen.sources}
    gender = record.patient.get("gender")
    if gender in ("female", "male", "other", "unknown"):
        values["sex"] = gender
        sources["sex"] = Source(record.patient_ref)
    if record.patient.get("id"):
        values["patient_id"] = str(record.patient["id"])
    return values, sources


def _uncoded_phase(diagnosis: Diagnosis, values: Mapping[str, Any], extra: Mapping[str, Any],
                   unmapped: list[Unmapped], undetermined: set[str]) -> None:
    """A patient in remission whose phase neither the record nor the caller gives: the phase
    is unknown (never read as a new diagnosis), which is reported and the phase marked
    undetermined rather than passed off as read."""
    if values.get("complete_remission") is True and "phase" not in values and \
            "phase" not in extra:
        unmapped.append(Unmapped(diagnosis.resource, "in remission, but the treatment "
                                 "phase is not coded: phase left unknown",
                                 "phase"))
        undetermined.add("phase")


def _add_extra(extra: Mapping[str, Any], values: dict[str, Any], sources: dict[str, Source],
               undetermined: set[str]) -> None:
    """The caller's facts win over the Bundle's; the caller's plan completes the Bundle's."""
    for fact, value in extra.items():
        if fact == "plan" and isinstance(values.get("plan"), Mapping):
            value = {**values["plan"], **value}  # the caller's plan completes the Bundle's
        values[fact] = value
        sources[fact] = Source("(caller)")
        undetermined.discard(fact)


def _age_at_diagnosis(diagnosis: Diagnosis, birth: dt.date, on: dt.date,
                      values: dict[str, Any], sources: dict[str, Source],
                      unmapped: list[Unmapped]) -> None:
    fact = "age_at_diagnosis_years"
    if diagnosis.onset_age_years is not None:
        values[fact] = diagnosis.onset_age_years
        sources[fact] = Source(diagnosis.resource, "onsetAge")
        return
    if diagnosis.date is None:
        unmapped.append(Unmapped(diagnosis.resource, "no onset or recorded date: the age at "
                                 "diagnosis and the at-diagnosis values are unknown", fact))
        return
    if not birth <= diagnosis.date <= on:
        unmapped.append(Unmapped(diagnosis.resource, f"diagnosis date {diagnosis.date} is not "
                                 "between the birth date and the assessment date", fact))
        return
    values[fact] = _age_years(birth, diagnosis.date)
    sources[fact] = Source(diagnosis.resource, diagnosis.date.isoformat())


def _plan(record: Record, order_codes: Any, values: dict[str, Any],
          unmapped: list[Unmapped]) -> dict[str, str]:
    if not record.orders:
        return {}
    plan, plan_sources, skipped, problems = plan_from_orders(
        {"entry": record.orders}, order_codes or default_order_codes())
    unmapped.extend(skipped)
    for problem in problems:
        resource, _, reason = problem.partition(": ")
        unmapped.append(Unmapped(resource, reason or problem, "plan"))
    if plan:
        values["plan"] = plan
    return plan_sources


def _validated(values: dict[str, Any], sources: Mapping[str, Source], given: set[str],
               unmapped: list[Unmapped], undetermined: set[str]) -> PatientFacts:
    """The facts; a value from the Bundle the facts model refuses is dropped and reported,
    while the caller's own invalid value is an error."""
    for _ in range(3):
        try:
            return validate_facts(values)
        except InvalidFactsError as error:
            refused = {e.field.split(".")[0]: e for e in error.errors}
            theirs = [e for f, e in refused.items() if f in given or f not in values or
                      f == "age_years"]
            if theirs:
                raise FhirMappingError([f"{sources.get(e.field.split('.')[0], '(facts)')}: "
                                        f"{e}" for e in error.errors]) from None
            for fact, e in refused.items():
                unmapped.append(Unmapped(str(sources.get(fact, "(bundle)")), str(e), fact))
                values.pop(fact)
                undetermined.add(fact)
    raise FhirMappingError(["(facts): could not be validated"])


def _source(provenance: Mapping[str, str], fact: str) -> str | None:
    if fact in ("diagnosis_age_years", "diagnosis_age_at_most_years"):
        # derived: the age at diagnosis, or the age standing in (or bounding it)
        return provenance.get("age_at_diagnosis_years") or provenance.get("age_years")
    if fact == "weeks_to_complete_remission_completed":
        return provenance.get("weeks_to_complete_remission")
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
                  extra: Mapping[str, Any] | None = None,
                  windows: Windows | None = None) -> tuple[Assessment, FhirFacts]:
    """Assess the Bundle's patient; evidence carries each fact's source resource.

    The caller decides what to do with a record without an ALL diagnosis
    (``mapped.has_all_diagnosis``); the CDS service shows no ALL treatment advice for it.
    """
    mapped = facts_from_bundle(bundle, assessment_date=assessment_date, code_map=code_map,
                               extra=extra, windows=windows)
    assessment = (guideline or Guideline.default()).assess(mapped.facts)
    return with_provenance(assessment, mapped.provenance), mapped


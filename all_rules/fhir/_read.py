"""Reading a FHIR Bundle: each resource → dated candidate values for facts, or a report.

No choice is made here between several values of one fact (``_select`` does that by
time); a resource that cannot be used says why in an :class:`Unmapped`. Resources are read as
JSON, field by field, with the type of each field used checked: validating every resource of
a years-long chart with full FHIR models would cost a hundred times the mapping itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

from all_rules.engine._format import is_mrd_percent
from all_rules.facts import MrdUnit, mrd_to_percent
from all_rules.ruleset._factspec import FACTS

from ._code_map import CodeMap, Unmapped, key

RESULT_STATUSES = frozenset({"final", "amended", "corrected"})
REFUTED = frozenset({"refuted", "entered-in-error"})
UNCONFIRMED = frozenset({"unconfirmed", "provisional", "differential"})
NOT_CURRENT = frozenset({"inactive", "resolved"})
QUALITATIVE = frozenset({"ph_status", "kmt2a_rearranged", "cd19_positive", "cd22_positive",
                         "testicular_involvement", "testicular_involvement_end_of_induction",
                         "hypodiploidy", "high_hyperdiploidy", "etv6_runx1", "iamp21",
                         "tcf3_hlf", "ph_like", "abl1_t315i"})
DONE = "completed"
"""The only Procedure status that says it was done (not ``not-done``, ``in-progress``, ...)."""
UCUM = "http://unitsofmeasure.org"
TYPES = {name: spec.type for name, spec in FACTS.items()}
MAP = (dict, Mapping)
"""isinstance against this checks ``dict`` (what JSON gives) before the slower ABC."""


@attrs.frozen(order=False)
class When:
    """A point in time as FHIR wrote it: its calendar day, and its instant when it has one."""

    day: dt.date
    instant: dt.datetime | None
    text: str


@attrs.frozen
class Candidate:
    """One value of one fact, from one resource, at one time."""

    fact: str
    value: Any
    when: When | None
    ref: str


@attrs.frozen
class Diagnosis:
    """The ALL Condition used as the diagnosis."""

    resource: str
    codes: tuple[str, ...]
    """``system|code`` of each code that made it an ALL diagnosis."""
    date: dt.date | None
    clinical_status: str | None
    onset_age_years: float | None = None


@attrs.define
class Record:
    """What was read from a Bundle."""

    patient: Mapping[str, Any]
    patient_ref: str
    candidates: list[Candidate] = attrs.Factory(list)
    diagnoses: list[tuple[Diagnosis, dict[str, Any]]] = attrs.Factory(list)
    orders: list[Mapping[str, Any]] = attrs.Factory(list)
    unmapped: list[Unmapped] = attrs.Factory(list)
    incomplete: bool = False
    rejected: list[Unmapped] = attrs.Factory(list)
    """ALL Conditions not used as the diagnosis because of their status, and why."""
    history: list[Candidate] = attrs.Factory(list)
    """Yes/no facts made true by a Condition other than ALL or a completed Procedure (their
    time, when given, is placed against the assessment date by the caller)."""


def parse_when(text: Any) -> When:
    """A FHIR date or dateTime; ValueError for a partial date (year or month only)."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a date")
    if len(text) == 10:
        return When(dt.date.fromisoformat(text), None, text)
    if len(text) < 10:
        raise ValueError(f"{text!r} is not a full date")
    instant = dt.datetime.fromisoformat(text)
    day = instant.date()
    if instant.tzinfo is not None:
        instant = instant.astimezone(dt.UTC)
    else:
        instant = instant.replace(tzinfo=dt.UTC)
    return When(day, instant, text)


def codings(concept: Any) -> list[Mapping[str, Any]]:
    if not isinstance(concept, MAP):
        return []
    found = concept.get("coding")
    return [c for c in found if isinstance(c, MAP)] if isinstance(found, list) else []


def ref_of(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"


def subject_matches(resource: Mapping[str, Any], names: frozenset[str]) -> bool | None:
    """True: the Bundle's patient; False: someone else; None: no subject given."""
    subject = resource.get("subject", resource.get("patient"))
    if subject is None:
        return None
    reference = subject.get("reference") if isinstance(subject, MAP) else None
    if not isinstance(reference, str):
        return False  # an identifier-only reference cannot be checked: not used
    reference = reference.split("/_history/")[0]
    return reference in names or any(reference.endswith("/" + n) for n in names
                                      if n.startswith("Patient/"))


def observation(resource: Mapping[str, Any], ref: str, codes: CodeMap, record: Record) -> None:
    """Candidates from an Observation and its components, or reports."""
    hit = _mapped(resource, codes)
    parts = [(c, hit_c) for c in resource.get("component") or () if isinstance(c, MAP)
             for hit_c in [_mapped(c, codes)] if hit_c is not None] \
        if "component" in resource else []
    if hit is None and not parts:
        record.unmapped.append(Unmapped(ref, "no code in the code map"))
        return
    fact = hit[0] if hit else parts[0][1][0]
    status = resource.get("status")
    if status not in RESULT_STATUSES:
        record.unmapped.append(Unmapped(ref, f"status {status!r} is not a result", fact))
        return
    when, problem = _observation_time(resource)
    if when is None:
        record.unmapped.append(Unmapped(ref, problem, fact))
        return
    if hit is not None:
        _value(resource, ref, hit, when, codes, record)
    for component, found in parts:
        _value(component, ref, found, when, codes, record)


def _mapped(element: Mapping[str, Any], codes: CodeMap) -> tuple[str, str] | None:
    concept = element.get("code")
    found = concept.get("coding") if isinstance(concept, MAP) else None
    for coding in found if isinstance(found, list) else ():
        if isinstance(coding, MAP):
            hit = codes.observations.get((str(coding.get("system") or ""),
                                          str(coding.get("code") or "")))
            if hit is not None:
                return hit
    return None


def _observation_time(resource: Mapping[str, Any]) -> tuple[When | None, str]:
    period = resource.get("effectivePeriod")
    for text in (resource.get("effectiveDateTime"), resource.get("effectiveInstant"),
                 period.get("start") if isinstance(period, Mapping) else None,
                 resource.get("issued")):
        if text is None:
            continue
        try:
            return parse_when(text), ""
        except ValueError as error:
            return None, f"effective time {error}: cannot be placed in time"
    return None, "no effective time: cannot be placed relative to the assessment date"


def _value(element: Mapping[str, Any], ref: str, hit: tuple[str, str], when: When,
           codes: CodeMap, record: Record) -> None:
    fact, kind = hit
    absent = element.get("dataAbsentReason")
    if absent is not None:
        reason = next((str(c.get("code")) for c in codings(absent)), "given")
        record.unmapped.append(Unmapped(ref, f"no value (dataAbsentReason {reason})", fact))
        return
    if kind == "quantity":
        _quantity(element, ref, fact, when, codes, record)
    else:
        _coded(element, ref, fact, when, codes, record)


def _quantity(element: Mapping[str, Any], ref: str, fact: str, when: When, codes: CodeMap,
              record: Record) -> None:
    quantity = element.get("valueQuantity")
    value = quantity.get("value") if isinstance(quantity, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not isinstance(
            quantity, Mapping):
        record.unmapped.append(Unmapped(ref, f"{fact} needs a valueQuantity with a number",
                                        fact))
        return
    comparator = quantity.get("comparator")
    if comparator is not None:
        record.unmapped.append(Unmapped(
            ref, f"value {comparator}{value} has a comparator: not read as the bare number",
            fact))
        return
    system = quantity.get("system")
    code = quantity.get("code") if system in (None, UCUM) else None
    unit = quantity.get("unit")
    code, unit = (code if isinstance(code, str) else None), (
        unit if isinstance(unit, str) else None)
    if is_mrd_percent(fact):
        percent = _mrd_percent(float(value), code, unit, codes, Unmapped(ref, "", fact),
                               record)
        if percent is not None:
            record.candidates.append(Candidate(fact, percent, when, ref))
        return
    converted = codes.ucum(fact, code, unit)
    if converted is None:
        accepted = ", ".join(sorted(codes.units.get(fact, {}))) or "none"
        record.unmapped.append(Unmapped(
            ref, f"unit {code or unit!r} cannot be converted for {fact} (accepted UCUM "
                 f"codes: {accepted}; unit strings: docs/fhir.md)", fact))
        return
    number = round(float(value) * converted[1], 9)
    if TYPES.get(fact) == "integer":
        if not number.is_integer():
            record.unmapped.append(Unmapped(ref, f"{fact} must be a whole number, got {number}",
                                            fact))
            return
        record.candidates.append(Candidate(fact, int(number), when, ref))
        return
    record.candidates.append(Candidate(fact, number, when, ref))


def _mrd_percent(value: float, code: str | None, unit: str | None, codes: CodeMap,
                 report: Unmapped, record: Record) -> float | None:
    """An MRD result in percent of cells, from the units labs send (``%``, a fraction, a
    power of ten of cells, log10 of the fraction, a log reduction); None, reported as
    ``report`` with its reason, without a unit, in an unknown unit or out of range."""
    fact, said = str(report.fact), code or unit
    if not said:
        record.unmapped.append(attrs.evolve(report, reason=(
            f"{fact} {value:g} has no unit: MRD is not read without one (a percent and a "
            "fraction of cells differ 100-fold; units: docs/fhir.md)")))
        return None
    log = codes.log_unit(fact, code, unit)
    converted = codes.ucum(fact, code, unit)
    if log is None and converted is None:
        accepted = ", ".join([*sorted(codes.units.get(fact, {})),
                              *sorted(codes.log_units.get(fact, {}))]) or "none"
        record.unmapped.append(attrs.evolve(report, reason=(
            f"unit {said!r} cannot be converted for {fact} (accepted UCUM codes: {accepted}; "
            "unit strings: docs/fhir.md)")))
        return None
    try:
        if log is not None:
            if log[1] == "reduction" and value < 0:
                raise ValueError("a log reduction is never below 0")
            return mrd_to_percent(value if log[1] == "log10" else -value, MrdUnit.LOG10)
        assert converted is not None
        return mrd_to_percent(float(f"{value * converted[1]:.12g}"), MrdUnit.PERCENT)
    except ValueError as error:
        record.unmapped.append(attrs.evolve(report, reason=(
            f"{fact} {value:g} {said} is not an MRD level: {error}")))
        return None


def typed(fact: str, value: Any) -> Any:
    """A coded value as the fact's type: booleans from ``true``/``false`` value keys."""
    if TYPES.get(fact) == "bool" and isinstance(value, str):
        return value.lower() == "true"
    return value


def _coded(element: Mapping[str, Any], ref: str, fact: str, when: When, codes: CodeMap,
           record: Record) -> None:
    concept = element.get("valueCodeableConcept")
    table = codes.coded_values.get(fact, {})
    for coding in codings(concept):
        value = table.get(key(coding.get("system"), coding.get("code")))
        if value is not None:
            record.candidates.append(Candidate(fact, typed(fact, value), when, ref))
            return
    if fact not in QUALITATIVE:
        record.unmapped.append(Unmapped(ref, f"the result of {fact} has no code in the code "
                                             "map", fact))
        return
    said = _polarities(element, concept, codes)
    if len(said) != 1:
        reason = ("the result says both positive and negative" if said else
                  "the result is not a recognised positive/negative answer (docs/fhir.md)")
        record.unmapped.append(Unmapped(ref, reason, fact))
        return
    positive = said.pop()
    result: Any = ("positive" if positive else "negative") if fact == "ph_status" else positive
    record.candidates.append(Candidate(fact, result, when, ref))


def _polarities(element: Mapping[str, Any], concept: Any, codes: CodeMap) -> set[bool]:
    """What the result says (positive True / negative False); empty if any part of it is
    not a recognised answer (an unknown value is not outvoted by a known one)."""
    said: set[bool] = set()
    texts = codes.qualitative_text
    if isinstance(concept, MAP):
        found_codes = [codes.qualitative.get(key(c.get("system"), c.get("code")))
                       for c in codings(concept)]
        known = [f for f in found_codes if f is not None]
        if known:
            said.update(known)
        elif isinstance(concept.get("text"), str) and \
                concept["text"].strip().lower() in texts:
            said.add(texts[concept["text"].strip().lower()])
        else:
            return set()
    if "valueBoolean" in element:
        if not isinstance(element["valueBoolean"], bool):
            return set()
        said.add(element["valueBoolean"])
    if "valueString" in element:
        text = element["valueString"]
        if not isinstance(text, str) or text.strip().lower() not in texts:
            return set()
        said.add(texts[text.strip().lower()])
    for interpretation in element.get("interpretation") or []:
        for coding in codings(interpretation):
            found = codes.qualitative.get(key(coding.get("system"), coding.get("code")))
            if found is not None:
                said.add(found)
    return said


def _history_facts(concept: Any, table: Mapping[tuple[str, str], str]) -> list[str]:
    """The yes/no facts the codes of ``concept`` make true (in the order of the codes)."""
    found = [table[k] for c in codings(concept) for k in [key(c.get("system"), c.get("code"))]
             if k in table]
    return list(dict.fromkeys(found))


def history_when(text: Any) -> When:
    """A history date: a full date or dateTime, or a year or month, placed on its last day
    (a transplant "in 2019" was before any assessment date after 2019)."""
    if isinstance(text, str) and len(text) in (4, 7) and text[:4].isdigit():
        year, month = int(text[:4]), int(text[5:7]) if len(text) == 7 else 12
        last = dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)
        return When(last, None, text)
    return parse_when(text)


def _add_history(facts: list[str], texts: tuple[Any, ...], ref: str, record: Record) -> None:
    """Each fact true, at the first time given (or none); a time that cannot be read is
    reported and the resource not used (it might be after the assessment date)."""
    when: When | None = None
    for text in texts:
        if text is None:
            continue
        try:
            when = history_when(text)
        except ValueError as error:
            for fact in facts:
                record.unmapped.append(Unmapped(ref, f"time {error}: cannot be placed "
                                                     "relative to the assessment date", fact))
            return
        break
    record.history.extend(Candidate(fact, True, when, ref) for fact in facts)


def procedure(resource: Mapping[str, Any], ref: str, codes: CodeMap, record: Record) -> None:
    """A completed Procedure of the patient's history (allogeneic HSCT, cranial irradiation)
    makes its fact true; any other status is reported and says nothing (never false)."""
    facts = _history_facts(resource.get("code"), codes.history_procedures)
    if not facts:
        record.unmapped.append(Unmapped(ref, "no code in the code map"))
        return
    status = resource.get("status")
    if status != DONE:
        for fact in facts:
            record.unmapped.append(Unmapped(ref, f"status {status!r}: not a procedure that "
                                                 "was done", fact))
        return
    period = resource.get("performedPeriod")
    _add_history(facts, (resource.get("performedDateTime"),
                         period.get("start") if isinstance(period, MAP) else None), ref,
                 record)


def _not_current(resource: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(why the Condition is not used, or None; its clinical status)."""
    verification = next((str(c.get("code")) for c in
                         codings(resource.get("verificationStatus"))), None)
    clinical = next((str(c.get("code")) for c in codings(resource.get("clinicalStatus"))),
                    None)
    why = None
    if verification in REFUTED:
        why = f"verification status {verification!r} excludes it"
    elif verification in UNCONFIRMED:
        why = f"verification status {verification!r}: not a confirmed diagnosis"
    elif clinical in NOT_CURRENT:
        why = f"clinical status {clinical!r}: not the current diagnosis"
    return why, clinical


def condition(resource: Mapping[str, Any], ref: str, codes: CodeMap, record: Record) -> None:
    """An ALL diagnosis with the facts its codes carry, a history Condition (Down syndrome),
    or a report of why it is not used."""
    found = [(f"{k[0]}|{k[1]}", codes.conditions[k]) for c in codings(resource.get("code"))
             for k in [key(c.get("system"), c.get("code"))] if k in codes.conditions]
    history = _history_facts(resource.get("code"), codes.history_conditions)
    if not found and not history:
        record.unmapped.append(Unmapped(ref, "no code in the code map"))
        return
    why, clinical = _not_current(resource)
    if why is not None:
        for fact in history:
            record.unmapped.append(Unmapped(ref, why, fact))
        if found:
            record.unmapped.append(Unmapped(ref, why))
            record.rejected.append(Unmapped(ref, why))
        return
    if history:
        period = resource.get("onsetPeriod")
        _add_history(history, (resource.get("onsetDateTime"),
                               period.get("start") if isinstance(period, MAP) else None,
                               resource.get("recordedDate")), ref, record)
    if found:
        _diagnosis(resource, ref, found, clinical, record)


def _diagnosis(resource: Mapping[str, Any], ref: str, found: list[tuple[str, Any]],
               clinical: str | None, record: Record) -> None:
    when: When | None = None
    period = resource.get("onsetPeriod")
    for text in (resource.get("onsetDateTime"),
                 period.get("start") if isinstance(period, Mapping) else None,
                 resource.get("recordedDate")):
        if text is None:
            continue
        try:
            when = parse_when(text)
        except ValueError as error:
            record.unmapped.append(Unmapped(ref, f"onset {error}: the diagnosis date is "
                                                 "unknown"))
        break
    age = resource.get("onsetAge")
    onset_age = None
    if isinstance(age, Mapping) and isinstance(age.get("value"), int | float) and \
            age.get("code", age.get("unit")) in ("a", "yr", "years", "year") and \
            age.get("comparator") is None:
        onset_age = float(age["value"])
    facts: dict[str, Any] = {}
    for _code, carried in found:
        for fact, value in carried.items():
            value = typed(fact, value)
            if fact in facts and facts[fact] != value:
                record.unmapped.append(Unmapped(ref, f"its codes disagree on {fact}", fact))
                facts[fact] = _DISAGREE
            elif facts.get(fact) is not _DISAGREE:
                facts[fact] = value
    facts = {f: v for f, v in facts.items() if v is not _DISAGREE}
    record.diagnoses.append((Diagnosis(ref, tuple(c for c, _ in found),
                                       when.day if when else None, clinical, onset_age),
                             {"when": when, **facts}))


_DISAGREE = object()

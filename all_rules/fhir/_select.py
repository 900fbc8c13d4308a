"""Choosing each fact's value by time, relative to the assessment date.

A current fact (height, weight, MRD now, phase, ...) takes the latest usable value at or
before the assessment date; an at-diagnosis fact takes the value nearest the ALL diagnosis
date within a window. Values after the assessment date, vitals too old for body surface area,
and a child's height for an adult are left out and reported. Two different values at the
same time leave the fact unknown, reported. The windows are :class:`Windows` (docs/fhir.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._code_map import Unmapped
from ._read import Candidate, When

AT_DIAGNOSIS = frozenset({"wbc_at_diagnosis_10e9_per_l", "cns_status", "ph_status",
                          "kmt2a_rearranged", "hypodiploidy", "high_hyperdiploidy",
                          "etv6_runx1", "iamp21", "tcf3_hlf", "ph_like"})
"""The disease at presentation: a later BCR::ABL1 result measures response, not Ph status;
a later ETV6::RUNX1 or karyotype result on a remission marrow measures residual disease, not
the leukemia's subtype. (ABL1 T315I is tested at relapse or on resistance: a current fact.)"""


@attrs.frozen
class Windows:
    """How old a value may be to be used (days), and the window around the diagnosis."""

    weight_days: int = 30
    """weight (and a measured BSA) used for body surface area: at most this old."""
    bsa_days: int = 30
    height_days: int = 365
    """an adult's height: at most this old."""
    child_height_days: int = 90
    """the height of a patient under ``adult_years`` (still growing): at most this old."""
    adult_years: float = 18.0
    diagnosis_before_days: int = 30
    """at-diagnosis values: from this many days before the diagnosis date ..."""
    diagnosis_after_days: int = 7
    """... to this many days after it (treatment changes the counts soon after)."""


@attrs.frozen
class Source:
    """Where a fact's value came from: the resource and the date of the value."""

    resource: str
    date: str | None = None

    def __str__(self) -> str:
        return f"{self.resource} ({self.date})" if self.date else self.resource


@attrs.define
class Chosen:
    values: dict[str, Any] = attrs.Factory(dict)
    sources: dict[str, Source] = attrs.Factory(dict)
    unmapped: list[Unmapped] = attrs.Factory(list)
    undetermined: set[str] = attrs.Factory(set)


def _years(birth: dt.date | None, day: dt.date) -> float | None:
    return None if birth is None else (day - birth).days / 365.25


def _same_time(a: When, b: When) -> bool:
    return a.day == b.day and (a.instant is None or b.instant is None or
                               a.instant == b.instant)


def _group(ordered: list[Candidate]) -> list[Candidate]:
    """The first candidate and every other at the same time as it."""
    first = ordered[0]
    assert first.when is not None
    return [c for c in ordered if c.when is not None and _same_time(c.when, first.when)]


def _latest_key(c: Candidate) -> tuple[dt.date, bool, dt.datetime]:
    assert c.when is not None
    instant = c.when.instant or dt.datetime.min.replace(tzinfo=dt.UTC)
    return (c.when.day, c.when.instant is not None, instant)


def choose(candidates: Iterable[Candidate], *, on: dt.date, diagnosis_day: dt.date | None,
           birth: dt.date | None, windows: Windows) -> Chosen:
    """Each fact's value from its candidates; what was left out is reported."""
    by_fact: dict[str, list[Candidate]] = {}
    result = Chosen()
    for candidate in candidates:
        if candidate.when is not None and candidate.when.day > on:
            result.unmapped.append(Unmapped(candidate.ref, f"dated {candidate.when.text}, after "
                                            f"the assessment date {on}", candidate.fact))
            continue
        by_fact.setdefault(candidate.fact, []).append(candidate)
    for fact, found in by_fact.items():
        if fact in AT_DIAGNOSIS:
            group = _near_diagnosis(fact, found, diagnosis_day, windows, result)
        else:
            group = _latest(fact, found, on, birth, windows, result)
        if group:
            _settle(fact, group, result)
    return result


def _latest(fact: str, found: list[Candidate], on: dt.date, birth: dt.date | None,
            windows: Windows, result: Chosen) -> list[Candidate]:
    group = _group(sorted(found, key=_latest_key, reverse=True))
    day = group[0].when.day if group[0].when else on
    limit = {"weight_kg": windows.weight_days, "bsa_m2": windows.bsa_days}.get(fact)
    if fact == "height_cm":
        now, then = _years(birth, on), _years(birth, day)
        if now is not None and then is not None and then < windows.adult_years <= now:
            for c in group:
                result.unmapped.append(Unmapped(c.ref, f"height measured at age {then:.1f}, "
                                                "a child's height for an adult", fact))
            return []
        limit = windows.child_height_days if now is not None and \
            now < windows.adult_years else windows.height_days
    if limit is not None and (on - day).days > limit:
        for c in group:
            result.unmapped.append(Unmapped(c.ref, f"measured {(on - day).days} days before "
                                            f"the assessment, older than the {limit}-day "
                                            "window", fact))
        return []
    return group


def _near_diagnosis(fact: str, found: list[Candidate], diagnosis_day: dt.date | None,
                    windows: Windows, result: Chosen) -> list[Candidate]:
    if diagnosis_day is None:
        for c in found:
            result.unmapped.append(Unmapped(c.ref, "no dated ALL diagnosis to place this "
                                                   "at-diagnosis value against", fact))
        return []
    inside = []
    for c in found:
        offset = (c.when.day - diagnosis_day).days if c.when else None
        if offset is None or not -windows.diagnosis_before_days <= offset <= \
                windows.diagnosis_after_days:
            continue
        inside.append((abs(offset), offset > 0, _latest_key(c)[2], c))
    if not inside:
        nearest = min(found, key=lambda c: abs((c.when.day - diagnosis_day).days)
                      if c.when else 10**6)
        days = (nearest.when.day - diagnosis_day).days if nearest.when else None
        result.unmapped.append(Unmapped(
            nearest.ref, f"{days:+d} days from the diagnosis date {diagnosis_day}, outside the "
                         f"window (-{windows.diagnosis_before_days} to "
                         f"+{windows.diagnosis_after_days} days)", fact))
        return []
    inside.sort(key=lambda t: t[:3])
    return _group([t[3] for t in inside])


def _settle(fact: str, group: list[Candidate], result: Chosen) -> None:
    values = {_hashable(c.value) for c in group}
    if len(values) > 1:
        first = group[0]
        for c in group[1:]:
            if c.value != first.value:
                result.unmapped.append(Unmapped(
                    c.ref, f"{fact} = {c.value!r} conflicts with {first.ref} "
                           f"({first.value!r}) at the same time: {fact} left unknown", fact))
        result.undetermined.add(fact)
        return
    first = group[0]
    result.values[fact] = first.value
    result.sources[fact] = Source(first.ref, first.when.text if first.when else None)


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, Mapping | list) else value

"""A loaded guideline: checked ruleset + compiled engine, and the assessment of one patient."""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from pydantic import ValidationError

from . import _format
from ._conditions import DerivedTest, FactTest, suggest
from ._engine import Engine, Fired
from ._prepare import PreparedFacts, prepare
from ._ruleset import Rule, Ruleset, load
from ._schema import PHASE_ORDER, SEVERITY_RANK, Concludes, DoseSpec, RiskGroup
from .exceptions import EvaluationError, FieldError, InvalidFactsError
from .facts import PatientFacts, Plan
from .output import (
    Assessment,
    DoseLine,
    Evidence,
    Recommendation,
    Risk,
    RulesetInfo,
    _trusted,
)

__all__ = ["Guideline", "assess", "validate_facts"]


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(facts)"


def _field_error(item: Mapping[str, Any]) -> FieldError:
    loc = tuple(item["loc"])
    path = _field_path(loc)
    kind = item["type"]
    value = item.get("input")
    if kind == "extra_forbidden":
        known = Plan.model_fields if loc[:1] == ("plan",) else PatientFacts.model_fields
        return FieldError(path, f"unknown field{suggest(str(loc[-1]), known)}")
    if kind == "missing":
        return FieldError(path, "is required")
    message = str(item["msg"]).removeprefix("Value error, ")
    if kind != "value_error" and not isinstance(value, dict | list):
        message += f" (got {value!r})"
    return FieldError(path, message)


def validate_facts(facts: PatientFacts | Mapping[str, Any]) -> PatientFacts:
    """Check one patient's facts; raise InvalidFactsError naming every offending field."""
    if isinstance(facts, PatientFacts):
        return facts
    if not isinstance(facts, Mapping):
        raise InvalidFactsError([FieldError("(facts)", "must be a JSON object / mapping, got "
                                             f"{type(facts).__name__}")])
    try:
        return PatientFacts.model_validate(dict(facts))
    except ValidationError as error:
        raise InvalidFactsError([_field_error(item) for item in error.errors()]) from None


@attrs.frozen
class _Leaf:
    """One test of one rule branch, with everything about its evidence fixed at load."""

    fact: str
    test: str
    constant: Evidence | None
    """The evidence itself when it does not depend on the patient (derived-fact tests)."""


_EVIDENCE_CACHE_LIMIT = 65_536


class Guideline:
    """The ALL guideline, loaded, checked and compiled; ``assess`` is thread-safe."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.engine = Engine(ruleset)
        self.info = _trusted(RulesetInfo, {"name": ruleset.name, "version": ruleset.version,
                                           "digest": ruleset.digest})
        self._groups = {r.spec.id: r.spec.group.value for r in ruleset.rules
                        if r.spec.group is not None}
        self._leaves = {rule.key: [[self._leaf(t) for t in branch] for branch in rule.branches]
                        for rule in ruleset.rules}
        self._evidence_cache: dict[tuple[str, str, Any], Evidence] = {}

    @classmethod
    def load(cls, directory: str | Path | None = None, *,
             parameters: Mapping[str, float] | None = None,
             overlay: str | Path | None = None) -> Guideline:
        """Load a ruleset directory (default: the shipped guideline), with institution
        parameter overrides given directly and/or as an overlay YAML file."""
        return cls(load(Path(directory) if directory is not None else None, parameters,
                        Path(overlay) if overlay is not None else None))

    @classmethod
    def default(cls) -> Guideline:
        """The shipped guideline with default parameters (loaded once per process)."""
        return _default()

    def close(self) -> None:
        self.engine.close()

    def rule(self, rule_id: str) -> list[Rule]:
        """The rule (and its variants) with this id."""
        return [rule for rule in self.ruleset.rules if rule.spec.id == rule_id]

    def assess(self, facts: PatientFacts | Mapping[str, Any]) -> Assessment:
        """The guideline's recommendations for one patient.

        Raises InvalidFactsError for bad input and EvaluationError when the engine fails;
        never returns a partial result.
        """
        prepared = prepare(validate_facts(facts))
        fired = self.engine.evaluate(prepared.engine_fact())
        return self._assessment(prepared, fired)

    def _assessment(self, prepared: PreparedFacts, fired: list[Fired]) -> Assessment:
        groups: set[str] = set()
        features: set[str] = set()
        missing: set[str] = set()
        chosen: dict[str, tuple[Rule, list[int]]] = {}
        for item in fired:
            spec = item.rule.spec
            concludes = spec.concludes
            if concludes is Concludes.RISK_GROUP:
                groups.add(self._groups[spec.id])
                continue
            if concludes is Concludes.MISSING_FACT:
                missing.add(spec.fact or "")
                continue
            if concludes is Concludes.RISK_FEATURE:
                features.add(spec.id)
            current = chosen.get(spec.id)
            if current is None or _outranks(item.rule, current[0]):
                chosen[spec.id] = (item.rule, [item.branch])
            elif current[0] is item.rule:
                current[1].append(item.branch)
        if len(groups) != 1:
            raise EvaluationError(f"ruleset concluded {len(groups)} risk groups "
                                  f"({', '.join(sorted(groups)) or 'none'}); expected one")
        items = [self._item(rule, sorted(branches), prepared)
                 for rule, branches in chosen.values()]
        items.sort(key=_item_order)
        (group,) = groups
        return _trusted(Assessment, {
            "patient_id": prepared.patient_id,
            "ruleset": self.info,
            "risk": _trusted(Risk, {"group": RiskGroup(group), "features": tuple(sorted(features)),
                                    "missing": tuple(sorted(missing))}),
            "recommendations": tuple(items),
        })

    def _leaf(self, leaf: FactTest | DerivedTest) -> _Leaf:
        if isinstance(leaf, FactTest):
            return _Leaf(leaf.fact, _format.test_text(leaf, self.ruleset.values), None)
        value: Any
        if leaf.name in self._groups:
            group = self._groups[leaf.name]
            fact, value, test = "risk.group", group, f"{'==' if leaf.present else '!='} {group}"
        elif leaf.name is not None:
            fact, value = leaf.name, leaf.present
            test = "derived" if leaf.present else "not derived"
        else:
            fact = {"risk_feature": "risk.features", "missing_fact": "risk.missing",
                    "risk_group": "risk.group"}[leaf.kind or ""]
            value = None if leaf.present else []
            test = "any derived" if leaf.present else "none derived"
        evidence = Evidence(fact=fact, value=value, test=test)
        return _Leaf(fact, test, evidence)

    def _evidence(self, leaf: _Leaf, values: Mapping[str, Any]) -> Evidence:
        if leaf.constant is not None:
            return leaf.constant
        value = values.get(leaf.fact)
        key = (leaf.fact, leaf.test, value)
        cached = self._evidence_cache.get(key)
        if cached is None:
            if len(self._evidence_cache) >= _EVIDENCE_CACHE_LIMIT:
                self._evidence_cache.clear()
            cached = _trusted(Evidence, {"fact": leaf.fact, "value": value, "test": leaf.test})
            self._evidence_cache[key] = cached
        return cached

    def _item(self, rule: Rule, branches: list[int], prepared: PreparedFacts) -> Recommendation:
        spec = rule.spec
        plan = self._leaves[rule.key]
        evidence: list[Evidence] = []
        seen: set[tuple[str, str]] = set()
        for branch in branches:
            for leaf in plan[branch]:
                if (leaf.fact, leaf.test) not in seen:
                    seen.add((leaf.fact, leaf.test))
                    evidence.append(self._evidence(leaf, prepared.values))
        lookup = functools.partial(self._lookup, prepared=prepared, evidence=evidence)
        assert rule.text is not None
        assert rule.reason is not None
        doses = tuple(self._dose(d, prepared) for d in spec.doses) if spec.doses else None
        return _trusted(Recommendation, {
            "id": spec.id, "kind": spec.kind, "severity": spec.severity, "phase": spec.phase,
            "text": rule.text.render(lookup), "reason": rule.reason.render(lookup),
            "evidence": tuple(evidence), "citations": tuple(spec.citations), "doses": doses,
        })

    def _lookup(self, name: str, *, prepared: PreparedFacts,
                evidence: list[Evidence]) -> str | None:
        if name.startswith("$"):
            return _format.number(self.ruleset.values[name[1:]])
        if name == "evidence":
            return "; ".join(_evidence_phrase(e) for e in evidence)
        if name == "bsa_source":
            return {"given": "as given", "mosteller": "Mosteller, from height and weight"}.get(
                prepared.bsa_source or "")
        return _format.value_text(prepared.values.get(name))

    def _dose(self, spec: DoseSpec, prepared: PreparedFacts) -> DoseLine:
        values = self.ruleset.values

        def number(ref: Any) -> float | None:
            if ref is None:
                return None
            return float(values[ref[1:]]) if isinstance(ref, str) else float(ref)

        per_m2 = number(spec.per_m2)
        assert per_m2 is not None
        per_m2_max = number(spec.per_m2_max)
        cap = number(spec.cap)
        bsa: float | None = prepared.values.get("bsa_m2")
        capped = False

        def amount(per: float | None) -> float | None:
            nonlocal capped
            if per is None or bsa is None:
                return None
            raw = per * bsa
            if cap is not None and raw > cap:
                capped = True
                return cap
            return round(float(raw), spec.decimals)

        return _trusted(DoseLine, {
            "drug": spec.drug, "per_m2": per_m2, "per_m2_max": per_m2_max,
            "per_m2_unit": f"{spec.unit}/m2", "dose": amount(per_m2),
            "dose_max": amount(per_m2_max), "unit": spec.unit, "cap": cap, "capped": capped,
            "schedule": spec.schedule})


def _item_order(item: Recommendation) -> tuple[int, str]:
    return (PHASE_ORDER[item.phase], item.id)


def _outranks(rule: Rule, other: Rule) -> bool:
    assert rule.spec.severity is not None
    assert other.spec.severity is not None
    return SEVERITY_RANK[rule.spec.severity] > SEVERITY_RANK[other.spec.severity]


def _evidence_phrase(entry: Evidence) -> str:
    if entry.test in ("derived", "not derived", "any derived", "none derived"):
        return f"{entry.fact} {entry.test}"
    return f"{_format.fact_phrase(entry.fact, entry.value)} ({entry.test})"


_default_lock = threading.Lock()


@functools.cache
def _default_cached() -> Guideline:
    return Guideline.load()


def _default() -> Guideline:
    with _default_lock:
        return _default_cached()


def assess(facts: PatientFacts | Mapping[str, Any], *,
           guideline: Guideline | None = None) -> Assessment:
    """Assess one patient against the guideline (the shipped one unless ``guideline`` given).

    ``facts`` is a :class:`PatientFacts` or a plain mapping of SPEC §1 fields.
    """
    return (guideline or Guideline.default()).assess(facts)


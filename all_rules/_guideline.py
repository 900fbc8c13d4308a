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
from ._engine import Engine, Fired, resolve
from ._prepare import PreparedFacts, prepare
from ._ruleset import Rule, Ruleset, load
from ._schema import PHASE_ORDER, SEVERITY_RANK, Concludes, DoseSpec, RiskGroup
from .exceptions import EvaluationError, FieldError, InvalidFactsError
from .facts import PatientFacts, Plan
from .output import Assessment, DoseLine, Evidence, Recommendation, Risk, RulesetInfo

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
class _Context:
    prepared: PreparedFacts
    groups: dict[str, str]


class Guideline:
    """The ALL guideline, loaded, checked and compiled; ``assess`` is thread-safe."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.engine = Engine(ruleset)
        self.info = RulesetInfo(name=ruleset.name, version=ruleset.version,
                                digest=ruleset.digest)
        self._groups = {r.spec.id: r.spec.group.value for r in ruleset.rules
                        if r.spec.group is not None}

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
        groups = sorted({self._groups[f.rule.spec.id] for f in fired
                         if f.rule.spec.concludes is Concludes.RISK_GROUP})
        if len(groups) != 1:
            raise EvaluationError(f"ruleset concluded {len(groups)} risk groups "
                                  f"({', '.join(groups) or 'none'}); expected exactly one")
        features = sorted({f.rule.spec.id for f in fired
                           if f.rule.spec.concludes is Concludes.RISK_FEATURE})
        missing = sorted({f.rule.spec.fact or "" for f in fired
                          if f.rule.spec.concludes is Concludes.MISSING_FACT})
        context = _Context(prepared, {"group": groups[0]})
        chosen: dict[str, tuple[Rule, list[int]]] = {}
        for item in fired:
            spec = item.rule.spec
            if spec.concludes not in (Concludes.RECOMMENDATION, Concludes.RISK_FEATURE):
                continue
            current = chosen.get(spec.id)
            if current is None or _outranks(item.rule, current[0]):
                chosen[spec.id] = (item.rule, [item.branch])
            elif current[0] is item.rule:
                current[1].append(item.branch)
        items = [self._item(rule, sorted(branches), context)
                 for rule, branches in chosen.values()]
        items.sort(key=lambda r: (PHASE_ORDER[r.phase], r.id))
        return Assessment.model_construct(
            patient_id=prepared.patient_id,
            ruleset=self.info,
            risk=Risk.model_construct(group=RiskGroup(groups[0]), features=tuple(features),
                                      missing=tuple(missing)),
            recommendations=tuple(items),
        )

    def _item(self, rule: Rule, branches: list[int], context: _Context) -> Recommendation:
        spec = rule.spec
        evidence: list[Evidence] = []
        seen: set[tuple[str, str]] = set()
        for branch in branches:
            for leaf in rule.branches[branch]:
                entry = self._evidence(leaf, context)
                if (entry.fact, entry.test) not in seen:
                    seen.add((entry.fact, entry.test))
                    evidence.append(entry)
        lookup = functools.partial(self._lookup, context=context, evidence=evidence)
        assert rule.text is not None and rule.reason is not None and spec.kind is not None
        assert spec.severity is not None and spec.phase is not None
        doses = tuple(self._dose(d, context.prepared) for d in spec.doses) if spec.doses else None
        return Recommendation.model_construct(
            id=spec.id, kind=spec.kind, severity=spec.severity, phase=spec.phase,
            text=rule.text.render(lookup), reason=rule.reason.render(lookup),
            evidence=tuple(evidence), citations=tuple(spec.citations), doses=doses,
        )

    def _evidence(self, leaf: FactTest | DerivedTest, context: _Context) -> Evidence:
        if isinstance(leaf, FactTest):
            return Evidence.model_construct(
                fact=leaf.fact, value=context.prepared.values.get(leaf.fact),
                test=_format.test_text(leaf, self.ruleset.values))
        if leaf.name in self._groups:
            group = self._groups[leaf.name]
            return Evidence.model_construct(fact="risk.group", value=group,
                                            test=f"{'==' if leaf.present else '!='} {group}")
        if leaf.name is not None:
            return Evidence.model_construct(fact=leaf.name, value=leaf.present,
                                            test="derived" if leaf.present else "not derived")
        label = {"risk_feature": "risk.features", "missing_fact": "risk.missing",
                 "risk_group": "risk.group"}[leaf.kind or ""]
        return Evidence.model_construct(fact=label, value=None if leaf.present else [],
                                        test="any derived" if leaf.present else "none derived")

    def _lookup(self, name: str, *, context: _Context, evidence: list[Evidence]) -> str | None:
        if name.startswith("$"):
            return _format.number(self.ruleset.values[name[1:]])
        if name == "evidence":
            return "; ".join(_evidence_phrase(e) for e in evidence)
        if name == "bsa_source":
            return {"given": "as given", "mosteller": "Mosteller, from height and weight"}.get(
                context.prepared.bsa_source or "")
        return _format.value_text(context.prepared.values.get(name))

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
        bsa = prepared.values.get("bsa_m2")
        capped = False

        def amount(per: float | None) -> float | None:
            nonlocal capped
            if per is None or bsa is None:
                return None
            raw = per * bsa
            if cap is not None and raw > cap:
                capped = True
                return cap
            return round(raw, spec.decimals)

        return DoseLine.model_construct(
            drug=spec.drug, per_m2=per_m2, per_m2_max=per_m2_max, per_m2_unit=f"{spec.unit}/m2",
            dose=amount(per_m2), dose_max=amount(per_m2_max), unit=spec.unit, cap=cap,
            capped=capped, schedule=spec.schedule)


def _outranks(rule: Rule, other: Rule) -> bool:
    assert rule.spec.severity is not None and other.spec.severity is not None
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


resolve = resolve  # re-exported for the CLI's rule display

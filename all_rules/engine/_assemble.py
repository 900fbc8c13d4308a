"""From fired rules to the output: selection, wording, evidence, doses, and JSON.

Two renderings of one selection: pydantic models (``Assessment``) for the API, and JSON text
written straight from pre-encoded fragments for cohorts, where building and dumping models
would cost more than the engine. A property test holds the two byte-identical.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from all_rules.exceptions import EvaluationError
from all_rules.output import (
    Assessment,
    DoseLine,
    Evidence,
    Recommendation,
    Risk,
    RulesetInfo,
    _trusted,
)
from all_rules.ruleset._conditions import DerivedTest, FactTest
from all_rules.ruleset._factspec import FACTS
from all_rules.ruleset._loader import Rule, Ruleset
from all_rules.ruleset._schema import PHASE_ORDER, SEVERITY_RANK, Concludes, DoseSpec, RiskGroup
from all_rules.ruleset._template import Template

from . import _format
from ._network import Fired, json_string
from ._prepare import PreparedFacts


class _Memo(dict[Any, Any]):
    """A bounded memo for immutable values shared between patients.

    A value is kept only for a key seen before: most rendered items name a patient's own
    continuous values (age, WBC, BSA) and never recur, and admitting them would fill the memo
    and push out the items that do recur. Keys seen once are remembered in a second, equally
    bounded set. Either empties itself when full: no eviction bookkeeping on the hot path.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self._seen: set[Any] = set()

    def get_or_make(self, key: Any, make: Any) -> Any:
        found = self.get(key)
        if found is None:
            found = make()
            seen = self._seen
            if key in seen:
                if len(self) >= self.limit:
                    self.clear()
                self[key] = found
            else:
                if len(seen) >= self.limit:
                    seen.clear()
                seen.add(key)
        return found


_CACHE_LIMIT = 65_536
_DERIVED_TESTS = ("derived", "not derived", "any derived", "none derived")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))



def _strings(values: tuple[str, ...]) -> str:
    return "[" + ",".join(json_string(v) for v in values) + "]"


@attrs.frozen
class _Leaf:
    """One test of one rule branch, with everything about its evidence fixed at load."""

    fact: str
    test: str
    constant: tuple[Any] | None
    """``(value,)`` when the evidence value does not depend on the patient."""


@attrs.frozen
class Selection:
    """What the fired rules conclude, before any wording."""

    group: str
    features: tuple[str, ...]
    missing: tuple[str, ...]
    items: tuple[tuple[Rule, tuple[int, ...]], ...]
    """The items in output order, each with the branches of its condition that fired."""


@attrs.frozen
class _RuleInfo:
    leaves: list[list[_Leaf]]
    order: tuple[int, str]
    prefix: str
    citations: str
    concludes: Concludes
    rank: int
    deps: tuple[str, ...]
    """Every fact the item's wording, evidence or doses read: with the branches, the key
    under which a rendered item is memoized."""
    uses_bsa_source: bool
    doses: tuple[_DoseRule, ...]
    fixed_words: tuple[str | None, str | None]
    """Text and reason when they do not depend on the patient, else None."""
    concluded: str
    """The risk group a group rule concludes, or the fact a missing-fact rule names."""
    discrete: tuple[str, ...]
    """The deps that take few values (enums, booleans, integers)."""
    continuous: tuple[str, ...]
    """The deps that are measurements (``number`` facts): an item naming them is rendered
    from a skeleton with holes for them, since their values rarely recur."""


_ITEM_CACHE_LIMIT = 20_000
_RISK_GROUP, _MISSING_FACT, _RISK_FEATURE = (Concludes.RISK_GROUP, Concludes.MISSING_FACT,
                                             Concludes.RISK_FEATURE)


def _by_order(entry: tuple[Rule, list[int], _RuleInfo]) -> tuple[int, str]:
    return entry[2].order


class Assembler:
    """Builds the output for one guideline; all per-rule work is done once, here."""

    def __init__(self, ruleset: Ruleset, info: RulesetInfo) -> None:
        self.ruleset = ruleset
        self.info = info
        self.groups = {r.spec.id: r.spec.group.value for r in ruleset.rules
                       if r.spec.group is not None}
        self.rules: dict[str, _RuleInfo] = {}
        for rule in ruleset.rules:
            spec = rule.spec
            prefix = citations = ""
            order = (-1, spec.id)  # derivation rules: no item, but the id is read per patient
            if spec.kind is not None and spec.severity is not None and spec.phase is not None:
                order = (PHASE_ORDER[spec.phase], spec.id)
                prefix = (f'{{"id":{_dumps(spec.id)},"kind":"{spec.kind.value}",'
                          f'"severity":"{spec.severity.value}","phase":"{spec.phase.value}",')
                citations = _dumps(list(spec.citations))
            names = {n for t in (rule.text, rule.reason) if t is not None for n in t.names()}
            deps = {leaf.fact for branch in rule.branches for leaf in branch
                    if isinstance(leaf, FactTest)}
            deps |= {n for n in names if n in FACTS}
            if spec.doses:
                deps.add("bsa_m2")
            rank = SEVERITY_RANK[spec.severity] if spec.severity is not None else 0
            self.rules[rule.key] = _RuleInfo(
                [[self._leaf(t) for t in branch] for branch in rule.branches], order, prefix,
                citations, spec.concludes, rank, tuple(sorted(deps)), "bsa_source" in names,
                tuple(_DoseRule.of(d, ruleset.values) for d in spec.doses),
                self._fixed_words(rule),
                self.groups.get(spec.id) or spec.fact or "",
                tuple(sorted(d for d in deps if FACTS[d].type != "number")),
                tuple(sorted(d for d in deps if FACTS[d].type == "number")))
        self._header = f'"ruleset":{info.model_dump_json()},'
        self._evidence_models = _Memo(_CACHE_LIMIT)
        self._evidence_json = _Memo(_CACHE_LIMIT)
        self._item_models = _Memo(_ITEM_CACHE_LIMIT)
        self._item_json = _Memo(_ITEM_CACHE_LIMIT)
        self._skeletons = _Memo(_ITEM_CACHE_LIMIT)

    def _leaf(self, leaf: FactTest | DerivedTest) -> _Leaf:
        if isinstance(leaf, FactTest):
            return _Leaf(leaf.fact, _format.test_text(leaf, self.ruleset.values), None)
        value: Any
        if leaf.name in self.groups:
            group = self.groups[leaf.name]
            fact, value, test = "risk.group", group, f"{'==' if leaf.present else '!='} {group}"
        elif leaf.name is not None:
            fact, value = leaf.name, leaf.present
            test = "derived" if leaf.present else "not derived"
        else:
            fact = {"risk_feature": "risk.features", "missing_fact": "risk.missing",
                    "risk_group": "risk.group"}[leaf.kind or ""]
            value = None if leaf.present else []
            test = "any derived" if leaf.present else "none derived"
        return _Leaf(fact, test, (value,))

    # --- selection -----------------------------------------------------------------------

    def select(self, fired: list[Fired]) -> Selection:
        """What the fired rules conclude. (Not memoized: a quarter of patients fire a set of
        rule branches seen in no earlier patient, and keeping the sets cost more memory —
        about 20 MB per process over a large cohort — than selecting again costs time.)"""
        groups: set[str] = set()
        features: set[str] = set()
        missing: set[str] = set()
        chosen: dict[str, tuple[Rule, list[int], _RuleInfo]] = {}
        rules = self.rules
        for item in fired:
            rule = item.rule
            info = rules[rule.key]
            concludes = info.concludes
            if concludes is _RISK_GROUP:
                groups.add(info.concluded)
                continue
            if concludes is _MISSING_FACT:
                missing.add(info.concluded)
                continue
            rule_id = info.order[1]
            if concludes is _RISK_FEATURE:
                features.add(rule_id)
            current = chosen.get(rule_id)
            if current is None or info.rank > current[2].rank:
                chosen[rule_id] = (rule, [item.branch], info)
            elif current[0] is rule:
                current[1].append(item.branch)
        if len(groups) != 1:
            raise EvaluationError(f"ruleset concluded {len(groups)} risk groups "
                                  f"({', '.join(sorted(groups)) or 'none'}); expected one")
        ordered = sorted(chosen.values(), key=_by_order)
        items = tuple((rule, tuple(sorted(branches)) if len(branches) > 1 else (branches[0],))
                      for rule, branches, _ in ordered)
        (group,) = groups
        return Selection(group, tuple(sorted(features)), tuple(sorted(missing)), items)

    def _item_key(self, rule: Rule, branches: tuple[int, ...],
                  prepared: PreparedFacts) -> tuple[Any, ...]:
        info = self.rules[rule.key]
        values = prepared.values
        return (rule.key, *branches, None, *map(values.get, info.deps),
                prepared.bsa_source if info.uses_bsa_source else None)

    # --- one item's content --------------------------------------------------------------

    def _evidence(self, rule: Rule, branches: tuple[int, ...],
                  values: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
        leaves = self.rules[rule.key].leaves
        evidence: list[tuple[str, Any, str]] = []
        seen: set[tuple[str, str]] = set()
        for branch in branches:
            for leaf in leaves[branch]:
                if (leaf.fact, leaf.test) in seen:
                    continue
                seen.add((leaf.fact, leaf.test))
                value = leaf.constant[0] if leaf.constant else values.get(leaf.fact)
                evidence.append((leaf.fact, value, leaf.test))
        return evidence

    def _words(self, rule: Rule, prepared: PreparedFacts,
               evidence: list[tuple[str, Any, str]]) -> tuple[str, str]:
        values = self.ruleset.values

        def lookup(name: str) -> str | None:
            if name.startswith("$"):
                return _format.number(values[name[1:]])
            if name == "evidence":
                return "; ".join(_evidence_phrase(*entry) for entry in evidence)
            if name == "bsa_source":
                return {"given": "as given", "mosteller": "Mosteller, from height and weight"
                        }.get(prepared.bsa_source or "")
            return _format.value_text(prepared.values.get(name))

        assert rule.text is not None
        assert rule.reason is not None
        fixed = self.rules[rule.key].fixed_words
        return (fixed[0] if fixed[0] is not None else rule.text.render(lookup),
                fixed[1] if fixed[1] is not None else rule.reason.render(lookup))

    def _fixed_words(self, rule: Rule) -> tuple[str | None, str | None]:
        """A rule's text and reason, rendered once where they name only parameters."""
        values = self.ruleset.values

        def parameter(name: str) -> str | None:
            return _format.number(values[name[1:]])

        def fixed(template: Template | None) -> str | None:
            if template is None or not all(n.startswith("$") for n in template.names()):
                return None
            return template.render(parameter)

        return fixed(rule.text), fixed(rule.reason)


    # --- renderings ----------------------------------------------------------------------

    def model(self, prepared: PreparedFacts, selection: Selection) -> Assessment:
        """The assessment as pydantic models."""
        items = tuple(
            self._item_models.get_or_make(self._item_key(rule, branches, prepared),
                                          lambda r=rule, b=branches: self._item_model(
                                              r, b, prepared))
            for rule, branches in selection.items)
        return _trusted(Assessment, {
            "patient_id": prepared.patient_id,
            "ruleset": self.info,
            "risk": _trusted(Risk, {"group": RiskGroup(selection.group),
                                    "features": selection.features,
                                    "missing": selection.missing}),
            "recommendations": items,
        })

    def _item_model(self, rule: Rule, branches: tuple[int, ...],
                    prepared: PreparedFacts) -> Recommendation:
        spec = rule.spec
        evidence = self._evidence(rule, branches, prepared.values)
        text, reason = self._words(rule, prepared, evidence)
        dose_rules = self.rules[rule.key].doses
        bsa = prepared.values.get("bsa_m2")
        doses = [d.as_dict(bsa) for d in dose_rules] if dose_rules else None
        return _trusted(Recommendation, {
            "id": spec.id, "kind": spec.kind, "severity": spec.severity,
            "phase": spec.phase, "text": text, "reason": reason,
            "evidence": tuple(self._evidence_model(*e) for e in evidence),
            "citations": tuple(spec.citations),
            "doses": None if doses is None else tuple(_trusted(DoseLine, d) for d in doses),
        })

    def json(self, prepared: PreparedFacts, selection: Selection) -> str:
        """The assessment as compact JSON text, equal to ``Assessment.to_json(indent=None)``."""
        pid = prepared.patient_id
        parts = [f'{{"patient_id":{"null" if pid is None else json_string(pid)},', self._header,
                 f'"risk":{{"group":"{selection.group}",'
                 f'"features":{_strings(selection.features)},'
                 f'"missing":{_strings(selection.missing)}}},"recommendations":[']
        parts.append(",".join(self._item_json_text(rule, branches, prepared)
                              for rule, branches in selection.items))
        parts.append("]}")
        return "".join(parts)

    def _item_json_text(self, rule: Rule, branches: tuple[int, ...],
                        prepared: PreparedFacts) -> str:
        """One item's JSON: memoized whole when it names no measurement, else filled into
        a memoized skeleton (a measurement's value rarely recurs, its item's words do)."""
        info = self.rules[rule.key]
        if not info.continuous:
            text: str = self._item_json.get_or_make(
                self._item_key(rule, branches, prepared),
                lambda: self._item_text(rule, branches, prepared))
            return text
        values = prepared.values
        key = (rule.key, branches, *map(values.get, info.discrete),
               *[values.get(name) is None for name in info.continuous],
               prepared.bsa_source if info.uses_bsa_source else None)
        skeleton: tuple[Any, ...] = self._skeletons.get_or_make(
            key, lambda: self._skeleton(rule, branches, prepared))
        if not skeleton:
            return self._item_text(rule, branches, prepared)
        return _fill(skeleton, values, info.doses)

    def _skeleton(self, rule: Rule, branches: tuple[int, ...],
                  prepared: PreparedFacts) -> tuple[Any, ...]:
        """The item's JSON as fixed strings and holes: ``(0, fact)`` for a measurement in
        prose, ``(1, fact)`` for one as a JSON value, ``(2, None)`` for the doses.

        Built by rendering with markers in place of the measurements, and checked against
        a direct rendering; ``()`` when they differ (then the item is always rendered)."""
        info = self.rules[rule.key]
        marked = dict(prepared.values)
        for name in info.continuous:
            if marked.get(name) is not None:
                marked[name] = _Marker(f"\x01{name}\x02")
        text = self._item_text(rule, branches, attrs.evolve(prepared, values=marked),
                               doses_hole=True)
        skeleton: list[Any] = []
        at = 0
        for match in _HOLE.finditer(text):
            skeleton.append(text[at:match.start()])
            if match.group(1) is not None:
                skeleton.append((1, match.group(1)))
            elif match.group(2) is not None:
                skeleton.append((0, match.group(2)))
            else:
                skeleton.append((2, None))
            at = match.end()
        skeleton.append(text[at:])
        built = tuple(part for part in skeleton if part != "")
        if _fill(built, prepared.values, info.doses) != self._item_text(rule, branches,
                                                                         prepared):
            return ()
        return built

    def _item_text(self, rule: Rule, branches: tuple[int, ...], prepared: PreparedFacts,
                   doses_hole: bool = False) -> str:
        info = self.rules[rule.key]
        evidence = self._evidence(rule, branches, prepared.values)
        text, reason = self._words(rule, prepared, evidence)
        parts = [info.prefix,
                 f'"text":{json_string(text)},"reason":{json_string(reason)},"evidence":[',
                 ",".join(self._evidence_text(*e) for e in evidence),
                 f'],"citations":{info.citations}']
        if info.doses:
            bsa = prepared.values.get("bsa_m2")
            parts.append(',"doses":' + ("\x03" if doses_hole else _doses_json(info.doses, bsa)))
        parts.append("}")
        return "".join(parts)

    def _evidence_model(self, fact: str, value: Any, test: str) -> Evidence:
        evidence: Evidence = self._evidence_models.get_or_make(
            (fact, test, _typed(value)),
            lambda: _trusted(Evidence, {"fact": fact, "value": value, "test": test,
                                        "source": None}))
        return evidence

    def _evidence_text(self, fact: str, value: Any, test: str) -> str:
        text: str = self._evidence_json.get_or_make(
            (fact, test, _typed(value)),
            lambda: f'{{"fact":{_dumps(fact)},"value":{_dumps(value)},"test":{_dumps(test)}}}')
        return text


def _typed(value: Any) -> Any:
    """A cache key that keeps 1, 1.0 and True apart (they hash alike but print differently)."""
    return (type(value), value) if not isinstance(value, list) else (list, tuple(value))


def _evidence_phrase(fact: str, value: Any, test: str) -> str:
    if test in _DERIVED_TESTS:
        return f"{fact} {test}"
    return f"{_format.fact_phrase(fact, value)} ({test})"


@attrs.frozen
class _DoseRule:
    """One dose of a rule with its parameters resolved once; per patient only the amounts
    (which depend on the BSA) are computed."""

    drug: str
    per_m2: float
    per_m2_max: float | None
    unit: str
    cap: float | None
    schedule: str
    decimals: int
    head: str
    """The dose's JSON up to ``"dose":``, fixed for the guideline."""
    tail: str
    """The dose's JSON from ``"unit":`` to ``"capped":``, fixed for the guideline."""

    @classmethod
    def of(cls, spec: DoseSpec, values: Mapping[str, float]) -> _DoseRule:
        def number(ref: Any) -> float | None:
            if ref is None:
                return None
            return float(values[ref[1:]]) if isinstance(ref, str) else float(ref)

        per_m2 = number(spec.per_m2)
        assert per_m2 is not None
        per_m2_max, cap = number(spec.per_m2_max), number(spec.cap)
        head = (f'{{"drug":{_dumps(spec.drug)},"per_m2":{_dumps(per_m2)},'
                f'"per_m2_max":{_dumps(per_m2_max)},"per_m2_unit":{_dumps(spec.unit + "/m2")},'
                '"dose":')
        tail = f'"unit":{_dumps(spec.unit)},"cap":{_dumps(cap)},"capped":'
        return cls(spec.drug, per_m2, per_m2_max, spec.unit, cap, spec.schedule,
                   spec.decimals, head, tail)

    def amounts(self, bsa: float | None) -> tuple[float | None, float | None, bool]:
        """(dose, dose_max, capped) for this BSA; ``None`` amounts when BSA is unknown."""
        if bsa is None:
            return None, None, False
        cap, capped = self.cap, False
        amounts: list[float | None] = []
        for per in (self.per_m2, self.per_m2_max):
            if per is None:
                amounts.append(None)
                continue
            raw = per * bsa
            if cap is not None and raw > cap:
                capped = True
                amounts.append(cap)
            else:
                amounts.append(round(float(raw), self.decimals))
        return amounts[0], amounts[1], capped

    def as_dict(self, bsa: float | None) -> dict[str, Any]:
        dose, dose_max, capped = self.amounts(bsa)
        return {"drug": self.drug, "per_m2": self.per_m2, "per_m2_max": self.per_m2_max,
                "per_m2_unit": f"{self.unit}/m2", "dose": dose, "dose_max": dose_max,
                "unit": self.unit, "cap": self.cap, "capped": capped,
                "schedule": self.schedule}

    def as_json(self, bsa: float | None) -> str:
        """``_dumps(self.as_dict(bsa))``, from the fixed parts."""
        dose, dose_max, capped = self.amounts(bsa)
        return (f'{self.head}{_value_json(dose)},"dose_max":{_value_json(dose_max)},{self.tail}'
                f'{"true" if capped else "false"},"schedule":{json_string(self.schedule)}}}')


class _Marker(str):
    """A measurement's stand-in while a skeleton is rendered."""


#: A hole in a rendered skeleton: a marker as a JSON value, a marker inside prose, the doses.
_HOLE = re.compile(r'"\\u0001([^"\\]+)\\u0002"|\\u0001([^"\\]+)\\u0002|\x03')


def _doses_json(doses: tuple[_DoseRule, ...], bsa: float | None) -> str:
    return "[" + ",".join(d.as_json(bsa) for d in doses) + "]"


def _value_json(value: Any) -> str:
    """``_dumps(value)``, without json's overhead for the common finite float and None."""
    if type(value) is float:
        return float.__repr__(value)
    return "null" if value is None else _dumps(value)


def _fill(skeleton: tuple[Any, ...], values: Mapping[str, Any],
          doses: tuple[_DoseRule, ...]) -> str:
    out = []
    for part in skeleton:
        if type(part) is str:
            out.append(part)
            continue
        kind, name = part
        if kind == 0:
            out.append(_format.value_text(values[name]) or "unknown")
        elif kind == 1:
            out.append(_value_json(values[name]))
        else:
            out.append(_doses_json(doses, values.get("bsa_m2")))
    return "".join(out)

"""The assessment as JSON text, written straight from pre-encoded fragments.

For cohorts, where building and dumping pydantic models would cost more than the engine. The
text equals ``Assessment.to_json(indent=None)`` byte for byte (a property test holds the two
renderings together). An item that names no measurement is memoized whole; one that does
(age, WBC, BSA, …, whose values rarely recur) is filled into a memoized *skeleton*: its JSON
with holes for the measurements and the doses, checked against a direct rendering when built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from all_rules.output import ParameterOverride, RulesetInfo
from all_rules.ruleset._model import Rule

from . import _format, _wording
from ._doses import DoseRule, doses_json
from ._encode import dumps, json_string, value_json
from ._memo import CACHE_LIMIT, ITEM_CACHE_LIMIT, Memo, typed
from ._prepare import PreparedFacts
from ._ruleinfo import RuleInfo, item_key
from ._select import Selection


def _strings(values: tuple[str, ...]) -> str:
    return "[" + ",".join(json_string(v) for v in values) + "]"


class JsonWriter:
    """Writes one guideline's assessments as compact JSON text."""

    def __init__(self, info: RulesetInfo, parameters: Mapping[str, float],
                 rules: Mapping[str, RuleInfo],
                 overrides: tuple[ParameterOverride, ...] = ()) -> None:
        self.parameters = parameters
        self.rules = rules
        self._header = f'"ruleset":{info.model_dump_json()},' + overrides_json(overrides)
        self._evidence_json = Memo(CACHE_LIMIT)
        self._item_json = Memo(ITEM_CACHE_LIMIT)
        self._skeletons = Memo(ITEM_CACHE_LIMIT)

    def write(self, prepared: PreparedFacts, selection: Selection) -> str:
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
                item_key(rule, info, branches, prepared),
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
        evidence = _wording.evidence(info.leaves, branches, prepared.values)
        text, reason = _wording.words(rule, info.fixed_words, self.parameters, prepared,
                                      evidence)
        parts = [info.prefix,
                 f'"text":{json_string(text)},"reason":{json_string(reason)},"evidence":[',
                 ",".join(self._evidence_text(*e) for e in evidence),
                 f'],"citations":{info.citations}']
        if info.doses:
            bsa = prepared.values.get("bsa_m2")
            parts.append(',"doses":' + ("\x03" if doses_hole else doses_json(info.doses, bsa)))
        parts.append("}")
        return "".join(parts)

    def _evidence_text(self, fact: str, value: Any, test: str) -> str:
        text: str = self._evidence_json.get_or_make(
            (fact, test, typed(value)),
            lambda: f'{{"fact":{dumps(fact)},"value":{dumps(value)},"test":{dumps(test)}}}')
        return text


def overrides_json(overrides: tuple[ParameterOverride, ...]) -> str:
    """``"parameter_overrides":[…],`` as ``Assessment.to_json`` writes it, or nothing when
    the guideline runs on its shipped values (the field is then left out)."""
    if not overrides:
        return ""
    items = ",".join(
        f'{{"name":{json_string(o.name)},"shipped":{value_json(o.shipped)},'
        f'"local":{value_json(o.local)},"unit":{json_string(o.unit)},'
        f'"safe_min":{value_json(o.safe_min)},"safe_max":{value_json(o.safe_max)},'
        f'"unsafe":{"true" if o.unsafe else "false"},'
        f'"reason":{"null" if o.reason is None else json_string(o.reason)}}}'
        for o in overrides)
    return f'"parameter_overrides":[{items}],'


class _Marker(str):
    """A measurement's stand-in while a skeleton is rendered."""


#: A hole in a rendered skeleton: a marker as a JSON value, a marker inside prose, the doses.
_HOLE = re.compile(r'"\\u0001([^"\\]+)\\u0002"|\\u0001([^"\\]+)\\u0002|\x03')


def _fill(skeleton: tuple[Any, ...], values: Mapping[str, Any],
          doses: tuple[DoseRule, ...]) -> str:
    """A skeleton with this patient's measurements and doses in its holes."""
    out = []
    for part in skeleton:
        if type(part) is str:
            out.append(part)
            continue
        kind, name = part
        if kind == 0:
            out.append(_format.named_value_text(name, values[name]) or "unknown")
        elif kind == 1:
            out.append(value_json(values[name]))
        else:
            out.append(doses_json(doses, values.get("bsa_m2")))
    return "".join(out)

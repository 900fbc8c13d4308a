"""From fired rules to the output: the selection, rendered as models or as JSON text.

The ``Assembler`` is what a ``Guideline`` holds: it works out everything per rule once
(``_ruleinfo``), selects what the fired rules conclude (``_select``), and renders the
selection either as pydantic models (``Assessment``, here) for the API, or as JSON text
written from pre-encoded fragments for cohorts (``_jsontext``). Both read the same worded
evidence (``_wording``) and doses (``_doses``); a property test holds them byte-identical.
"""

from __future__ import annotations

from typing import Any

from all_rules.output import (
    Assessment,
    DoseLine,
    Evidence,
    Recommendation,
    Risk,
    RiskGroup,
    RulesetInfo,
    _trusted,
)
from all_rules.ruleset._model import Rule, Ruleset
from all_rules.ruleset._parameters import parameter_overrides

from . import _select, _wording
from ._compile import Fired
from ._jsontext import JsonWriter
from ._memo import CACHE_LIMIT, ITEM_CACHE_LIMIT, Memo, typed
from ._prepare import PreparedFacts
from ._ruleinfo import item_key, rule_table
from ._select import Selection

__all__ = ["Assembler", "Selection"]


class Assembler:
    """Builds the output for one guideline; all per-rule work is done once, here."""

    def __init__(self, ruleset: Ruleset, info: RulesetInfo) -> None:
        self.ruleset = ruleset
        self.info = info
        self.groups, self.rules = rule_table(ruleset)
        self._evidence_models = Memo(CACHE_LIMIT)
        self._item_models = Memo(ITEM_CACHE_LIMIT)
        self.overrides = parameter_overrides(ruleset)
        self._json = JsonWriter(info, ruleset.values, self.rules, self.overrides)

    def select(self, fired: list[Fired]) -> Selection:
        """What the fired rules conclude (see ``_select``)."""
        return _select.select(self.rules, fired)

    def json(self, prepared: PreparedFacts, selection: Selection) -> str:
        """The assessment as compact JSON text, equal to ``Assessment.to_json(indent=None)``."""
        return self._json.write(prepared, selection)

    def model(self, prepared: PreparedFacts, selection: Selection) -> Assessment:
        """The assessment as pydantic models."""
        rules = self.rules
        items = tuple(
            self._item_models.get_or_make(item_key(rule, rules[rule.key], branches, prepared),
                                          lambda r=rule, b=branches: self._item_model(
                                              r, b, prepared))
            for rule, branches in selection.items)
        return _trusted(Assessment, {
            "patient_id": prepared.patient_id,
            "ruleset": self.info,
            "parameter_overrides": self.overrides,
            "risk": _trusted(Risk, {"group": RiskGroup(selection.group),
                                    "features": selection.features,
                                    "missing": selection.missing}),
            "recommendations": items,
        })

    def _item_model(self, rule: Rule, branches: tuple[int, ...],
                    prepared: PreparedFacts) -> Recommendation:
        spec = rule.spec
        info = self.rules[rule.key]
        evidence = _wording.evidence(info.leaves, branches, prepared.values)
        text, reason = _wording.words(rule, info.fixed_words, self.ruleset.values, prepared,
                                      evidence)
        dose_rules = info.doses
        bsa = prepared.values.get("bsa_m2")
        doses = [d.as_dict(bsa) for d in dose_rules] if dose_rules else None
        return _trusted(Recommendation, {
            "id": spec.id, "kind": spec.kind, "severity": spec.severity,
            "phase": spec.phase, "text": text, "reason": reason,
            "evidence": tuple(self._evidence_model(*e) for e in evidence),
            "citations": tuple(spec.citations),
            "doses": None if doses is None else tuple(_trusted(DoseLine, d) for d in doses),
        })

    def _evidence_model(self, fact: str, value: Any, test: str) -> Evidence:
        evidence: Evidence = self._evidence_models.get_or_make(
            (fact, test, typed(value)),
            lambda: _trusted(Evidence, {"fact": fact, "value": value, "test": test,
                                        "source": None}))
        return evidence

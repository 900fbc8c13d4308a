"""The explanation models: why a rule fired for one patient, or why not (docs/explain.md).

``Guideline.explain(facts, rule_id)`` returns an :class:`Explanation`: for each variant of
the rule whether it fired, and for every test of its ``when`` tree the fact, the patient's
value (or unknown), the test with its resolved threshold, and the outcome, ``held``,
``failed`` or ``unknown``; for a derived-fact test, the rules that could derive it, each
explained the same way; and the risk group with its features present and undecided.
``_explainer`` builds them; this module holds the models and their plain-text form. The
public path is ``all_rules.explain``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from all_rules.exceptions import AllRulesError
from all_rules.output import RulesetInfo
from all_rules.ruleset._conditions import suggest

from ._wording import condition_phrase, derived_condition, fact_words, unknown_phrase

__all__ = ["ConditionExplanation", "Explanation", "RiskExplanation", "RuleExplanation",
           "UndecidedFeature", "UnknownRuleError", "derived_node_words", "explanation_text",
           "fact_node_words", "rule_lines"]

Outcome = Literal["held", "failed", "unknown"]
_MARK = {"held": "[held]", "failed": "[failed]", "unknown": "[unknown]"}


class UnknownRuleError(AllRulesError, LookupError):
    """A rule id that is not in the ruleset; the message suggests the nearest one."""

    def __init__(self, rule_id: str, known: Iterable[str]) -> None:
        self.rule_id = rule_id
        super().__init__(f"no rule `{rule_id}`{suggest(rule_id, known)}")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConditionExplanation(_Out):
    """One node of a ``when`` tree, decided for one patient.

    ``node`` is ``all`` or ``any`` (with ``children``), ``fact`` (a test of a patient fact),
    ``derived`` or ``not_derived`` (a test of what other rules concluded, with
    ``producers``)."""

    node: Literal["all", "any", "fact", "derived", "not_derived"]
    outcome: Outcome
    text: str
    """The node in words, e.g. ``age at least 35 years: failed (age 34.9 years)``."""
    fact: str | None = None
    value: Any = None
    known: bool | None = None
    test: str | None = None
    """The test with its threshold resolved, as in evidence (``>= 35``, ``in [B, T]``)."""
    threshold: Any = None
    derived: str | None = None
    """The rule id, or ``kind:<kind>``, a derived-fact test asks about."""
    undecided: tuple[str, ...] = ()
    """For a derived-fact test: producers that neither fired nor failed (unknown facts)."""
    children: tuple[ConditionExplanation, ...] = ()
    producers: tuple[RuleExplanation, ...] = ()


class RuleExplanation(_Out):
    """One rule (one variant) for one patient."""

    id: str
    variant: str | None
    key: str
    title: str
    concludes: str
    fired: bool
    outcome: Outcome
    """``held`` exactly when fired; ``unknown``: it could fire if unknown facts were known."""
    summary: str
    unknown_facts: tuple[str, ...]
    """Facts whose knowing could make the rule fire."""
    condition: ConditionExplanation


class UndecidedFeature(_Out):
    id: str
    unknown_facts: tuple[str, ...]
    summary: str


class RiskExplanation(_Out):
    """What decided the risk group: features present, undecided ones, and missing facts."""

    group: str | None
    group_rule: str | None
    features: tuple[str, ...]
    undecided: tuple[UndecidedFeature, ...]
    missing: tuple[str, ...]
    summary: str


class Explanation(_Out):
    """Why a rule fired for a patient, or why it did not."""

    patient_id: str | None
    ruleset: RulesetInfo
    rule_id: str
    fired: bool
    variants: tuple[RuleExplanation, ...]
    risk: RiskExplanation

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=indent, ensure_ascii=False)

    def text(self) -> str:
        return explanation_text(self)



def explanation_text(explanation: Explanation) -> str:
    """The explanation as indented plain text (``all-rules explain --format text``)."""
    lines = [f"Rule {explanation.rule_id} for patient {explanation.patient_id or '(no id)'}: "
             f"{'FIRED' if explanation.fired else 'did not fire'}"]
    for variant in explanation.variants:
        lines.append("")
        lines.extend(rule_lines(variant, 0))
    lines.append("")
    lines.append(f"Risk: {explanation.risk.summary}")
    return "\n".join(lines) + "\n"


def rule_lines(rule: RuleExplanation, depth: int) -> list[str]:
    pad = "  " * depth
    lines = [f"{pad}{rule.key} — {rule.title}: {rule.summary}"]
    lines.extend(_condition_lines(rule.condition, depth + 1))
    return lines


def _condition_lines(node: ConditionExplanation, depth: int) -> list[str]:
    pad = "  " * depth
    if node.node in ("all", "any"):
        lines = [f"{pad}{_MARK[node.outcome]} {node.node} of:"]
        for child in node.children:
            lines.extend(_condition_lines(child, depth + 1))
        return lines
    if node.node == "fact":
        condition, shown = fact_node_words(node)
        return [f"{pad}{_MARK[node.outcome]} {condition} — {shown} (`{node.fact}`)"]
    lines = [f"{pad}{_MARK[node.outcome]} {derived_node_words(node)} (`{node.derived}`)"]
    for producer in node.producers:
        if node.derived and node.derived.startswith("kind:"):
            lines.append(f"{pad}    - {producer.key}: {producer.summary}")
        else:
            lines.extend(rule_lines(producer, depth + 2))
    return lines


def fact_node_words(node: ConditionExplanation) -> tuple[str, str]:
    """A fact test in words: what it asks (``age at least 35 years``) and what the patient
    has (``age 34.9 years``, ``transplant eligible: not known``)."""
    fact, test = node.fact or "", node.test or ""
    shown = unknown_phrase(fact) if node.value is None else fact_words(fact, node.value)
    return condition_phrase(fact, test), shown


def derived_node_words(node: ConditionExplanation) -> str:
    """A test of other rules' conclusions in words (``risk group high``)."""
    target = node.derived or ""
    kind = target.removeprefix("kind:") if target.startswith("kind:") else None
    return derived_condition(None if kind else target, kind, node.node == "derived")


ConditionExplanation.model_rebuild()

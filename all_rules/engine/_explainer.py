"""Builds explanations: why a rule fired for one patient, or why not (docs/explain.md).

The ``Explainer`` walks a second evaluator of the condition language (``_evaluator``),
independent of the rule engine (a differential test holds the two in agreement), and turns
its traces into the explanation models of ``_explanation``: one ``RuleExplanation`` per
variant with its ``when`` tree decided test by test, the outcome in words
(``outcome_summary``), and the risk group with its features (``risk_explanation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from all_rules.output import RulesetInfo
from all_rules.ruleset._conditions import AllOf, DerivedTest, FactTest
from all_rules.ruleset._model import Rule
from all_rules.ruleset._schema import Concludes

from ._evaluator import (
    Evaluator,
    RuleTrace,
    Trace,
    Tracer,
    distance,
    threshold,
    unknown_facts,
)
from ._explanation import (
    ConditionExplanation,
    Explanation,
    RiskExplanation,
    RuleExplanation,
    UndecidedFeature,
    UnknownRuleError,
)
from ._format import resolved_test_text
from ._wording import condition_phrase, derived_condition, fact_words, unknown_phrase

__all__ = ["Explainer", "outcome_summary", "risk_explanation"]


def _need(test: FactTest, resolved: Any) -> str:
    """What an unknown fact would have to be for its test to hold, in words."""
    return condition_phrase(test.fact, resolved_test_text(test, resolved))


class Explainer:
    """Builds explanations for one guideline (the evaluator is built once)."""

    def __init__(self, evaluator: Evaluator, info: RulesetInfo) -> None:
        self.evaluator = evaluator
        self.info = info

    def rule_ids(self) -> list[str]:
        return list(self.evaluator.by_id)

    def explain(self, values: Mapping[str, Any], patient_id: str | None,
                rule_id: str) -> Explanation:
        rules = self.evaluator.by_id.get(rule_id)
        if not rules and rule_id in self.evaluator.by_key:  # one variant: ``id#variant``
            rules = [self.evaluator.by_key[rule_id]]
        if not rules:
            raise UnknownRuleError(rule_id, [*self.evaluator.by_id, *self.evaluator.by_key])
        tracer = Tracer(self.evaluator, values)
        variants = tuple(self.rule(tracer, rule) for rule in rules)
        return Explanation(patient_id=patient_id, ruleset=self.info, rule_id=rule_id,
                           fired=any(v.fired for v in variants), variants=variants,
                           risk=risk_explanation(self.evaluator, tracer))

    def nearest_misses(self, values: Mapping[str, Any], limit: int = 5
                       ) -> list[RuleExplanation]:
        """The recommendation rules (output items) that came closest to firing but did not,
        nearest first; for one id, its nearest variant."""
        tracer = Tracer(self.evaluator, values)
        fired_ids = {self.evaluator.by_key[key].spec.id for key in tracer.fired}
        scored: dict[str, tuple[tuple[int, int, float], RuleTrace]] = {}
        no_plan = values.get("plan.given") is False
        for rule in self.evaluator.ruleset.rules:
            if rule.spec.kind is None or rule.spec.id in fired_ids:
                continue
            if no_plan and any(isinstance(leaf, FactTest) and leaf.fact.startswith("plan.")
                               for branch in rule.branches for leaf in branch):
                continue  # an audit of a plan nobody gave is not a near miss
            trace = tracer.rule(rule)
            score = distance(trace, self.evaluator.parameters, values)
            current = scored.get(rule.spec.id)
            if current is None or score < current[0]:
                scored[rule.spec.id] = (score, trace)
        ranked = sorted(scored.values(), key=lambda entry: (entry[0], entry[1].rule.key))
        return [self._rule(tracer, trace) for _, trace in ranked[:limit]]

    def rule(self, tracer: Tracer, rule: Rule) -> RuleExplanation:
        return self._rule(tracer, tracer.rule(rule))

    def _rule(self, tracer: Tracer, trace: RuleTrace) -> RuleExplanation:
        spec = trace.rule.spec
        unknown = unknown_facts(trace) if not trace.fired else ()
        return RuleExplanation(
            id=spec.id, variant=spec.variant, key=trace.rule.key, title=spec.title,
            concludes=spec.concludes.value, fired=trace.fired, outcome=trace.outcome,
            summary=outcome_summary(trace, self.evaluator.parameters), unknown_facts=unknown,
            condition=self._node(tracer, trace.condition))

    def _node(self, tracer: Tracer, trace: Trace) -> ConditionExplanation:
        node = trace.node
        if isinstance(node, FactTest):
            test = resolved_test_text(node, trace.threshold)
            shown = (unknown_phrase(node.fact) if trace.value is None
                     else fact_words(node.fact, trace.value))
            text = f"{condition_phrase(node.fact, test)}: {trace.outcome} ({shown})"
            threshold_out = (list(trace.threshold) if isinstance(trace.threshold, tuple)
                             else trace.threshold)
            return ConditionExplanation(
                node="fact", outcome=trace.outcome, text=text, fact=node.fact,
                value=trace.value, known=trace.value is not None, test=test,
                threshold=threshold_out)
        if isinstance(node, DerivedTest):
            target = node.name if node.name is not None else f"kind:{node.kind}"
            producers = tuple(self._rule(tracer, p) for p in trace.producers)
            undecided = tuple(p.key for p in producers if not p.fired and p.outcome == "unknown")
            text = f"{derived_condition(node.name, node.kind, node.present)}: {trace.outcome}"
            if undecided:
                text += f" (undecided: {', '.join(undecided)})"
            return ConditionExplanation(
                node="derived" if node.present else "not_derived", outcome=trace.outcome,
                text=text, derived=target, undecided=undecided, producers=producers)
        kind: Literal["all", "any"] = "all" if isinstance(node, AllOf) else "any"
        return ConditionExplanation(
            node=kind, outcome=trace.outcome, text=f"{kind}: {trace.outcome}",
            children=tuple(self._node(tracer, child) for child in trace.children))


def outcome_summary(trace: RuleTrace, parameters: Mapping[str, float]) -> str:
    """The outcome of one rule in words: fired, what failed, or what would have to be known."""
    if trace.fired:
        return "fired"
    if trace.outcome == "unknown":
        needs = _needs(trace, parameters)
        if needs:
            return "did not fire; would fire if known: " + " and ".join(needs)
        return "did not fire; undecided (it depends on unknown facts)"
    failed: list[str] = []
    branches = sorted(zip(trace.rule.branches, trace.branches, strict=True),
                      key=lambda pair: sum(o != "held" for o in pair[1]))
    if branches:
        branch, outcomes = branches[0]
        for leaf, outcome in zip(branch, outcomes, strict=True):
            if outcome == "failed":
                failed.append(_leaf_words(leaf, parameters))
    return "did not fire: " + ("; ".join(failed) or "a test failed")


def _needs(trace: RuleTrace, parameters: Mapping[str, float]) -> list[str]:
    """The unknown tests of the branch nearest to firing (no failed test, fewest
    unknowns), as what would have to be known."""
    candidates = [(sum(o == "unknown" for o in outcomes), branch, outcomes)
                  for branch, outcomes in zip(trace.rule.branches, trace.branches,
                                              strict=True)
                  if "failed" not in outcomes]
    if not candidates:
        return []
    _, branch, outcomes = min(candidates, key=lambda c: c[0])
    needs = []
    for leaf, outcome in zip(branch, outcomes, strict=True):
        if outcome != "unknown":
            continue
        if isinstance(leaf, FactTest):
            resolved = (tuple(leaf.value) if leaf.op in ("in", "not_in")
                        else threshold(leaf.value, parameters))
            needs.append(_need(leaf, resolved))
        else:
            needs.append(f"{derived_condition(leaf.name, leaf.kind, leaf.present)} "
                         "(it is undecided)")
    return needs


def risk_explanation(evaluator: Evaluator, tracer: Tracer) -> RiskExplanation:
    """What decided the risk group for one patient: features present, undecided, missing."""
    group_rule = next((r for r in evaluator.producers_by_kind.get("risk_group", [])
                       if r.key in tracer.fired), None)
    features: list[str] = []
    undecided: list[UndecidedFeature] = []
    for rule_id, rules in evaluator.producers_by_name.items():
        if rules[0].spec.concludes is not Concludes.RISK_FEATURE:
            continue
        traces = [tracer.rule(rule) for rule in rules]
        if any(t.fired for t in traces):
            features.append(rule_id)
            continue
        open_ = [t for t in traces if t.outcome == "unknown"]
        if open_:
            facts = tuple(dict.fromkeys(f for t in open_ for f in unknown_facts(t)))
            undecided.append(UndecidedFeature(id=rule_id, unknown_facts=facts,
                                              summary=outcome_summary(open_[0],
                                                                          evaluator.parameters)))
    missing = [r.spec.fact or r.spec.id
               for r in evaluator.producers_by_kind.get("missing_fact", [])
               if r.key in tracer.fired]
    group = group_rule.spec.group.value if group_rule and group_rule.spec.group else None
    parts = [f"risk group {group or 'not concluded'}"]
    parts.append(f"features present: {', '.join(features) or 'none'}")
    if undecided:
        parts.append("undecided: " + "; ".join(
            f"{u.id} (needs {', '.join(u.unknown_facts) or 'a derived fact'})"
            for u in undecided))
    if missing:
        parts.append(f"missing: {', '.join(dict.fromkeys(missing))}")
    return RiskExplanation(group=group, group_rule=group_rule.key if group_rule else None,
                           features=tuple(features), undecided=tuple(undecided),
                           missing=tuple(dict.fromkeys(missing)),
                           summary="; ".join(parts))


def _leaf_words(leaf: FactTest | DerivedTest, parameters: Mapping[str, float]) -> str:
    if isinstance(leaf, DerivedTest):
        return f"{derived_condition(leaf.name, leaf.kind, leaf.present)} does not hold"
    resolved = (tuple(leaf.value) if leaf.op in ("in", "not_in")
                else threshold(leaf.value, parameters))
    return f"{condition_phrase(leaf.fact, resolved_test_text(leaf, resolved))} does not hold"

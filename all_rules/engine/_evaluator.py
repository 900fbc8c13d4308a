"""A second evaluator of the condition language, in plain Python, and why / why-not traces.

Independent of durable-rules on purpose: it reads the parsed condition trees of
``_conditions`` (fact tests, derived-fact tests, ``all`` / ``any``) and decides them itself,
with its own parameter resolution. It serves two ends:

* the project's differential oracle: for every patient, the rule branches it says hold must
  be exactly the branches the engine fired (tests/engine/test_differential.py);
* explanations: every test of a rule's ``when`` tree with the patient's value, the resolved
  threshold and an outcome, ``held``, ``failed`` or ``unknown``.

Semantics, as the engine has them (docs/engine.md): an unknown fact satisfies no comparison
(``ne`` and ``not_in`` included), only ``{known: false}``; a derived fact is present when any
variant of the rule that concludes it fired (by id), or any rule of that kind (by kind); a
negated derived fact is judged on the final picture, after every producer has finished.

The outcome of a node uses three values: a fact test on an unknown fact is ``unknown``
(never ``failed``); ``all`` fails when one child fails, else is unknown when one child is;
``any`` holds when one child holds, else is unknown when one child is. A derived test holds
exactly when the fact was derived; when it was not but a producer is undecided, ``derived``
is ``unknown`` (it could be derived) and ``not_derived`` holds, with the undecided producers
named. So a rule's outcome is ``held`` exactly when it fired.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from all_rules.ruleset._conditions import (
    AllOf,
    AnyOf,
    DerivedTest,
    FactTest,
    Node,
    ParamRef,
    Tolerance,
)
from all_rules.ruleset._model import Rule, Ruleset
from all_rules.ruleset._schema import Concludes

Outcome = Literal["held", "failed", "unknown"]
Values = Mapping[str, Any]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge,
    "lt": operator.lt, "lte": operator.le,
}


def threshold(value: Any, parameters: Mapping[str, float]) -> Any:
    """A test's operand with parameters and tolerances replaced by numbers.

    Written apart from the engine's compiler on purpose; a tolerance is the base raised or
    lowered by a per cent, rounded to 6 places (the precision the ruleset format promises)."""
    if isinstance(value, ParamRef):
        return parameters[value.name]
    if isinstance(value, Tolerance):
        base = float(threshold(value.base, parameters))
        percent = float(threshold(value.percent, parameters))
        sign = 1.0 if value.direction == "percent_above" else -1.0
        return round(base * (1.0 + sign * percent / 100.0), 6)
    return value


def fact_predicate(test: FactTest, parameters: Mapping[str, float]) -> Callable[[Any], bool]:
    """The test as a predicate of the fact's value (``None``: unknown)."""
    op = test.op
    if op not in ("known", "in", "not_in", *_COMPARE):
        raise TypeError(f"no Python evaluation for operator `{op}`")
    if op == "known":
        wanted = bool(test.value)
        return lambda v: (v is not None) is wanted
    if op in ("in", "not_in"):
        items = tuple(test.value)
        # Types are checked at load and at input, but keep True and 1 apart regardless.
        keyed = frozenset((type(i) is bool, i) for i in items)
        if op == "in":
            return lambda v: v is not None and (type(v) is bool, v) in keyed
        return lambda v: v is not None and (type(v) is bool, v) not in keyed
    bound = threshold(test.value, parameters)
    compare = _COMPARE[op]
    return lambda v: v is not None and compare(v, bound)


@attrs.frozen
class _CompiledBranch:
    tests: frozenset[int]
    """Indices into the evaluator's distinct fact tests."""
    derived: tuple[tuple[bool, str | None, str | None], ...]


class Evaluator:
    """The condition language evaluated in Python over one ruleset."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.parameters = ruleset.values
        self.by_id: dict[str, list[Rule]] = {}
        self.by_key: dict[str, Rule] = {}
        self.producers_by_name: dict[str, list[Rule]] = {}
        self.producers_by_kind: dict[str, list[Rule]] = {}
        for rule in ruleset.rules:
            self.by_id.setdefault(rule.spec.id, []).append(rule)
            self.by_key[rule.key] = rule
            if rule.spec.concludes is not Concludes.RECOMMENDATION:
                self.producers_by_name.setdefault(rule.spec.id, []).append(rule)
                self.producers_by_kind.setdefault(rule.spec.concludes.value, []).append(rule)
        self.order = self._order()
        # Each distinct fact test is decided once per patient, however many rules share it.
        self._tests: dict[FactTest, int] = {}
        self._predicates: list[tuple[str, Callable[[Any], bool]]] = []
        self._compiled = {rule.key: tuple(self._compile(branch) for branch in rule.branches)
                          for rule in ruleset.rules}
        self._plan = tuple(
            (rule.key, rule.spec.id,
             None if rule.spec.concludes is Concludes.RECOMMENDATION else
             rule.spec.concludes.value,
             None if any(b.derived for b in self._compiled[rule.key]) else
             tuple((index, branch.tests)
                   for index, branch in enumerate(self._compiled[rule.key])),
             tuple((index, branch.tests, branch.derived)
                   for index, branch in enumerate(self._compiled[rule.key])))
            for rule in self.order)

    def producers(self, test: DerivedTest) -> list[Rule]:
        """The rules whose firing derives what ``test`` asks about."""
        if test.name is not None:
            return self.producers_by_name.get(test.name, [])
        return self.producers_by_kind.get(test.kind or "", [])

    def _order(self) -> tuple[Rule, ...]:
        """Rules in an order where every producer of a derived fact comes before its readers
        (the loader refuses cycles)."""
        done: dict[str, None] = {}
        out: list[Rule] = []

        def visit(rule: Rule, depth: int = 0) -> None:
            if rule.key in done or depth > len(self.by_key):
                return
            for branch in rule.branches:
                for leaf in branch:
                    if isinstance(leaf, DerivedTest):
                        for producer in self.producers(leaf):
                            visit(producer, depth + 1)
            if rule.key not in done:
                done[rule.key] = None
                out.append(rule)

        for rule in self.ruleset.rules:
            visit(rule)
        return tuple(out)

    def _compile(self, branch: tuple[FactTest | DerivedTest, ...]) -> _CompiledBranch:
        tests = []
        for leaf in branch:
            if not isinstance(leaf, FactTest | DerivedTest):
                # A condition form this evaluator does not know must not pass unseen.
                raise TypeError(f"no Python evaluation for condition {type(leaf).__name__}")
            if isinstance(leaf, FactTest):
                index = self._tests.get(leaf)
                if index is None:
                    index = self._tests[leaf] = len(self._predicates)
                    self._predicates.append((leaf.fact, fact_predicate(leaf, self.parameters)))
                tests.append(index)
        derived = tuple((leaf.present, leaf.name, leaf.kind)
                        for leaf in branch if isinstance(leaf, DerivedTest))
        return _CompiledBranch(frozenset(tests), derived)

    # --- what fires (two-valued, as the engine) ---------------------------------------------

    def fired(self, values: Values) -> dict[str, tuple[int, ...]]:
        """Every rule that fires, by key, with the indices of the branches that hold."""
        names: set[str] = set()
        kinds: set[str] = set()
        out: dict[str, tuple[int, ...]] = {}
        get = values.get
        passed = {index for index, (fact, test) in enumerate(self._predicates)
                  if test(get(fact))}
        for key, rule_id, concludes, plain, branches in self._plan:
            if plain is not None:  # no derived-fact test: a subset check per branch
                held = tuple([index for index, tests in plain if tests <= passed])
            else:
                held = tuple([index for index, tests, derived in branches
                              if tests <= passed and all(
                                  ((name in names) if name is not None else (kind in kinds))
                                  is present for present, name, kind in derived)])
            if held:
                out[key] = held
                if concludes is not None:
                    names.add(rule_id)
                    kinds.add(concludes)
        return out


@attrs.frozen
class Trace:
    """One node of a rule's ``when`` tree, decided for one patient."""

    node: Node
    outcome: Outcome
    value: Any = None
    """The patient's value of a fact test (``None``: unknown)."""
    threshold: Any = None
    """A fact test's operand, resolved to a number where it names a parameter."""
    children: tuple[Trace, ...] = ()
    producers: tuple[RuleTrace, ...] = ()
    """For a derived-fact test: every rule that could derive the fact."""


@attrs.frozen
class RuleTrace:
    """One rule (one variant) decided for one patient."""

    rule: Rule
    fired: bool
    outcome: Outcome
    condition: Trace
    branches: tuple[tuple[Outcome, ...], ...]
    """Per DNF branch, the outcome of each of its tests (in branch order)."""


class Tracer:
    """Decides every node of every rule for one patient (memoized per rule)."""

    def __init__(self, evaluator: Evaluator, values: Values) -> None:
        self.evaluator = evaluator
        self.values = values
        self.fired = evaluator.fired(values)
        self._memo: dict[str, RuleTrace] = {}

    def rule(self, rule: Rule) -> RuleTrace:
        found = self._memo.get(rule.key)
        if found is None:
            condition = self._node(rule.condition)
            leaves: dict[int, Outcome] = {}
            _collect(condition, leaves)
            branches = tuple(tuple(leaves[id(leaf)] for leaf in branch)
                             for branch in rule.branches)
            found = RuleTrace(rule, rule.key in self.fired, condition.outcome, condition,
                              branches)
            self._memo[rule.key] = found
        return found

    def condition(self, node: Node) -> Trace:
        """Any condition tree of the language decided for this patient, as a rule's ``when``
        is (a decision point's ``reached_when``, docs/clinical-policy.md policy 7)."""
        return self._node(node)

    def _node(self, node: Node) -> Trace:
        if isinstance(node, FactTest):
            return self._fact(node)
        if isinstance(node, DerivedTest):
            return self._derived(node)
        children = tuple(self._node(child) for child in node.children)
        outcomes = {child.outcome for child in children}
        if isinstance(node, AllOf):
            outcome: Outcome = ("failed" if "failed" in outcomes else
                                "unknown" if "unknown" in outcomes else "held")
        else:
            if not isinstance(node, AnyOf):
                raise TypeError(f"no Python evaluation for condition {type(node).__name__}")
            outcome = ("held" if "held" in outcomes else
                       "unknown" if "unknown" in outcomes else "failed")
        return Trace(node, outcome, children=children)

    def _fact(self, test: FactTest) -> Trace:
        value = self.values.get(test.fact)
        resolved = (None if test.op == "known" else
                    tuple(test.value) if test.op in ("in", "not_in") else
                    threshold(test.value, self.evaluator.parameters))
        if value is None and test.op != "known":
            return Trace(test, "unknown", None, resolved)
        holds = fact_predicate(test, self.evaluator.parameters)(value)
        return Trace(test, "held" if holds else "failed", value, resolved)

    def _derived(self, test: DerivedTest) -> Trace:
        producers = tuple(self.rule(rule) for rule in self.evaluator.producers(test))
        derived = any(p.fired for p in producers)
        undecided = any(p.outcome == "unknown" for p in producers)
        if test.present:
            outcome: Outcome = "held" if derived else "unknown" if undecided else "failed"
        else:
            outcome = "failed" if derived else "held"
        return Trace(test, outcome, derived, None, producers=producers)


def _collect(trace: Trace, out: dict[int, Outcome]) -> None:
    if isinstance(trace.node, FactTest | DerivedTest):
        out[id(trace.node)] = trace.outcome
    for child in trace.children:
        _collect(child, out)


def unknown_facts(trace: RuleTrace) -> tuple[str, ...]:
    """The unknown facts whose knowing could make the rule fire (from branches with no
    failed test), in order of first appearance."""
    found: dict[str, None] = {}
    for branch, outcomes in zip(trace.rule.branches, trace.branches, strict=True):
        if "failed" in outcomes:
            continue
        for leaf, outcome in zip(branch, outcomes, strict=True):
            if outcome == "unknown" and isinstance(leaf, FactTest):
                found.setdefault(leaf.fact, None)
    return tuple(found)


def distance(trace: RuleTrace, parameters: Mapping[str, float],
             values: Values) -> tuple[int, int, float]:
    """How near a rule came to firing, smallest first: (tests not held, of which failed,
    summed relative gap of failed numeric comparisons) over its nearest branch."""
    best: tuple[int, int, float] | None = None
    for branch, outcomes in zip(trace.rule.branches, trace.branches, strict=True):
        missing = sum(1 for o in outcomes if o != "held")
        failed = sum(1 for o in outcomes if o == "failed")
        gap = 0.0
        for leaf, outcome in zip(branch, outcomes, strict=True):
            if outcome != "failed":
                continue
            if isinstance(leaf, FactTest) and leaf.op in ("gt", "gte", "lt", "lte"):
                bound = float(threshold(leaf.value, parameters))
                value = float(values.get(leaf.fact) or 0.0)
                gap += abs(value - bound) / max(abs(bound), 1e-9)
            else:
                gap += 1.0
        key = (missing, failed, gap)
        if best is None or key < best:
            best = key
    return best or (0, 0, 0.0)

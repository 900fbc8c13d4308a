"""The compiler: a checked ruleset as durable rule definitions, and the tables to read them.

Compiling is done once per engine. Besides the definition that durable parses, it fixes the
JSON of every fact an evaluation will assert (derived facts, stage facts, the patient fact's
head) and maps each engine rule name to the rule branch it stands for, so that evaluating a
patient only joins prepared strings and looks names up. Two guards against durable's pitfalls
live here (the hazard list is in ``_state``): every pattern carries a discriminator (``t``),
so a test of absence cannot loop; and a rule that negates a derived fact waits for a stage
fact, asserted once all its producers have fired, so negation sees the final picture.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from all_rules.ruleset._conditions import Branch, DerivedTest, FactTest, ParamRef, Tolerance
from all_rules.ruleset._factspec import FACTS
from all_rules.ruleset._model import Rule, Ruleset
from all_rules.ruleset._schema import Concludes

#: The engine rule that fires once on every new session state (see ``_state``).
PRIME = "prime"

_OPS = {"ne": "$neq", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}


def resolve(value: Any, values: Mapping[str, float]) -> Any:
    """A test's value with parameters and tolerances replaced by numbers."""
    if isinstance(value, ParamRef):
        return values[value.name]
    if isinstance(value, Tolerance):
        base = resolve(value.base, values)
        percent = resolve(value.percent, values)
        factor = 1 + percent / 100 if value.direction == "percent_above" else 1 - percent / 100
        return round(base * factor, 6)
    return value


def _fact_expr(test: FactTest, values: Mapping[str, float]) -> dict[str, Any]:
    key = FACTS[test.fact].key
    if test.op == "known":
        return {"$ex" if test.value else "$nex": {key: 1}}
    if test.op == "in":
        return {"$or": [{key: item} for item in test.value]}
    if test.op == "not_in":
        return {"$and": [{"$neq": {key: item}} for item in test.value]}
    value = resolve(test.value, values)
    if test.op == "eq":
        return {key: value}
    return {_OPS[test.op]: {key: value}}


def _derived_expr(test: DerivedTest) -> dict[str, Any]:
    selector = {"name": test.name} if test.name is not None else {"kind": test.kind}
    return {"$and": [{"t": "derived"}, selector]}


def fact_order(ruleset: Ruleset) -> dict[str, int]:
    """Each tested fact's place in every compiled conjunction.

    Durable matches a pattern's tests as a chain of alpha nodes, shares a chain's prefix
    between patterns, and walks the network depth-first with a fixed stack of 64 nodes
    (``MAX_STACK_SIZE`` in its events.c; error 303 "Could not assert fact" when full). Every
    matched child of a node, and every "not exists" child of an absent fact, waits on that
    stack. With the tests in the order the rules happen to be written, a patient with many
    facts matched or absent overflowed it (1 in 20,000 generated patients once the ruleset
    reached about 125 rules); ordering the facts by how many branches test them made it
    worse (1 in 9). The facts tested in the fewest distinct ways come first (then the most
    tested, then by name), so the first levels of the network are narrow: no overflow in
    the sweeps, and none with every rule of the shipped guideline doubled
    (tests/engine/test_engine_capacity.py)."""
    counts: dict[str, int] = {}
    distinct: dict[str, set[str]] = {}
    for rule in ruleset.rules:
        for branch in rule.branches:
            for test in branch:
                if isinstance(test, FactTest):
                    distinct.setdefault(test.fact, set()).add(repr((test.op, test.value)))
            for fact in {t.fact for t in branch if isinstance(t, FactTest)}:
                counts[fact] = counts.get(fact, 0) + 1
    ranked = sorted(counts, key=lambda fact: (len(distinct[fact]), -counts[fact], fact))
    return {fact: place for place, fact in enumerate(ranked)}


def compile_branch(branch: Branch, stage: int, values: Mapping[str, float],
                   order: Mapping[str, int]) -> dict[str, Any]:
    """One conjunction as one durable rule definition, its fact tests in ``order``."""
    patterns: list[dict[str, Any]] = []
    tests = sorted((t for t in branch if isinstance(t, FactTest)),
                   key=lambda t: (order[t.fact], json.dumps(_fact_expr(t, values),
                                                            sort_keys=True)))
    fact_tests = [_fact_expr(t, values) for t in tests]
    if fact_tests:
        patterns.append({"p": {"$and": [{"t": "patient"}, *fact_tests]}})
    derived = [t for t in branch if isinstance(t, DerivedTest)]
    if any(not t.present for t in derived):
        # A negation is only sound once every producer has fired: wait for the stage fact.
        patterns.append({"s": {"$and": [{"t": "stage"}, {"n": stage}]}})
    for index, test in enumerate(derived):
        name = f"d{index}" if test.present else f"n{index}$not"
        patterns.append({name: _derived_expr(test)})
    return {"all": patterns}


@attrs.frozen
class Fired:
    """A rule that fired, and which branch of its condition matched."""

    rule: Rule
    branch: int


@attrs.frozen
class Compiled:
    """A ruleset compiled for one engine session (``sid``)."""

    definition: dict[str, Any]
    """The durable rule definitions, by engine rule name."""
    entries: dict[str, tuple[Fired, str | None]]
    """Engine rule name → (what fired, the JSON of the fact it derives or None)."""
    stages: int
    stage_facts: tuple[str, ...]
    """The JSON of each stage fact, in the order they are asserted."""
    tested: tuple[tuple[str, str], ...]
    """(public name, engine key) of every fact some rule tests; the others are not sent."""
    tested_json: tuple[tuple[str, str], ...]
    """(public name, the JSON of its key up to the value) for each tested fact."""
    patient_head: str
    """The patient fact's JSON up to its first tested fact."""


def compile_ruleset(ruleset: Ruleset, sid: str) -> Compiled:
    """Every rule branch as an engine rule, plus the priming rule; facts for session ``sid``."""
    entries: dict[str, tuple[Fired, str | None]] = {}
    derived_json: dict[str, str] = {}
    definition: dict[str, Any] = {}
    order = fact_order(ruleset)
    for rule_index, rule in enumerate(ruleset.rules):
        spec = rule.spec
        if spec.concludes is not Concludes.RECOMMENDATION:
            derived_json[spec.id] = (
                f'{{"t":"derived","kind":"{spec.concludes.value}","name":'
                f'{json.dumps(spec.id)},"sid":"{sid}",'
                f'"id":{json.dumps("d:" + spec.id)}}}')
        for branch_index, branch in enumerate(rule.branches):
            name = f"r{rule_index}_{branch_index}"
            definition[name] = compile_branch(branch, rule.stage, ruleset.values, order)
            entries[name] = (Fired(rule, branch_index), derived_json.get(spec.id))
    # Fires once on every new session state; see EngineState._prime.
    definition[PRIME] = {"all": [{"m": {"$and": [{"t": "prime"}]}}]}
    stages = max((rule.stage for rule in ruleset.rules), default=0)
    stage_facts = tuple(f'{{"t":"stage","n":{n},"sid":"{sid}","id":"stage{n}"}}'
                        for n in range(1, stages + 1))
    names = {leaf.fact for rule in ruleset.rules for branch in rule.branches
             for leaf in branch if isinstance(leaf, FactTest)}
    tested = tuple(sorted((name, FACTS[name].key) for name in names))
    return Compiled(definition, entries, stages, stage_facts, tested,
                    tuple((name, f',"{key}":') for name, key in tested),
                    f'{{"t":"patient","sid":"{sid}","id":"patient"')

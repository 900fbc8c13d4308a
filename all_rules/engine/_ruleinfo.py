"""What the assembly knows about each rule, worked out once when the guideline loads.

Per patient the assembly only looks a fired rule up here: its place in the output, what it
concludes, the JSON fragments that do not depend on the patient, its worded tests and fixed
words, its doses, and which facts its item reads (which key the item's memos).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from all_rules.output import PHASE_ORDER, SEVERITY_RANK
from all_rules.ruleset._conditions import FactTest
from all_rules.ruleset._factspec import FACTS
from all_rules.ruleset._model import Rule, Ruleset
from all_rules.ruleset._schema import Concludes

from ._doses import DoseRule
from ._encode import dumps
from ._prepare import PreparedFacts
from ._wording import Leaf, fixed_words, leaf


@attrs.frozen
class RuleInfo:
    """One rule as the assembly reads it per patient."""

    leaves: list[list[Leaf]]
    order: tuple[int, str]
    prefix: str
    citations: str
    concludes: Concludes
    rank: int
    deps: tuple[str, ...]
    """Every fact the item's wording, evidence or doses read: with the branches, the key
    under which a rendered item is memoized."""
    uses_bsa_source: bool
    doses: tuple[DoseRule, ...]
    fixed_words: tuple[str | None, str | None]
    """Text and reason when they do not depend on the patient, else None."""
    concluded: str
    """The risk group a group rule concludes, or the fact a missing-fact rule names."""
    discrete: tuple[str, ...]
    """The deps that take few values (enums, booleans, integers)."""
    continuous: tuple[str, ...]
    """The deps that are measurements (``number`` facts): an item naming them is rendered
    from a skeleton with holes for them, since their values rarely recur."""


def rule_table(ruleset: Ruleset) -> tuple[dict[str, str], dict[str, RuleInfo]]:
    """The risk group of each group rule (by rule id), and each rule's info (by rule key)."""
    groups = {r.spec.id: r.spec.group.value for r in ruleset.rules if r.spec.group is not None}
    return groups, {rule.key: _info(rule, groups, ruleset.values) for rule in ruleset.rules}


def _info(rule: Rule, groups: dict[str, str], parameters: Mapping[str, float]) -> RuleInfo:
    spec = rule.spec
    prefix = citations = ""
    order = (-1, spec.id)  # derivation rules: no item, but the id is read per patient
    if spec.kind is not None and spec.severity is not None and spec.phase is not None:
        order = (PHASE_ORDER[spec.phase], spec.id)
        prefix = (f'{{"id":{dumps(spec.id)},"kind":"{spec.kind.value}",'
                  f'"severity":"{spec.severity.value}","phase":"{spec.phase.value}",')
        citations = dumps(list(spec.citations))
    names = {n for t in (rule.text, rule.reason) if t is not None for n in t.names()}
    deps = {test.fact for branch in rule.branches for test in branch
            if isinstance(test, FactTest)}
    deps |= {n for n in names if n in FACTS}
    if spec.doses:
        deps.add("bsa_m2")
    rank = SEVERITY_RANK[spec.severity] if spec.severity is not None else 0
    return RuleInfo(
        [[leaf(t, groups, parameters) for t in branch] for branch in rule.branches], order,
        prefix, citations, spec.concludes, rank, tuple(sorted(deps)), "bsa_source" in names,
        tuple(DoseRule.of(d, parameters) for d in spec.doses),
        fixed_words(rule, parameters),
        groups.get(spec.id) or spec.fact or "",
        tuple(sorted(d for d in deps if FACTS[d].type != "number")),
        tuple(sorted(d for d in deps if FACTS[d].type == "number")))


def item_key(rule: Rule, info: RuleInfo, branches: tuple[int, ...],
             prepared: PreparedFacts) -> tuple[Any, ...]:
    """The key a rendered item is memoized under: its rule, branches and what it reads."""
    values = prepared.values
    return (rule.key, *branches, None, *map(values.get, info.deps),
            prepared.bsa_source if info.uses_bsa_source else None)

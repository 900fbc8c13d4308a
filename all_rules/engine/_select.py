"""Selection: which of the fired rules the output shows, before any wording.

The fired rules conclude the risk group (exactly one, or the evaluation fails), the risk
features, the facts found missing, and the items. Of the variants of one rule id that fired,
the most severe is shown, with every branch of its condition that fired; items are ordered
by phase, then id.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from all_rules.exceptions import EvaluationError
from all_rules.ruleset._model import Rule
from all_rules.ruleset._schema import Concludes

from ._compile import Fired
from ._ruleinfo import RuleInfo

_RISK_GROUP, _MISSING_FACT, _RISK_FEATURE = (Concludes.RISK_GROUP, Concludes.MISSING_FACT,
                                             Concludes.RISK_FEATURE)


@attrs.frozen
class Selection:
    """What the fired rules conclude, before any wording."""

    group: str
    features: tuple[str, ...]
    missing: tuple[str, ...]
    items: tuple[tuple[Rule, tuple[int, ...]], ...]
    """The items in output order, each with the branches of its condition that fired."""


def _by_order(entry: tuple[Rule, list[int], RuleInfo]) -> tuple[int, str]:
    return entry[2].order


def select(rules: Mapping[str, RuleInfo], fired: list[Fired]) -> Selection:
    """What the fired rules conclude. (Not memoized: a quarter of patients fire a set of
    rule branches seen in no earlier patient, and keeping the sets cost more memory —
    about 20 MB per process over a large cohort — than selecting again costs time.)"""
    groups: set[str] = set()
    features: set[str] = set()
    missing: set[str] = set()
    chosen: dict[str, tuple[Rule, list[int], RuleInfo]] = {}
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

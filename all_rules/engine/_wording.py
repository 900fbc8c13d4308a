"""An item's words and evidence: its templates filled in, and the tests that made it fire.

Each test of a rule's condition is worded once at load (a ``Leaf``); per patient, the tests
of the branches that fired become the item's evidence, with the patient's values, and the
rule's text and reason templates are filled from the patient's facts, the guideline's
parameters and that evidence. A template that names only parameters is rendered once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from all_rules.ruleset._conditions import DerivedTest, FactTest
from all_rules.ruleset._model import Rule
from all_rules.ruleset._template import Template

from . import _format
from ._prepare import PreparedFacts

_DERIVED_TESTS = ("derived", "not derived", "any derived", "none derived")


@attrs.frozen
class Leaf:
    """One test of one rule branch, with everything about its evidence fixed at load."""

    fact: str
    test: str
    constant: tuple[Any] | None
    """``(value,)`` when the evidence value does not depend on the patient."""


def leaf(test: FactTest | DerivedTest, groups: dict[str, str],
         parameters: Mapping[str, float]) -> Leaf:
    """A test as evidence: the fact it reads, its wording, and its value when fixed.

    ``groups``: the risk group each group rule concludes, by rule id."""
    if isinstance(test, FactTest):
        return Leaf(test.fact, _format.test_text(test, parameters), None)
    value: Any
    if test.name in groups:
        group = groups[test.name]
        fact, value, text = "risk.group", group, f"{'==' if test.present else '!='} {group}"
    elif test.name is not None:
        fact, value = test.name, test.present
        text = "derived" if test.present else "not derived"
    else:
        fact = {"risk_feature": "risk.features", "missing_fact": "risk.missing",
                "risk_group": "risk.group"}[test.kind or ""]
        value = None if test.present else []
        text = "any derived" if test.present else "none derived"
    return Leaf(fact, text, (value,))


def evidence(leaves: list[list[Leaf]], branches: tuple[int, ...],
             values: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """(fact, value, test) of every test of the fired branches, each once, in order."""
    found: list[tuple[str, Any, str]] = []
    seen: set[tuple[str, str]] = set()
    for branch in branches:
        for item in leaves[branch]:
            if (item.fact, item.test) in seen:
                continue
            seen.add((item.fact, item.test))
            value = item.constant[0] if item.constant else values.get(item.fact)
            found.append((item.fact, value, item.test))
    return found


def words(rule: Rule, fixed: tuple[str | None, str | None], parameters: Mapping[str, float],
          prepared: PreparedFacts, evidence: list[tuple[str, Any, str]]) -> tuple[str, str]:
    """The item's text and reason for this patient (``fixed``: see ``fixed_words``)."""

    def lookup(name: str) -> str | None:
        if name.startswith("$"):
            return _format.named_value_text(name[1:], parameters[name[1:]])
        if name == "evidence":
            return "; ".join(evidence_phrase(*entry) for entry in evidence)
        if name == "bsa_source":
            return {"given": "as given", "mosteller": "Mosteller, from height and weight"
                    }.get(prepared.bsa_source or "")
        return _format.named_value_text(name, prepared.values.get(name))

    assert rule.text is not None
    assert rule.reason is not None
    return (fixed[0] if fixed[0] is not None else rule.text.render(lookup),
            fixed[1] if fixed[1] is not None else rule.reason.render(lookup))


def fixed_words(rule: Rule, parameters: Mapping[str, float]) -> tuple[str | None, str | None]:
    """A rule's text and reason, rendered once where they name only parameters."""

    def parameter(name: str) -> str | None:
        return _format.named_value_text(name[1:], parameters[name[1:]])

    def fixed(template: Template | None) -> str | None:
        if template is None or not all(n.startswith("$") for n in template.names()):
            return None
        return template.render(parameter)

    return fixed(rule.text), fixed(rule.reason)


def evidence_phrase(fact: str, value: Any, test: str) -> str:
    """One piece of evidence in prose, as the ``{evidence}`` of a template names it."""
    if test in _DERIVED_TESTS:
        return f"{fact} {test}"
    return f"{_format.fact_phrase(fact, value)} ({test})"

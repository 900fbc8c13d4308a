"""Every ruleset file's cases (``x_test.yaml`` beside ``x.yaml``), run through one test."""

from __future__ import annotations

import math
import warnings
from functools import cache
from typing import Any

import pytest

from all_rules import Guideline
from all_rules.output import Assessment
from all_rules.ruleset._loader import load
from all_rules.ruleset._safe_yaml import load_file
from all_rules.ruleset._schema import CaseFile, CaseSpec, ItemExpectation

from ..conftest import RULESETS

RULESET = load(RULESETS)

REQUIRE_ASSERTING_CASES = True
"""The switch: True fails the suite for an output rule with no case that asserts its
statement (``expect.items``: kind, variant, a text or reason phrase or a dose); False only
warns, listing them, until every case file asserts its items."""


def _cases() -> list[Any]:
    params = []
    for file in RULESET.files:
        test_file = RULESETS / file.replace(".yaml", "_test.yaml")
        cases = CaseFile.model_validate(load_file(test_file).data)
        for case in cases.cases:
            params.append(pytest.param(file, cases.base, case, id=f"{file}: {case.name}"))
    return params


CASES = _cases()


@cache
def _guideline(parameters: tuple[tuple[str, float], ...]) -> Guideline:
    return Guideline.load(RULESETS, parameters=dict(parameters))


def _ids_of(file: str) -> set[str]:
    return {rule.spec.id for rule in RULESET.rules if rule.file == file}


@pytest.mark.parametrize(("file", "base", "case"), CASES)
def test_case(file: str, base: dict[str, Any], case: CaseSpec) -> None:
    """The case's facts give exactly the expected ids of its file, and the risk group."""
    guideline = _guideline(tuple(sorted(case.parameters.items())))
    facts = {**base, **case.facts}
    assessment = guideline.assess(facts)
    fired = set(assessment.ids()) & _ids_of(file)
    assert fired == set(case.expect.ids), f"unexpected: {fired ^ set(case.expect.ids)}"
    assert assessment.risk.group.value == case.expect.risk_group.value
    if case.expect.missing is not None:
        assert list(assessment.risk.missing) == sorted(case.expect.missing)
    for rule_id in case.near_miss:
        assert rule_id not in assessment.ids()
    if case.expect.items:
        shown = {rule.spec.id: rule.spec.variant for rule, _ in guideline.assess_ids(facts).items}
        for rule_id, expected in case.expect.items.items():
            _check_item(assessment, rule_id, shown[rule_id], expected)


def _check_item(assessment: Assessment, rule_id: str, variant: str | None,
                expected: ItemExpectation) -> None:
    """The item says what the case asserts: variant shown, kind, severity, phrases, doses."""
    item = assessment.get(rule_id)
    assert item is not None, f"{rule_id}: no item"
    variants = {rule.spec.variant for rule in RULESET.rules if rule.spec.id == rule_id}
    assert expected.variant is None or expected.variant in variants, (
        f"{rule_id}: no variant `{expected.variant}` (it has {sorted(map(str, variants))})")
    assert expected.variant is None or variant == expected.variant, (
        f"{rule_id}: variant `{variant}` shown, expected `{expected.variant}`")
    assert expected.kind is None or item.kind == expected.kind, (
        f"{rule_id}: kind {item.kind.value}, expected {expected.kind.value}")
    assert expected.severity is None or item.severity == expected.severity, (
        f"{rule_id}: severity {item.severity.value}, expected {expected.severity.value}")
    for phrase in expected.text:
        assert phrase in item.text, f"{rule_id}: text lacks {phrase!r}: {item.text!r}"
    for phrase in expected.reason:
        assert phrase in item.reason, f"{rule_id}: reason lacks {phrase!r}: {item.reason!r}"
    computed = {dose.drug: dose.dose for dose in item.doses or ()}
    for drug, amount in expected.doses.items():
        assert drug in computed, f"{rule_id}: no dose of {drug} (has {sorted(computed)})"
        got = computed[drug]
        assert got is not None, f"{rule_id}: {drug} dose not computed (BSA unknown)"
        assert math.isclose(got, amount, rel_tol=1e-9), (
            f"{rule_id}: {drug} dose {got}, expected {amount}")


def unasserted_rules() -> list[str]:
    """Output rules (by key: a variant counts apart) with no case asserting their statement
    (``ItemExpectation.tests_statement``)."""
    keys = {rule.key: rule for rule in RULESET.rules if rule.spec.kind is not None}
    with_variants = {rule.spec.id for rule in RULESET.rules if rule.spec.variant is not None}
    asserted: set[str] = set()
    for param in CASES:
        _, _, case = param.values
        for rule_id, expected in case.expect.items.items():
            if expected.tests_statement(rule_id in with_variants):
                asserted.add(rule_id if expected.variant is None
                             else f"{rule_id}#{expected.variant}")
    return sorted(set(keys) - asserted)


def test_every_rule_has_a_case_asserting_its_statement() -> None:
    """A case naming only ids does not test what a rule says. WARNING for now: the rules
    listed have no case asserting their item; ``REQUIRE_ASSERTING_CASES = True`` fails."""
    missing = unasserted_rules()
    if missing and not REQUIRE_ASSERTING_CASES:
        message = (f"{len(missing)} rules have no case asserting their statement "
                   f"(expect.items): {', '.join(missing)}")
        print(f"WARNING: {message}")
        warnings.warn(message, stacklevel=1)
        return
    assert missing == [], "rules with no case asserting their statement"


def test_every_rule_has_a_firing_case_and_a_near_miss() -> None:
    """A rule without a case where it fires, or one where it just does not, is untested."""
    fires: dict[str, int] = {}
    misses: dict[str, int] = {}
    for param in CASES:
        _, _, case = param.values
        for rule_id in case.expect.ids:
            fires[rule_id] = fires.get(rule_id, 0) + 1
        for rule_id in case.near_miss:
            misses[rule_id] = misses.get(rule_id, 0) + 1
    item_ids = {rule.spec.id for rule in RULESET.rules if rule.spec.kind is not None}
    assert sorted(item_ids - set(fires)) == [], "rules with no firing case"
    assert sorted(item_ids - set(misses)) == [], "rules with no near-miss case"


def test_cases_name_only_rules_of_their_file() -> None:
    """A case expecting an id of another file would pass vacuously; refuse it."""
    for param in CASES:
        file, _, case = param.values
        stray = (set(case.expect.ids) | set(case.near_miss)) - _ids_of(file)
        assert not stray, f"{file}: {case.name}: {sorted(stray)}"


def test_every_risk_group_is_reached_by_some_case() -> None:
    """Each of the six groups is concluded by at least one case."""
    groups = {param.values[2].expect.risk_group for param in CASES}
    assert {g.value for g in groups} == {
        "very_high", "high", "standard", "provisional_standard", "indeterminate",
        "relapsed_refractory"}

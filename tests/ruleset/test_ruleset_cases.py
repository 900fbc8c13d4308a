"""Every ruleset file's cases (``x_test.yaml`` beside ``x.yaml``), run through one test."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from all_rules import Guideline
from all_rules.ruleset._loader import load
from all_rules.ruleset._safe_yaml import load_file
from all_rules.ruleset._schema import CaseFile, CaseSpec

from ..conftest import RULESETS

RULESET = load(RULESETS)


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

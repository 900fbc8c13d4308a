"""The per-item assertions of a case (``expect.items``): validated strictly, and checked."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from all_rules import Guideline
from all_rules.ruleset._schema import CaseExpectation, ItemExpectation

from .test_ruleset_cases import _check_item

_VINCRISTINE = {"age_years": 30, "lineage": "B", "phase": "induction", "bsa_m2": 1.8,
                "plan": {"doses": [{"drug": "vincristine", "dose": 2.01, "unit": "mg"}]}}


def _expect(items: dict[str, Any], ids: list[str] | None = None) -> CaseExpectation:
    return CaseExpectation.model_validate(
        {"ids": ids if ids is not None else list(items), "risk_group": "standard",
         "items": items})


def test_an_unknown_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="wording"):
        _expect({"maintenance.regimen": {"kind": "recommend", "wording": ["x"]}})


def test_an_item_must_be_among_the_ids() -> None:
    with pytest.raises(ValidationError, match=r"not in `ids`: maintenance\.duration"):
        _expect({"maintenance.duration": {"kind": "recommend"}}, ids=["maintenance.regimen"])


def test_an_empty_assertion_or_phrase_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least one of"):
        ItemExpectation.model_validate({})
    with pytest.raises(ValidationError, match="must not be empty"):
        ItemExpectation.model_validate({"text": [" "]})


def test_what_tests_a_statement() -> None:
    """Kind, the variant where the rule has variants, and a phrase or a dose."""
    phrase = ItemExpectation.model_validate({"kind": "alert", "text": ["2 mg"]})
    assert phrase.tests_statement(has_variants=False)
    assert not phrase.tests_statement(has_variants=True)
    assert ItemExpectation.model_validate(
        {"kind": "alert", "variant": "over_cap", "reason": ["2.01"]}).tests_statement(True)
    assert ItemExpectation.model_validate(
        {"kind": "recommend", "doses": {"vincristine": 2}}).tests_statement(False)
    assert not ItemExpectation.model_validate({"kind": "alert"}).tests_statement(False)
    assert not ItemExpectation.model_validate({"text": ["2 mg"]}).tests_statement(False)


def _shown(guideline: Guideline, facts: dict[str, Any], rule_id: str) -> str | None:
    return next(rule.spec.variant for rule, _ in guideline.assess_ids(facts).items
                if rule.spec.id == rule_id)


@pytest.mark.parametrize(("expected", "message"), [
    ({"variant": "over_bsa"}, "variant `over_cap` shown"),
    ({"variant": "over_sized"}, "no variant `over_sized`"),
    ({"kind": "recommend"}, "kind alert, expected recommend"),
    ({"severity": "info"}, "severity critical, expected info"),
    ({"text": ["2.5 mg"]}, "text lacks '2.5 mg'"),
    ({"reason": ["3 mg"]}, "reason lacks '3 mg'"),
    ({"doses": {"vincristine": 2}}, "no dose of vincristine"),
])
def test_an_item_that_says_otherwise_fails(expected: dict[str, Any], message: str) -> None:
    guideline = Guideline.default()
    assessment = guideline.assess(_VINCRISTINE)
    variant = _shown(guideline, _VINCRISTINE, "audit.vincristine_dose")
    _check_item(assessment, "audit.vincristine_dose", variant, ItemExpectation.model_validate(
        {"variant": "over_cap", "kind": "alert", "severity": "critical", "text": ["2 mg"],
         "reason": ["2.01 mg"]}))
    with pytest.raises(AssertionError, match=message):
        _check_item(assessment, "audit.vincristine_dose", variant,
                    ItemExpectation.model_validate(expected))

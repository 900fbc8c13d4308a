"""The per-item assertions of a case (``expect.items``): validated strictly, and checked."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from all_rules import Guideline
from all_rules.report._gendocs import _cases, traceability_markdown
from all_rules.ruleset._loader import load
from all_rules.ruleset._schema import CaseExpectation, ItemExpectation

from ..conftest import RULESETS
from .test_ruleset_cases import _check_item, unasserted_rules

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


def test_a_dose_assertion_reads_the_patients_dose(guideline: Guideline) -> None:
    """``doses`` compares the dose computed for this patient's BSA (the lower end)."""
    facts = {"age_years": 6, "lineage": "B", "phase": "induction", "relapse_count": 0,
             "bsa_m2": 0.9}
    assessment = guideline.assess(facts)
    variant = _shown(guideline, facts, "induction.four_drug_backbone")
    good = ItemExpectation.model_validate(
        {"variant": "per_m2", "kind": "recommend",
         "doses": {"vincristine": 1.26, "daunorubicin": 22.5, "pegaspargase": 2250}})
    _check_item(assessment, "induction.four_drug_backbone", variant, good)
    with pytest.raises(AssertionError, match=r"vincristine dose 1\.26, expected 1\.4"):
        _check_item(assessment, "induction.four_drug_backbone", variant,
                    ItemExpectation.model_validate({"doses": {"vincristine": 1.4}}))


def test_traceability_counts_only_cases_that_test_the_statement(tmp_path: Path) -> None:
    """maintenance_test.yaml asserts its items (2 cases each); a rule whose cases only name
    its id is marked untested (shown on a copy whose maintenance cases lose their item
    assertions), and the page says how many are."""
    ruleset = load(RULESETS)
    page = traceability_markdown(ruleset)
    assert "`maintenance.regimen` (2 cases)" in page
    row = next(line for line in page.splitlines() if line.startswith("| `maintenance.regimen`"))
    assert row.count("maintenance_test.yaml") == 2
    # cases that name it (a near miss, or firing it without asserting it) are counted apart
    assert int(row.rstrip(" |").rsplit("|", 1)[1]) >= 1
    copy = tmp_path / "rulesets"
    shutil.copytree(RULESETS, copy, ignore=shutil.ignore_patterns("releases"))
    cases = yaml.safe_load((copy / "maintenance_test.yaml").read_text(encoding="utf-8"))
    for case in cases["cases"]:
        case["expect"].pop("items", None)
    (copy / "maintenance_test.yaml").write_text(yaml.safe_dump(cases, allow_unicode=True),
                                                encoding="utf-8")
    stripped = traceability_markdown(load(copy))
    assert "`maintenance.regimen` (**untested**)" in stripped
    assert "`maintenance.regimen` (**untested**)" not in page
    testing, _ = _cases(ruleset)
    untested = [rule.key for rule in ruleset.rules if not testing.get(rule.key)]
    assert f"**{len(untested)} of {len(ruleset.rules)} rules have no case testing" in page
    assert sorted(unasserted_rules()) == sorted(
        key for key in untested if any(r.key == key and r.spec.kind is not None
                                       for r in ruleset.rules))

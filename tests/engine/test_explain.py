"""Why and why not: explanations of any rule for one patient, in the API and the CLI."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import all_rules
from all_rules import Guideline
from all_rules.cli import main
from all_rules.explain import ConditionExplanation, UnknownRuleError
from all_rules.ruleset._conditions import FactTest

from ..support.strategies import patients

ADULT_HIGH_RISK = {"patient_id": "P1", "age_years": 40, "age_at_diagnosis_years": 40,
                   "lineage": "B", "ph_status": "negative", "kmt2a_rearranged": False,
                   "cns_status": "CNS1",
                   "wbc_at_diagnosis_10e9_per_l": 45, "phase": "consolidation",
                   "complete_remission": True, "weeks_to_complete_remission": 3,
                   "mrd_end_of_induction_percent": 0.001,
                   "mrd_consolidation_percent": 0.05, "relapse_count": 0,
                   "remission_number": 1}


def _leaves(node: ConditionExplanation) -> list[ConditionExplanation]:
    if node.node in ("all", "any"):
        return [leaf for child in node.children for leaf in _leaves(child)]
    return [node]


def test_a_fired_rule_shows_each_test_with_value_threshold_and_held(guideline: Guideline
                                                                    ) -> None:
    """A rule that fired: every test held, with the patient's value and the resolved
    threshold (parameters replaced by their numbers)."""
    explanation = guideline.explain(ADULT_HIGH_RISK, "risk.wbc_b_over_30")
    assert explanation.fired
    (variant,) = explanation.variants
    assert variant.outcome == "held"
    assert variant.summary == "fired"
    wbc = next(leaf for leaf in _leaves(variant.condition)
               if leaf.fact == "wbc_at_diagnosis_10e9_per_l")
    assert (wbc.value, wbc.test, wbc.threshold, wbc.outcome) == (45, "> 30", 30.0, "held")


def test_a_failed_test_names_value_and_threshold(guideline: Guideline) -> None:
    """Just under a threshold: the rule did not fire and the failing test is named."""
    facts = {**ADULT_HIGH_RISK, "age_years": 34.9, "age_at_diagnosis_years": 34.9}
    explanation = guideline.explain(facts, "risk.age_35_or_older")
    assert not explanation.fired
    (variant,) = explanation.variants
    assert variant.outcome == "failed"
    outcomes = [(leaf.test, leaf.value, leaf.outcome) for leaf in _leaves(variant.condition)]
    assert outcomes == [(">= 18", 34.9, "held"), (">= 35", 34.9, "failed")]
    assert "age at diagnosis at least 35 years does not hold" in variant.summary


def test_unknown_is_reported_unknown_never_failed(guideline: Guideline) -> None:
    """A rule blocked only by an unknown fact is undecided, and says what would make it
    fire: "would fire if known: transplant eligible"."""
    facts = dict(ADULT_HIGH_RISK)
    explanation = guideline.explain(facts, "transplant.high_risk_adult")
    (variant,) = explanation.variants
    assert not variant.fired
    assert variant.outcome == "unknown"
    assert variant.unknown_facts == ("transplant_eligible",)
    assert "would fire if known: transplant eligible" in variant.summary
    leaf = next(x for x in _leaves(variant.condition) if x.fact == "transplant_eligible")
    assert (leaf.known, leaf.value, leaf.outcome) == (False, None, "unknown")

    known = guideline.explain({**facts, "transplant_eligible": True},
                              "transplant.high_risk_adult")
    assert known.fired


def test_every_branch_of_an_any_is_shown(guideline: Guideline) -> None:
    """An ``any:`` shows each branch with its own outcome."""
    facts = {**ADULT_HIGH_RISK, "age_years": 12, "age_at_diagnosis_years": 12,
             "wbc_at_diagnosis_10e9_per_l": 20}
    (variant,) = guideline.explain(facts, "risk.nci_high").variants
    any_node = next(c for c in variant.condition.children if c.node == "any")
    assert [(c.test, c.outcome) for c in any_node.children] == [(">= 10", "held"),
                                                              (">= 50", "failed")]
    assert variant.fired


def test_a_derived_fact_is_traced_to_the_rules_that_produce_it(guideline: Guideline) -> None:
    """A test of a derived fact lists its producers, each explained: here the high risk
    group comes from the WBC feature."""
    (variant,) = guideline.explain(ADULT_HIGH_RISK, "group.high").variants
    derived = next(leaf for leaf in _leaves(variant.condition) if leaf.node == "derived")
    assert derived.derived == "kind:risk_feature"
    fired = [p.id for p in derived.producers if p.fired]
    assert fired == ["risk.age_35_or_older", "risk.wbc_b_over_30", "risk.mrd_consolidation"]
    blocked = next(leaf for leaf in _leaves(variant.condition)
                   if leaf.node == "not_derived" and leaf.derived == "group.very_high")
    assert blocked.outcome == "held"
    assert blocked.producers[0].fired is False


def test_the_risk_group_names_present_and_undecided_features(guideline: Guideline) -> None:
    """The risk explanation lists the features present and the undecided ones with the
    unknown facts that would decide them."""
    facts = {"age_years": 20, "phase": "diagnosis", "lineage": "B",
             "wbc_at_diagnosis_10e9_per_l": 10}
    risk = guideline.explain(facts, "group.indeterminate").risk
    assert risk.group == "indeterminate"
    assert risk.features == ()
    undecided = {u.id: u.unknown_facts for u in risk.undecided}
    assert undecided["risk.ph_positive"] == ("ph_status",)
    assert "ph_status" in risk.missing


def test_every_variant_is_explained(guideline: Guideline) -> None:
    """A rule id with variants gives one explanation per variant; the one that fired says so."""
    facts = {**ADULT_HIGH_RISK, "age_years": 8, "phase": "induction"}
    explanation = guideline.explain(facts, "induction.steroid_choice")
    assert [(v.variant, v.fired) for v in explanation.variants] == [("young_child", True),
                                                                  ("older", False),
                                                                  ("cns3", False)]


def test_nearest_misses_rank_a_rule_just_under_its_threshold_first(guideline: Guideline
                                                                  ) -> None:
    """Nearest misses: fewest tests not held first, then the smallest gap to a threshold;
    a rule missed by 0.1 year ranks before the same rule missed by 15 years, and rules that
    fired are never listed."""
    facts = {**ADULT_HIGH_RISK, "transplant_eligible": True, "tki_available": True,
             "wbc_at_diagnosis_10e9_per_l": 10}
    just_under = {**facts, "age_years": 34.9, "age_at_diagnosis_years": 34.9}
    well_under = {**facts, "age_years": 20, "age_at_diagnosis_years": 20}
    near = [r.id for r in guideline.nearest_misses(just_under, limit=80)]
    far = [r.id for r in guideline.nearest_misses(well_under, limit=80)]
    assert near.index("risk.age_35_or_older") < far.index("risk.age_35_or_older")
    fired = set(guideline.assess(just_under).ids())
    assert not fired & set(near)
    # Plan audits: audit rules whose every branch tests a plan fact (a recommendation may
    # read plan.regimen too, as the backbone's adult variants do, and miss by its phase).
    audits = {r.spec.id for r in guideline.ruleset.rules if r.spec.id.startswith("audit.")
              and all(any(isinstance(leaf, FactTest) and leaf.fact.startswith("plan.")
                          for leaf in b) for b in r.branches)}
    assert "audit.daunorubicin_dose" in audits
    assert not audits & set(near)  # no plan given: no plan audit is a near miss


def test_one_variant_is_explained_by_its_key(guideline: Guideline) -> None:
    """``id#variant`` explains that variant alone."""
    facts = {**ADULT_HIGH_RISK, "age_years": 8, "phase": "induction"}
    explanation = guideline.explain(facts, "induction.steroid_choice#older")
    assert [(v.key, v.fired) for v in explanation.variants] == [
        ("induction.steroid_choice#older", False)]
    assert not explanation.fired


def test_an_unknown_rule_id_is_refused_with_a_suggestion(guideline: Guideline) -> None:
    """A misspelt id is refused with the nearest real one."""
    with pytest.raises(UnknownRuleError, match=re.escape("did you mean `risk.age_35_or_older`")):
        guideline.explain(ADULT_HIGH_RISK, "risk.age_35_or_oldr")


def test_assessment_explain_refuses_facts_it_did_not_come_from(guideline: Guideline) -> None:
    """``Assessment.explain`` explains its own patient only."""
    assessment = guideline.assess(ADULT_HIGH_RISK)
    assert assessment.explain("risk.age_35_or_older", ADULT_HIGH_RISK, guideline).fired
    with pytest.raises(ValueError, match="do not give this assessment"):
        assessment.explain("risk.age_35_or_older",
                           {**ADULT_HIGH_RISK, "age_years": 20, "age_at_diagnosis_years": 20},
                           guideline)


def test_assessment_explain_without_a_guideline_uses_the_shipped_one() -> None:
    """With no guideline given, ``Assessment.explain`` uses the shipped one (which the engine
    registers with the output module, below it), and still refuses another patient's facts."""
    assessment = all_rules.assess(ADULT_HIGH_RISK)
    explanation = assessment.explain("risk.age_35_or_older", ADULT_HIGH_RISK)
    assert explanation.fired
    assert explanation.ruleset == Guideline.default().info
    with pytest.raises(ValueError, match="do not give this assessment"):
        assessment.explain("risk.age_35_or_older", {**ADULT_HIGH_RISK, "age_years": 20,
                                                    "age_at_diagnosis_years": 20})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients())
def test_outcome_held_exactly_when_fired_and_unknown_never_failed(facts: dict[str, Any]
                                                                  ) -> None:
    """For every rule: the explanation's outcome is ``held`` exactly when the assessment
    used it, and a test of an unknown fact is never reported as failed."""
    guideline = Guideline.default()
    assessment = guideline.assess(facts)
    ids = set(assessment.ids())
    items = {r.spec.id for r in guideline.ruleset.rules if r.spec.kind is not None}
    for rule_id in ("transplant.high_risk_adult", "risk.nci_high", "group.high",
                    "cns.high_dose_methotrexate", "relapse.blinatumomab"):
        explanation = guideline.explain(facts, rule_id)
        for variant in explanation.variants:
            assert (variant.outcome == "held") == variant.fired
            for leaf in _leaves(variant.condition):
                if leaf.node == "fact" and leaf.value is None and leaf.test != "unknown" \
                        and leaf.test != "known":
                    assert leaf.outcome == "unknown"
        if rule_id in items:
            assert explanation.fired == (rule_id in ids)
        else:
            assert explanation.fired == (explanation.risk.group_rule == rule_id)


def _run(capsys: pytest.CaptureFixture[str], tmp_path: Any, *argv: str) -> tuple[int, str, str]:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(ADULT_HIGH_RISK))
    code = main([a.replace("PATIENT", str(path)) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_explain_text_json(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    """``all-rules explain`` prints the explanation as text or JSON."""
    code, out, _ = _run(capsys, tmp_path, "explain", "PATIENT", "transplant.high_risk_adult")
    assert code == 0
    assert "would fire if known: transplant eligible" in out
    code, out, _ = _run(capsys, tmp_path, "explain", "PATIENT", "risk.wbc_b_over_30",
                        "--format", "json")
    assert code == 0
    assert json.loads(out)["fired"] is True


def test_cli_unknown_rule_exits_2_with_did_you_mean(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Any) -> None:
    """An unknown id: exit 2 and a did-you-mean on stderr, for explain and --why-not."""
    code, out, err = _run(capsys, tmp_path, "explain", "PATIENT", "risk.wbc_b_over30")
    assert (code, out) == (2, "")
    assert "did you mean `risk.wbc_b_over_30`" in err
    with pytest.raises(SystemExit) as exit_:
        _run(capsys, tmp_path, "assess", "PATIENT", "--why-not", "risk.wbc_b_over30")
    assert exit_.value.code == 2


def test_cli_assess_why_not(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    """``assess --why-not`` (repeatable) adds the explanations to the JSON and the text."""
    code, out, _ = _run(capsys, tmp_path, "assess", "PATIENT", "--why-not",
                        "transplant.high_risk_adult", "--why-not", "risk.infant")
    assert code == 0
    body = json.loads(out)
    assert body["risk"]["group"] == "high"
    assert [e["rule_id"] for e in body["why_not"]] == ["transplant.high_risk_adult",
                                                       "risk.infant"]
    code, out, _ = _run(capsys, tmp_path, "assess", "PATIENT", "--format", "text",
                        "--why-not", "risk.infant")
    assert "Rule risk.infant for patient P1: did not fire" in out


def test_an_unknown_operator_is_refused_not_skipped() -> None:
    """A condition form the evaluator does not know fails loudly instead of being read as
    "holds" (the rulesets may grow new forms on other branches)."""
    from all_rules.engine._evaluator import fact_predicate
    from all_rules.ruleset._conditions import FactTest as Test

    with pytest.raises(TypeError, match="operator `between`"):
        fact_predicate(Test("age_years", "between", (1, 2), ()), {})

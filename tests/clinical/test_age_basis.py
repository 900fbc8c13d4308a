"""One age basis (issue 17 §2, docs/clinical-policy.md "One age basis").

Classification and the treatment pathway (risk features, pediatric vs adult protocol, HSCT
indications) follow the age at diagnosis; drug labels, doses and fitness follow the current
age. Pinned here for patients who cross 1, 10, 18, 35 and 65 years between diagnosis and
now, each with what every rule family reads; and the upper bound an unrecorded age at
diagnosis takes from the current age, which decides only "diagnosed under X".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from all_rules import Guideline
from all_rules.report._describe import age_basis
from all_rules.ruleset._conditions import FactTest, walk
from all_rules.ruleset._loader import check
from all_rules.ruleset._model import Ruleset

from ..conftest import RULESETS

IN_CR1 = {"lineage": "B", "ph_status": "negative", "wbc_at_diagnosis_10e9_per_l": 12,
          "cns_status": "CNS1", "kmt2a_rearranged": False, "bsa_m2": 1.7,
          "complete_remission": True, "weeks_to_complete_remission": 3,
          "remission_number": 1, "relapse_count": 0, "transplant_eligible": True,
          "substantial_comorbidities": False, "mrd_end_of_induction_percent": 0.001,
          "mrd_consolidation_percent": 0.001}

HSCT_CR1 = {"transplant.high_risk_adult", "transplant.high_risk_adult_mrd_negative",
            "transplant.very_high_risk"}


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    loaded, _ = check(Path(RULESETS))
    assert loaded is not None
    return loaded


def _assess(guideline: Guideline, **facts: Any) -> Any:
    return guideline.assess({**IN_CR1, **facts})


# --- which age each rule family reads ------------------------------------------------------

_AT_DIAGNOSIS_FAMILIES = ("risk.", "missing.", "transplant.high_risk_adult",
                          "transplant.very_high_risk", "transplant.second_remission_goal",
                          "transplant.child_early_first_relapse",
                          "transplant.eligibility_needed")
_CURRENT_FAMILIES = ("relapse.blinatumomab", "relapse.tisagenlecleucel", "relapse.inotuzumab",
                     "induction.steroid_choice", "population.reduced_intensity",
                     "population.fitness_not_age_alone")
#: Dose audits: the label's dose reads the current age, whether the source's backbone is the
#: plan's regimen (a child's plan naming none) reads the age at diagnosis.
_DOSE_AUDITS = ("audit.pegaspargase_dose", "audit.dexamethasone_young_child")


def test_classification_and_hsct_read_the_age_at_diagnosis(ruleset: Ruleset) -> None:
    for rule in ruleset.rules:
        if rule.spec.id.startswith(_AT_DIAGNOSIS_FAMILIES):
            basis = age_basis(rule)
            assert basis is None or basis.startswith("at diagnosis"), (rule.key, basis)


def test_labels_doses_and_fitness_read_the_current_age(ruleset: Ruleset) -> None:
    for rule in ruleset.rules:
        if rule.spec.id.startswith(_CURRENT_FAMILIES):
            assert age_basis(rule) == "current (age_years)", rule.key
        if rule.spec.id.startswith(_DOSE_AUDITS):
            assert age_basis(rule) in ("current (age_years)",
                                       "both (age_years, diagnosis_age_years)"), rule.key


def test_the_bound_never_decides_an_at_least_test(ruleset: Ruleset) -> None:
    """``diagnosis_age_at_most_years`` is an upper bound: a rule may test it with ``lt`` /
    ``lte`` (diagnosed under X). ``gte`` / ``gt`` appear only where a missing fact asks for
    the exact age (the bound leaves the question open)."""
    for rule in ruleset.rules:
        for leaf in walk(rule.condition):
            if isinstance(leaf, FactTest) and leaf.fact == "diagnosis_age_at_most_years" \
                    and leaf.op in ("gt", "gte", "eq"):
                assert rule.spec.concludes.value == "missing_fact", rule.key


def test_rules_show_names_the_age_basis(ruleset: Ruleset) -> None:
    from all_rules.report._describe import catalogue_markdown, describe_rule

    rule = next(r for r in ruleset.rules if r.key == "transplant.very_high_risk")
    assert "  age basis: at diagnosis (diagnosis_age_years, the risk group)" \
        in describe_rule(rule, ruleset)
    assert "Age basis: current (age_years)." in catalogue_markdown(ruleset)


# --- crossing 1 ----------------------------------------------------------------------------

def test_crossing_1(guideline: Guideline) -> None:
    """Diagnosed at 0.9, now 1.4: an infant case (risk, at diagnosis); relapsed now, the
    inotuzumab label (from 1 year, current age) applies."""
    consolidation = _assess(guideline, phase="consolidation", age_years=1.4,
                            age_at_diagnosis_years=0.9)
    assert "risk.infant" in consolidation.risk.features
    assert consolidation.risk.group.value == "high"
    relapsed = _assess(guideline, phase="relapsed", age_years=1.4, age_at_diagnosis_years=0.9,
                       relapse_count=1, remission_number=None, complete_remission=None,
                       relapse_site="marrow", cd22_positive=True)
    assert "relapse.inotuzumab" in relapsed.ids()
    assert "risk.infant" in relapsed.risk.features


def test_an_unrecorded_age_at_diagnosis_under_1_is_decided_by_the_current_age(
        guideline: Guideline) -> None:
    risk = _assess(guideline, phase="maintenance", age_years=0.95).risk
    assert "risk.infant" in risk.features
    assert "age_at_diagnosis_years" not in risk.missing
    risk = _assess(guideline, phase="maintenance", age_years=1.0).risk
    assert "risk.infant" not in risk.features  # may or may not have been an infant
    assert risk.group.value == "indeterminate"
    assert "age_at_diagnosis_years" in risk.missing


# --- crossing 10 ---------------------------------------------------------------------------

def test_crossing_10(guideline: Guideline) -> None:
    """Diagnosed at 9.95, now 10.02 in induction: not NCI high risk by age (at diagnosis);
    the steroid and dexamethasone items follow the current age (10 or more)."""
    assessment = _assess(guideline, phase="induction", age_years=10.02,
                         age_at_diagnosis_years=9.95, mrd_end_of_induction_percent=None,
                         mrd_consolidation_percent=None, weeks_to_complete_remission=None,
                         complete_remission=None, remission_number=None,
                         plan={"steroid": "dexamethasone"})
    assert "risk.nci_high" not in assessment.risk.features
    assert "audit.dexamethasone_young_child" not in assessment.ids()
    steroid = [i for i in assessment.recommendations if i.id == "induction.steroid_choice"]
    assert steroid
    assert "Choose the induction corticosteroid" in steroid[0].text
    # Diagnosed at 10, now 10.02: NCI high risk by age.
    assessment = _assess(guideline, phase="induction", age_years=10.02,
                         age_at_diagnosis_years=10, mrd_end_of_induction_percent=None)
    assert "risk.nci_high" in assessment.risk.features


def test_an_unrecorded_age_at_diagnosis_under_10_is_not_nci_high_by_age(
        guideline: Guideline) -> None:
    """A 5-year-old in maintenance was not diagnosed at 10: no NCI age feature; the bound
    decides "under 18" (a child's criteria, CNS3 a feature)."""
    risk = _assess(guideline, phase="maintenance", age_years=5, cns_status="CNS3").risk
    assert "risk.nci_high" not in risk.features
    assert "risk.cns3_child" in risk.features
    assert risk.group.value == "high"


# --- crossing 18 ---------------------------------------------------------------------------

def test_crossing_18_the_issue_example(guideline: Guideline) -> None:
    """Diagnosed at 17.9, now 18.3, MRD-negative, WBC 12: pediatric risk (NCI, by age at
    diagnosis) and no adult HSCT item."""
    assessment = _assess(guideline, phase="consolidation", age_years=18.3,
                         age_at_diagnosis_years=17.9)
    assert "risk.nci_high" in assessment.risk.features
    assert not HSCT_CR1 & set(assessment.ids())
    assert "transplant.eligibility_needed" not in assessment.ids()
    # The adult WBC criteria are not applied either (WBC 40 > 30).
    risk = _assess(guideline, phase="consolidation", age_years=18.3,
                   age_at_diagnosis_years=17.9, wbc_at_diagnosis_10e9_per_l=40).risk
    assert "risk.wbc_b_over_30" not in risk.features


def test_crossing_18_very_high_risk_child_is_not_referred_on_adult_rules(
        guideline: Guideline) -> None:
    assessment = _assess(guideline, phase="consolidation", age_years=18.5,
                         age_at_diagnosis_years=17.5, lineage="T",
                         mrd_end_of_induction_percent=0.5, mrd_consolidation_percent=0.5)
    assert assessment.risk.group.value == "very_high"
    assert not HSCT_CR1 & set(assessment.ids())


def test_crossing_18_at_relapse_the_child_pathway_holds(guideline: Guideline) -> None:
    relapse = {"phase": "relapsed", "relapse_count": 1, "remission_number": None,
               "complete_remission": None, "relapse_site": "marrow",
               "months_from_diagnosis_to_relapse": 30, "prior_allogeneic_hsct": False}
    ids = set(_assess(guideline, age_years=19, age_at_diagnosis_years=16, **relapse).ids())
    assert "transplant.child_early_first_relapse" in ids
    assert "transplant.second_remission_goal" not in ids
    ids = set(_assess(guideline, age_years=20, age_at_diagnosis_years=18, **relapse).ids())
    assert "transplant.second_remission_goal" in ids
    assert "transplant.child_early_first_relapse" not in ids


def test_an_adult_now_with_an_unrecorded_age_at_diagnosis_gets_no_adult_hsct(
        guideline: Guideline) -> None:
    """"At least 18 at diagnosis" is never decided by the bound: the age is asked for."""
    assessment = _assess(guideline, phase="consolidation", age_years=40,
                         mrd_end_of_induction_percent=0.5, mrd_consolidation_percent=0.5)
    assert not HSCT_CR1 & set(assessment.ids())
    assert "age_at_diagnosis_years" in assessment.risk.missing
    assert "data.age_at_diagnosis" in assessment.ids()


# --- crossing 35 ---------------------------------------------------------------------------

def test_crossing_35(guideline: Guideline) -> None:
    """Diagnosed at 34.5, now 35.5: not high risk by age; no HSCT item (standard risk)."""
    assessment = _assess(guideline, phase="consolidation", age_years=35.5,
                         age_at_diagnosis_years=34.5)
    assert assessment.risk.group.value == "standard"
    assert not HSCT_CR1 & set(assessment.ids())
    assert "consolidation.mrd_standard" in assessment.ids()
    assessment = _assess(guideline, phase="consolidation", age_years=35.5,
                         age_at_diagnosis_years=35)
    assert "risk.age_35_or_older" in assessment.risk.features
    assert "transplant.high_risk_adult_mrd_negative" in assessment.ids()


# --- crossing 65 ---------------------------------------------------------------------------

def test_crossing_65(guideline: Guideline) -> None:
    """Diagnosed at 64.5, now 65.5: high risk by age at diagnosis (35 or more); the
    intensity items follow the current age (65 or more: no high-dose methotrexate, no
    "intensify")."""
    now_65 = _assess(guideline, phase="consolidation", age_years=65.5,
                     age_at_diagnosis_years=64.5)
    assert "risk.age_35_or_older" in now_65.risk.features
    assert "consolidation.high_dose_methotrexate" not in now_65.ids()
    assert "consolidation.high_risk_intensify" not in now_65.ids()
    under_65 = _assess(guideline, phase="consolidation", age_years=64.9,
                       age_at_diagnosis_years=64.5)
    assert "consolidation.high_dose_methotrexate" in under_65.ids()
    assert "consolidation.high_risk_intensify" in under_65.ids()
    # The HSCT consideration follows the age at diagnosis; eligibility is the clinician's.
    assert "transplant.high_risk_adult_mrd_negative" in now_65.ids()

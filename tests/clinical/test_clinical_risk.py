"""Clinical risk content (issue 7, classes b-i and m): risk groups after relapse, age at
diagnosis, extra features, doses, steroid wording, cranial irradiation floor, consolidation
MRD, contradictory facts and exclusive population items.

Each test pins a defect class; property tests run over generated patients (
``all_rules.cohort.synth`` rows and a smaller hypothesis search)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from all_rules import Guideline

from ..support.strategies import patients

ADULT_B = {"lineage": "B", "ph_status": "negative", "wbc_at_diagnosis_10e9_per_l": 10,
           "cns_status": "CNS1", "bsa_m2": 1.8, "kmt2a_rearranged": False,
           "phase": "diagnosis", "relapse_count": 0}


def _item(guideline: Guideline, facts: dict[str, Any], rule_id: str) -> Any:
    found = [i for i in guideline.assess(facts).recommendations if i.id == rule_id]
    assert found, f"{rule_id} did not fire"
    return found[0]


# --- f: steroid choice ---------------------------------------------------------------------

def test_steroid_reason_for_adolescents_does_not_dismiss_osteonecrosis(
        guideline: Guideline) -> None:
    item = _item(guideline, {**ADULT_B, "age_years": 14}, "induction.steroid_choice")
    words = (item.text + " " + item.reason).lower()
    assert "does not apply" not in words
    assert "osteonecrosis" in words
    assert "adolescent" in words
    assert "COG AALL0232 2016" in item.citations


# --- h: consolidation MRD ------------------------------------------------------------------

CONSOLIDATION = {**ADULT_B, "age_years": 20, "age_at_diagnosis_years": 20,
                 "phase": "consolidation",
                 "complete_remission": True, "weeks_to_complete_remission": 3,
                 "mrd_end_of_induction_percent": 0.001, "mrd_consolidation_percent": 0.001}


def test_standard_consolidation_only_for_standard_risk_in_remission(
        guideline: Guideline) -> None:
    assert "consolidation.mrd_standard" in guideline.assess(CONSOLIDATION).ids()
    for change in ({"mrd_end_of_induction_percent": 1.0},
                   {"complete_remission": False, "weeks_to_complete_remission": None},
                   {"complete_remission": None},
                   {"age_years": 40, "age_at_diagnosis_years": 40}):
        ids = guideline.assess({**CONSOLIDATION, **change}).ids()
        assert "consolidation.mrd_standard" not in ids, change


# --- b: risk group after relapse or refractoriness -----------------------------------------

IN_REMISSION = {**ADULT_B, "age_years": 20, "age_at_diagnosis_years": 20,
                "complete_remission": True,
                "weeks_to_complete_remission": 3, "mrd_end_of_induction_percent": 0.001}


def test_relapsed_or_refractory_is_never_a_first_line_group(guideline: Guideline) -> None:
    assert guideline.assess({**IN_REMISSION, "phase": "maintenance"}).risk.group.value \
        == "standard"
    for change in ({"phase": "relapsed", "relapse_count": 1},
                   {"phase": "refractory"},
                   {"phase": "maintenance", "relapse_count": 2},
                   {"phase": "consolidation", "relapse_count": 2, "remission_number": 3},
                   {"phase": "relapsed", "relapse_count": 1, "lineage": "T",
                    "weeks_to_complete_remission": 8}):
        risk = guideline.assess({**IN_REMISSION, **change}).risk
        assert risk.group.value == "relapsed_refractory", change
    # Features stay visible.
    risk = guideline.assess({**IN_REMISSION, "phase": "relapsed", "relapse_count": 1,
                             "ph_status": "positive"}).risk
    assert "risk.ph_positive" in risk.features


# --- c: age at diagnosis -------------------------------------------------------------------

MAINTENANCE = {**IN_REMISSION, "phase": "maintenance"}


def test_child_diagnosed_at_9_does_not_become_high_risk_at_11(guideline: Guideline) -> None:
    risk = guideline.assess({**MAINTENANCE, "age_years": 11, "age_at_diagnosis_years": 9}).risk
    assert risk.group.value == "standard"
    assert not risk.features
    # Without the age at diagnosis, the current age never decides it after induction.
    risk = guideline.assess({**MAINTENANCE, "age_years": 11}).risk
    assert "risk.nci_high" not in risk.features
    assert risk.group.value == "indeterminate"
    assert "age_at_diagnosis_years" in risk.missing
    assert "data.age_at_diagnosis" in guideline.assess({**MAINTENANCE, "age_years": 11}).ids()


def test_current_age_stands_in_at_diagnosis_and_in_induction(guideline: Guideline) -> None:
    for phase in ("diagnosis", "induction"):
        risk = guideline.assess({**ADULT_B, "age_years": 12, "phase": phase}).risk
        assert "risk.nci_high" in risk.features
        assert "age_at_diagnosis_years" not in risk.missing


def test_nci_high_child_with_comorbidities_is_not_told_the_high_risk_arm(
        guideline: Guideline) -> None:
    """Review finding: a 12-year-old with B-ALL and substantial comorbidities was told both
    "consider reducing treatment intensity" and "treat on the high-risk arm". The feature now
    states the classification only; the group stays high."""
    assessment = guideline.assess({**ADULT_B, "age_years": 12, "bsa_m2": 1.3,
                                   "substantial_comorbidities": True})
    assert {"risk.nci_high", "population.reduced_intensity"} <= set(assessment.ids())
    assert assessment.risk.group.value == "high"
    nci = next(i for i in assessment.recommendations if i.id == "risk.nci_high")
    assert "arm" not in nci.text.lower()
    assert "treat" not in nci.text.lower()
    assert "NCI/Rome" in nci.text


def test_age_at_diagnosis_is_optional_and_bounded() -> None:
    from all_rules import validate_facts
    assert validate_facts({"age_years": 5}).age_at_diagnosis_years is None
    assert validate_facts({"age_years": 5, "age_at_diagnosis_years": 4.5}) \
        .age_at_diagnosis_years == 4.5


# --- i: contradictory facts ----------------------------------------------------------------

def test_contradictions_are_reported_and_decide_nothing(guideline: Guideline) -> None:
    cases = {
        "data.inconsistent.remission": {**MAINTENANCE, "age_at_diagnosis_years": 20,
                                        "complete_remission": False,
                                        "weeks_to_complete_remission": 6},
        "data.inconsistent.relapse_phase": {**IN_REMISSION, "phase": "relapsed",
                                            "relapse_count": 0},
        "data.inconsistent.remission_number": {**MAINTENANCE, "age_at_diagnosis_years": 20,
                                               "relapse_count": 1, "remission_number": 4},
        "data.inconsistent.relapse_site": {**ADULT_B, "age_years": 20, "relapse_count": 0,
                                           "relapse_site": "isolated_cns"},
        "data.inconsistent.age_at_diagnosis": {**ADULT_B, "age_years": 20,
                                               "age_at_diagnosis_years": 40},
    }
    for item_id, facts in cases.items():
        assessment = guideline.assess(facts)
        found = [i for i in assessment.recommendations if i.id == item_id]
        assert found, item_id
        assert found[0].kind.value == "data_needed"
        assert found[0].severity.value == "warning"
        risk = assessment.risk
        assert risk.group.value != "standard", item_id
    # Neither side of a contradiction decides a feature.
    risk = guideline.assess(cases["data.inconsistent.remission"]).risk
    assert "risk.slow_remission" not in risk.features
    risk = guideline.assess(cases["data.inconsistent.age_at_diagnosis"]).risk
    assert "risk.age_35_or_older" not in risk.features
    assert "age_at_diagnosis_years" in risk.missing
    # A CNS "relapse" with no relapse gets no "no routine irradiation" next to "consider it".
    ids = guideline.assess({**cases["data.inconsistent.relapse_site"], "age_years": 20}).ids()
    assert not {"cns.no_routine_cranial_irradiation", "cns.cranial_irradiation_reserved"} \
        <= set(ids)


def test_a_contradicted_relapse_history_is_never_standard(guideline: Guideline) -> None:
    for change in ({"remission_number": 3}, {"relapse_site": "marrow"}):
        for phase in ("diagnosis", "induction", "consolidation", "maintenance"):
            facts = {**IN_REMISSION, "phase": phase, "relapse_count": 0, **change}
            risk = guideline.assess(facts).risk
            assert risk.group.value == "indeterminate", (change, phase)
            assert "relapse_count" in risk.missing


# --- d: features a hematologist expects --------------------------------------------------

def test_child_with_t_all_and_wbc_200_is_high_risk(guideline: Guideline) -> None:
    risk = guideline.assess({**ADULT_B, "age_years": 12, "lineage": "T",
                             "wbc_at_diagnosis_10e9_per_l": 200}).risk
    assert risk.group.value == "high"
    assert "risk.t_all_child" in risk.features


def test_cns3_child_and_kmt2a_outside_infancy_are_features(guideline: Guideline) -> None:
    assert "risk.cns3_child" in guideline.assess(
        {**ADULT_B, "age_years": 6, "cns_status": "CNS3"}).risk.features
    for age in (4.0, 40.0):
        assert "risk.kmt2a_rearranged" in guideline.assess(
            {**ADULT_B, "age_years": age, "kmt2a_rearranged": True}).risk.features


def test_testicular_involvement_is_read_not_informational() -> None:
    """Issue 18: testicular involvement at diagnosis is read (induction.testicular_reassessment)."""
    from all_rules.ruleset._safe_yaml import load_file

    from ..conftest import RULESETS
    manifest = load_file(RULESETS / "ruleset.yaml").data
    assert "testicular_involvement" not in manifest["informational_facts"]


# --- e: doses that apply to this patient -------------------------------------------------

def _doses(guideline: Guideline, facts: dict[str, Any]) -> dict[str, Any]:
    item = _item(guideline, facts, "induction.four_drug_backbone")
    return {d.drug: d for d in item.doses or ()}


def test_doses_shown_only_where_they_apply(guideline: Guideline) -> None:
    child = _doses(guideline, {**ADULT_B, "age_years": 8, "bsa_m2": 1.0})
    assert child["pegaspargase"].per_m2 == 2500
    assert set(child) == {"vincristine", "daunorubicin", "pegaspargase"}
    backbone_plan = {"regimen": "source_backbone"}
    fit = {**ADULT_B, "substantial_comorbidities": False, "plan": backbone_plan}
    adult = _doses(guideline, {**fit, "age_years": 22})
    assert adult["pegaspargase"].per_m2 == 2000  # Oncaspar label over 21 years
    young_adult = _doses(guideline, {**fit, "age_years": 19})
    assert young_adult["pegaspargase"].per_m2 == 2500
    small = {**ADULT_B, "age_years": 1.5, "bsa_m2": 0.45, "weight_kg": 9}
    assert _doses(guideline, small) == {}
    item = _item(guideline, small, "induction.four_drug_backbone")
    assert "82.5 IU/kg" in item.text
    assert "2500 IU/m²" not in item.text
    infant = {**ADULT_B, "age_years": 0.9, "bsa_m2": 0.6}
    ids = guideline.assess(infant).ids()  # the infant protocol speaks, not the backbone
    assert "induction.four_drug_backbone" not in ids
    assert "population.infant_protocol" in ids
    assert _doses(guideline, {**fit, "age_years": 30, "bsa_m2": None}) == {}


def test_backbone_doses_follow_the_plans_regimen(guideline: Guideline) -> None:
    """Review findings: an adult was told "use an established adult regimen (UKALL XII / ECOG
    2993 or hyper-CVAD)" beside the four-drug backbone with daunorubicin 25-30 mg/m²
    computed (the UKALL XII / ECOG E2993 induction gives 60 mg/m²), and a 16-year-old on
    UKALL XII saw those figures beside the regimen's own 60 mg/m² audit. Backbone doses are
    shown only for a plan on the source backbone, or a child whose plan names no regimen;
    population.adult_regimens is not shown beside a plan on the source backbone."""
    fit = {**ADULT_B, "bsa_m2": 1.8, "substantial_comorbidities": False}
    for age in (1.5, 8, 16, 18, 21.9, 40, 64.9):
        for regimen in ("ukall_xii_ecog_2993", "hyper_cvad", "other", None):
            facts = {**fit, "age_years": age, "bsa_m2": 0.65 if age < 2 else 1.8}
            if regimen:
                facts["plan"] = {"regimen": regimen}
            assessment = guideline.assess(facts)
            item = assessment.get("induction.four_drug_backbone")
            assert item is not None, (age, regimen)
            shows_doses = regimen is None and age < 18
            assert (item.doses is not None) == shows_doses, (age, regimen)
            if not shows_doses:
                assert "mg/m²" not in item.text
                assert "IU/" not in item.text
    for age in (19, 40):
        on_backbone = guideline.assess({**fit, "age_years": age,
                                        "plan": {"regimen": "source_backbone"}})
        item = on_backbone.get("induction.four_drug_backbone")
        assert item is not None
        assert item.doses
        assert "population.adult_regimens" not in on_backbone.ids()
        unnamed = guideline.assess({**fit, "age_years": age})
        assert "population.adult_regimens" in unnamed.ids()


def test_full_intensity_for_an_adult_waits_for_known_fitness(guideline: Guideline) -> None:
    """Review finding: an adult with comorbidities unknown was asked for a fitness assessment
    and, in the same assessment, given the full backbone and high-dose methotrexate. Now
    only the request stands until fitness is known; a child is unchanged."""
    adult = guideline.assess({**ADULT_B, "age_years": 40, "bsa_m2": 1.9})
    ids = set(adult.ids())
    assert "data.fitness_assessment" in ids
    assert not ids & {"induction.four_drug_backbone", "cns.high_dose_methotrexate",
                      "population.adult_regimens"}
    child = guideline.assess({**ADULT_B, "age_years": 8, "bsa_m2": 1.0})
    assert {"induction.four_drug_backbone", "cns.high_dose_methotrexate"} <= set(child.ids())
    consolidation = guideline.assess({**ADULT_B, "age_years": 40, "age_at_diagnosis_years": 40,
                                      "bsa_m2": 1.9, "phase": "consolidation",
                                      "complete_remission": True,
                                      "weeks_to_complete_remission": 4,
                                      "mrd_end_of_induction_percent": 0.001})
    ids = set(consolidation.ids())
    assert "data.fitness_assessment" in ids
    assert "consolidation.high_dose_methotrexate" not in ids


def test_correct_doses_for_this_patient_are_not_flagged(guideline: Guideline) -> None:
    def ids(age: float, bsa: float, doses: list[dict[str, Any]], **plan: Any) -> list[str]:
        facts = {**ADULT_B, "age_years": age, "bsa_m2": bsa, "weight_kg": 9.0,
                 "substantial_comorbidities": False, "plan": {"doses": doses, **plan}}
        return guideline.assess(facts).ids()
    dauno60 = [{"drug": "daunorubicin", "dose": 60, "unit": "mg/m2"}]
    assert "audit.daunorubicin_dose" not in ids(40, 1.8, dauno60,
                                                regimen="ukall_xii_ecog_2993")
    assert "audit.daunorubicin_dose" not in ids(40, 1.8, dauno60)
    assert "audit.daunorubicin_dose" in ids(40, 1.8, dauno60, regimen="source_backbone")
    peg2000 = [{"drug": "pegaspargase", "dose": 2000, "unit": "IU/m2"}]
    assert "audit.pegaspargase_dose" not in ids(30, 1.8, peg2000)
    assert "audit.pegaspargase_dose" in ids(15, 1.5, peg2000)
    per_kg = [{"drug": "pegaspargase", "dose": 742.5, "unit": "IU"}]
    assert "audit.pegaspargase_dose" not in ids(1.5, 0.45, per_kg)


# --- properties over generated patients ----------------------------------------------------

SYNTH_PATIENTS = 100_000
_DIAGNOSIS_FEATURES = ("risk.age_35_or_older", "risk.nci_high", "risk.infant",
                       "risk.wbc_b_over_30", "risk.wbc_t_over_100", "risk.cns3_child",
                       "risk.t_all_child")


def _check(facts: dict[str, Any], assessment: Any) -> None:
    """The invariants of classes b, c and e for one patient and its assessment."""
    relapsed = (facts.get("phase") in ("relapsed", "refractory")
                or (facts.get("relapse_count") or 0) >= 1
                or (facts.get("remission_number") or 0) >= 2)
    group = assessment.risk.group.value
    if relapsed:
        assert group not in ("standard", "provisional_standard"), facts
    bsa = facts.get("bsa_m2")
    if bsa is None and facts.get("height_cm") and facts.get("weight_kg"):
        bsa = round((facts["height_cm"] * facts["weight_kg"] / 3600) ** 0.5, 4)  # as prepared
    if bsa is not None and bsa < 0.6:
        for item in assessment.recommendations:
            for dose in item.doses or ():
                # No named source gives a per-m² dose under 0.6 m².
                assert dose.dose is None, (facts, dose)
    if facts.get("phase") in ("consolidation", "maintenance", "relapsed", "refractory") \
            and facts.get("age_at_diagnosis_years") is None:
        # The current age only bounds the age at diagnosis (issue 17 §2): it decides
        # "diagnosed under X" (infant under 1; a child's CNS3 or T-ALL under 18), never a
        # feature that needs "diagnosed at X or older".
        allowed = {"risk.infant"} if facts["age_years"] < 1 else set()
        if facts["age_years"] < 18:
            allowed |= {"risk.cns3_child", "risk.t_all_child"}
        assert not (set(_DIAGNOSIS_FEATURES) - allowed) & set(assessment.risk.features), facts
    _check_hsct_age_basis(facts, assessment)


_ADULT_HSCT = {"transplant.high_risk_adult", "transplant.high_risk_adult_mrd_negative",
               "transplant.very_high_risk"}
_CHILD_FEATURES = {"risk.nci_high", "risk.cns3_child", "risk.t_all_child"}
_ADULT_FEATURES = {"risk.wbc_b_over_30", "risk.wbc_t_over_100", "risk.age_35_or_older"}


def _check_hsct_age_basis(facts: dict[str, Any], assessment: Any) -> None:
    """Issue 17 §2: no adult HSCT item for a patient classified on pediatric criteria, and
    no child's HSCT item for one classified on adult criteria; the adult items need a known
    age at diagnosis of 18 or more."""
    ids, features = set(assessment.ids()), set(assessment.risk.features)
    if ids & _ADULT_HSCT:
        assert not features & _CHILD_FEATURES, facts
        dx_age = facts.get("age_at_diagnosis_years")
        if dx_age is None and facts.get("phase") in ("diagnosis", "induction"):
            dx_age = facts["age_years"]
        assert dx_age is not None, facts
        assert dx_age >= 18, facts
    if "transplant.child_early_first_relapse" in ids:
        assert not features & _ADULT_FEATURES, facts


def test_invariants_over_100000_synthetic_patients(guideline: Guideline) -> None:
    """Relapsed/refractory never standard; no per-m² dose under 0.6 m²; no feature defined
    at diagnosis computed from the current age after induction — over synth rows."""
    from all_rules.cohort import synth

    seen_small = seen_relapsed = seen_no_dx_age = seen_adult_hsct = 0
    for facts in synth.patients(SYNTH_PATIENTS, seed=2026, missing_rate=0.1):
        assessment = guideline.assess(facts)
        _check(facts, assessment)
        seen_relapsed += facts.get("phase") in ("relapsed", "refractory")
        seen_no_dx_age += facts.get("age_at_diagnosis_years") is None
        seen_adult_hsct += bool(set(assessment.ids()) & _ADULT_HSCT)
        seen_small += (facts.get("bsa_m2") or 1) < 0.6 or (
            (facts.get("height_cm") or 200) * (facts.get("weight_kg") or 200) < 1296)
    # The sweep reaches each situation it claims to check.
    assert seen_relapsed > 5_000
    assert seen_no_dx_age > 5_000
    assert seen_adult_hsct > 1_000
    assert seen_small > 1_000


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patients())
def test_invariants_over_generated_patients(guideline: Guideline,
                                            facts: dict[str, Any]) -> None:
    _check(facts, guideline.assess(facts))


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patients(), st.floats(min_value=0, max_value=120, allow_nan=False))
def test_current_age_never_decides_diagnosis_features_after_induction(
        guideline: Guideline, facts: dict[str, Any], other_age: float) -> None:
    """After induction, with the age at diagnosis recorded, changing only the current age
    never changes the risk features or group (they are decided at diagnosis). Without it,
    the current age bounds it (test_age_basis.py)."""
    if facts.get("phase") not in ("consolidation", "maintenance", "relapsed", "refractory"):
        return
    dx_age = facts.get("age_at_diagnosis_years")
    if dx_age is None:
        return
    if dx_age > facts["age_years"] or dx_age > other_age:
        return  # a contradicted age at diagnosis is unknown; changing the age changes that
    before = guideline.assess(facts).risk
    after = guideline.assess({**facts, "age_years": other_age}).risk
    assert set(before.features) == set(after.features)
    assert before.group == after.group


# --- issue 17 §4: the group follows MRD; §5: slow remission in completed weeks -------------

def test_mrd_that_calls_for_intensification_raises_the_group(guideline: Guideline) -> None:
    for mrd in ({"mrd_consolidation_percent": 0.01},
                {"mrd_consolidation_percent": None, "mrd_end_of_induction_percent": 0.5}):
        facts = {**CONSOLIDATION, **mrd, "substantial_comorbidities": False}
        assessment = guideline.assess(facts)
        assert "consolidation.mrd_intensify" in assessment.ids(), mrd
        assert assessment.risk.group.value == "high", mrd
        assert "consolidation.high_risk_intensify" not in assessment.ids(), mrd


def test_remission_at_the_end_of_induction_marrow_is_not_slow(guideline: Guideline) -> None:
    for weeks, slow in ((29 / 7, False), (33 / 7, False), (34.9 / 7, False), (35 / 7, True)):
        risk = guideline.assess({**CONSOLIDATION, "weeks_to_complete_remission": weeks}).risk
        assert ("risk.slow_remission" in risk.features) is slow, weeks

"""Reasons and texts are clinical prose: no engine notation, a capital first (issue 17 §6).

The evidence of an item stays machine-readable in JSON (fact, value, test with its
operator); what a clinician reads — the reason's ``{evidence}``, the text output, the HTML
report and the CDS cards — words the same evidence (``_wording.evidence_prose``).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from all_rules import Guideline
from all_rules.cds._answer import cards
from all_rules.cohort.synth import patients
from all_rules.engine._wording import condition_phrase, evidence_phrase, evidence_prose
from all_rules.report._describe import assessment_text
from all_rules.ruleset._loader import load
from all_rules.ruleset._safe_yaml import load_file
from all_rules.ruleset._schema import CaseFile

from ..conftest import RULESETS
from ..support.strategies import patients as patient_strategy

NOTATION = re.compile(
    r"==|!=|>=|<=|\(in \[|\bnot_in\b|\bnot in \[|\bderived\b|risk\.group|risk\.features"
    r"|risk\.missing|_percent\b|_years\b|\bplan\.[a-z_]+|\b(?:true|false|null|None)\b"
    r"|\b[a-z][a-z0-9]*\.[a-z][a-z0-9_]*_[a-z0-9_]+\b|\b[A-Za-z][a-z0-9]*_[a-z0-9_]+\b")
"""Engine notation: operators, list tests, derived tests, dotted and snake_case names (a
fact, a rule id), JSON literals."""

PATIENTS = int(os.environ.get("ALL_RULES_PROSE_PATIENTS", "100000"))
"""Synthetic patients (a fifth of their facts unknown) whose words are checked (under a minute
for 100,000; ``ALL_RULES_PROSE_PATIENTS`` sets fewer for a quick run)."""


def _faults(items: Any) -> list[str]:
    faults = []
    for item in items:
        for field in ("text", "reason"):
            words = item[field]
            found = NOTATION.search(words)
            if found:
                faults.append(f"{item['id']} {field}: {found.group(0)!r} in {words!r}")
            if not words[:1].isupper():
                faults.append(f"{item['id']} {field}: no capital first: {words!r}")
    return faults


def _case_facts() -> list[tuple[dict[str, Any], dict[str, float]]]:
    out = []
    for file in load(RULESETS).files:
        cases = CaseFile.model_validate(
            load_file(RULESETS / file.replace(".yaml", "_test.yaml")).data)
        out += [({**cases.base, **case.facts}, dict(case.parameters)) for case in cases.cases]
    return out


def test_every_case_reads_as_prose() -> None:
    """Every item of every ruleset case: no notation, a capital first."""
    faults: list[str] = []
    guidelines: dict[tuple[tuple[str, float], ...], Guideline] = {}
    for facts, parameters in _case_facts():
        key = tuple(sorted(parameters.items()))
        if key not in guidelines:
            guidelines[key] = Guideline.load(RULESETS, parameters=parameters)
        assessment = guidelines[key].assess(facts)
        faults += _faults(item.model_dump() for item in assessment.recommendations)
    assert faults == []


def test_a_synthetic_cohort_reads_as_prose(guideline: Guideline) -> None:
    """Every item of a synthetic cohort with unknowns: no notation, a capital first."""
    faults: list[str] = []
    seen: set[str] = set()
    for facts in patients(PATIENTS, seed=17, missing_rate=0.2):
        for item in json.loads(guideline.assess_json(facts))["recommendations"]:
            key = item["reason"] + item["text"]
            if key not in seen:
                seen.add(key)
                faults += _faults([item])
    assert faults == []


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(facts=patient_strategy())
def test_any_patient_reads_as_prose(guideline: Guideline, facts: dict[str, Any]) -> None:
    assert _faults(item.model_dump() for item in guideline.assess(facts).recommendations) == []


def test_the_evidence_stays_machine_readable_in_json(guideline: Guideline) -> None:
    """Only the words change: the JSON evidence keeps the fact, value and operator."""
    facts = {"age_years": 40, "age_at_diagnosis_years": 40, "lineage": "B", "phase":
             "diagnosis", "wbc_at_diagnosis_10e9_per_l": 45, "cns_status": "CNS1"}
    item = guideline.assess(facts).get("risk.age_35_or_older")
    assert item is not None
    evidence = {(e.fact, e.test) for e in item.evidence}
    assert ("diagnosis_age_years", ">= 35") in evidence


@pytest.mark.parametrize(("fact", "value", "test", "words"), [
    ("wbc_at_diagnosis_10e9_per_l", 45, "> 30", "WBC at diagnosis 45 ×10⁹/L, above 30 ×10⁹/L"),
    ("age_years", 40, ">= 35", "age 40 years, at least 35 years"),
    ("age_years", 0.5, "< 1", "age 0.5 years, under 1 year"),
    ("relapse_count", 1, "<= 1", "number of relapses 1, at most 1"),
    ("cns_status", "CNS1", "in [CNS1, CNS2]", "CNS status CNS1"),
    ("phase", "consolidation", "not in [diagnosis, induction]",
     "phase consolidation, not diagnosis or induction"),
    ("lineage", "T", "!= B", "lineage T, not B"),
    ("relapse_site", "isolated_cns", "== isolated_cns", "relapse site isolated CNS"),
    ("transplant_eligible", True, "== true", "transplant eligible"),
    ("transplant_eligible", False, "!= true", "not transplant eligible"),
    ("tki_available", None, "unknown", "TKI available: not known"),
    ("mrd_end_of_induction_percent", None, "unknown", "end-of-induction MRD unknown"),
    ("cd19_positive", True, "known", "CD19 positive"),
    ("risk.group", "high", "== high", "risk group high"),
    ("risk.group", "very_high", "!= very_high", "risk group not very high"),
    ("risk.features", None, "any derived", "a high-risk feature present"),
    ("risk.features", [], "none derived", "no high-risk feature present"),
    ("risk.slow_remission", True, "derived", "slow remission: present"),
])
def test_each_operator_in_words(fact: str, value: Any, test: str, words: str) -> None:
    assert evidence_phrase(fact, value, test) == words


def test_a_title_words_a_derived_fact() -> None:
    assert evidence_phrase("risk.slow_remission", False, "not derived",
                           {"risk.slow_remission": "Slow or no complete remission"}
                           ) == "slow or no complete remission: absent"


def test_one_phrase_per_fact_with_every_threshold() -> None:
    assert evidence_prose([("age_years", 20, ">= 18"), ("phase", "relapsed", "== relapsed"),
                           ("age_years", 20, "< 65"),
                           ("phase", "relapsed", "in [relapsed, refractory]")]) == (
        "age 20 years, at least 18 years and under 65 years; phase relapsed")


@pytest.mark.parametrize(("fact", "test", "words"), [
    ("age_years", ">= 35", "age at least 35 years"),
    ("cns_status", "in [CNS1, CNS2]", "CNS status CNS1 or CNS2"),
    ("transplant_eligible", "== true", "transplant eligible"),
    ("kmt2a_rearranged", "== false", "KMT2A not rearranged"),
    ("phase", "not in [diagnosis, induction]", "phase not diagnosis or induction"),
    ("mrd_current_percent", "unknown", "current MRD unknown"),
])
def test_a_condition_in_words(fact: str, test: str, words: str) -> None:
    assert condition_phrase(fact, test) == words


def test_the_text_output_and_cards_word_the_evidence(guideline: Guideline) -> None:
    """The text output's evidence line and a CDS card's evidence are prose too."""
    facts = {"age_years": 40, "age_at_diagnosis_years": 40, "lineage": "B", "phase":
             "diagnosis", "wbc_at_diagnosis_10e9_per_l": 45, "cns_status": "CNS1"}
    assessment = guideline.assess(facts)
    text = assessment_text(assessment)
    assert "Evidence: age at diagnosis 40 years, at least 35 years" in text
    assert ">= 35" not in text
    detail = "\n".join(c["detail"] for c in cards(assessment, "h", "https://x", False))
    assert "age at diagnosis 40 years, at least 35 years" in detail
    assert not NOTATION.search(detail.replace("`", ""))


def test_a_bound_made_redundant_by_a_tighter_one_is_left_out() -> None:
    assert evidence_prose([("age_years", 40, ">= 18"), ("age_years", 40, ">= 35"),
                           ("age_years", 40, "< 65"), ("age_years", 40, "<= 65")]) == (
        "age 40 years, at least 35 years and under 65 years")

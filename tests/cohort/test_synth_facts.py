"""The synthetic cohort's facts added for clinical coverage (issue 18 §3): plausible shares,
only where they can be, valid, deterministic, and drawn without changing any earlier fact."""

from __future__ import annotations

import random
from typing import Any

import pytest

from all_rules.cohort import synth
from all_rules.facts import PatientFacts

ADDED = ("hypodiploidy", "high_hyperdiploidy", "etv6_runx1", "iamp21", "tcf3_hlf", "ph_like",
         "abl1_t315i", "down_syndrome", "testicular_involvement_end_of_induction",
         "prior_allogeneic_hsct", "prior_cranial_irradiation")
SUBTYPES = ("hypodiploidy", "high_hyperdiploidy", "etv6_runx1", "iamp21", "tcf3_hlf",
            "ph_like")


@pytest.fixture(scope="module")
def cohort() -> list[dict[str, Any]]:
    return list(synth.patients(20_000, seed=1, missing_rate=0))


def _age(p: dict[str, Any]) -> float:
    at = p.get("age_at_diagnosis_years")
    return float(p["age_years"] if at is None else at)


def _share(patients: list[dict[str, Any]], fact: str) -> float:
    known = [p[fact] for p in patients if fact in p]
    assert len(known) > 50, fact
    return sum(known) / len(known)


def test_shares_are_plausible(cohort: list[dict[str, Any]]) -> None:
    children = [p for p in cohort if p["lineage"] == "B" and 1 <= _age(p) < 18]
    young_adults = [p for p in cohort if p["lineage"] == "B" and 18 <= _age(p) < 40]
    assert 0.18 < _share(children, "etv6_runx1") < 0.30
    assert 0.20 < _share(children, "high_hyperdiploidy") < 0.32
    assert 0.005 < _share(children, "hypodiploidy") < 0.03
    assert 0.005 < _share(children, "iamp21") < 0.035
    assert _share(children, "tcf3_hlf") < 0.01
    assert 0.10 < _share(young_adults, "ph_like") < 0.25
    assert 0.01 < _share([p for p in cohort if p["age_years"] < 18], "down_syndrome") < 0.04
    assert _share(cohort, "prior_cranial_irradiation") < 0.05


def test_facts_only_where_they_can_be(cohort: list[dict[str, Any]]) -> None:
    for p in cohort:
        if "abl1_t315i" in p:
            assert p["ph_status"] == "positive"
            assert p["phase"] in ("relapsed", "refractory")
        if "testicular_involvement_end_of_induction" in p:
            assert (p["sex"], p["testicular_involvement"]) == ("male", True)
            assert p["phase"] in ("consolidation", "maintenance")
        if p.get("prior_allogeneic_hsct"):
            assert p["relapse_count"] >= 1
        assert sum(bool(p.get(name)) for name in SUBTYPES) <= 1      # one primary subtype
        if p["ph_status"] == "positive" or p["kmt2a_rearranged"] or p["lineage"] == "T":
            assert not any(p.get(name) for name in SUBTYPES)
    assert any(p.get("abl1_t315i") for p in cohort)
    assert any(p.get("testicular_involvement_end_of_induction") for p in cohort)
    assert any(p.get("prior_allogeneic_hsct") for p in cohort)


def test_unknowns_and_validity() -> None:
    """Each added fact is sometimes unknown, and every patient is valid."""
    patients = list(synth.patients(3000, seed=2, missing_rate=0.1))
    for p in patients:
        PatientFacts.model_validate(p)
    for name in ADDED:
        assert any(name not in p for p in patients), name
        assert any(name in p for p in patients), name


def test_deterministic_and_earlier_facts_unchanged() -> None:
    """The same seed gives the same patients; the added facts come from their own stream,
    so each patient's earlier facts are exactly those of the main stream alone."""
    first = list(synth.patients(500, seed=9))
    assert first == list(synth.patients(500, seed=9))
    rnd = random.Random(9)
    for index, p in enumerate(first):
        alone = synth.patient(rnd, index, 0.05, more=random.Random(0))
        assert {k: v for k, v in p.items() if k not in ADDED} == \
            {k: v for k, v in alone.items() if k not in ADDED}
    assert synth.patient(random.Random(4), 0) == synth.patient(random.Random(4), 0)

"""The differential oracle: the Python evaluator of the condition language and the engine agree.

For every patient and every rule, the evaluator of ``all_rules.engine._evaluator`` (plain Python,
independent of durable-rules) must say a rule branch holds exactly when the engine fired it.
A disagreement is a bug in one of the two. Three sources of patients: 100,000 synthetic
rows (the bulk, in two processes), every case of the rulesets' case files, and a hypothesis
search near every threshold the ruleset names (which shrinks a disagreement to a small one).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from multiprocessing import get_context
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from all_rules import Guideline, InvalidFactsError, Plan
from all_rules.engine._evaluator import Evaluator, threshold
from all_rules.engine._guideline import validate_facts
from all_rules.engine._prepare import prepare
from all_rules.ruleset._conditions import FactTest
from all_rules.ruleset._loader import load
from all_rules.ruleset._safe_yaml import load_file
from all_rules.ruleset._schema import CaseFile

from ..conftest import RULESETS
from ..support.strategies import patients

SYNTHETIC_PATIENTS = int(os.environ.get("ALL_RULES_DIFFERENTIAL_PATIENTS", "100000"))
CHUNKS = 4


def _engine_branches(guideline: Guideline, values: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    fired: dict[str, list[int]] = {}
    for item in guideline.engine.evaluate(values):
        fired.setdefault(item.rule.key, []).append(item.branch)
    return {key: tuple(sorted(branches)) for key, branches in fired.items()}


def _disagreement(guideline: Guideline, evaluator: Evaluator,
                  facts: dict[str, Any]) -> dict[str, Any] | None:
    values = prepare(validate_facts(facts)).values
    engine = _engine_branches(guideline, values)
    python = evaluator.fired(values)
    if engine == python:
        return None
    keys = sorted(set(engine) | set(python))
    return {key: {"engine": engine.get(key), "python": python.get(key)} for key in keys
            if engine.get(key) != python.get(key)}


def _chunk(args: tuple[int, int, float]) -> tuple[int, list[Any], dict[str, int]]:
    """Worker: one chunk of synthetic patients; returns (count, disagreements, firings)."""
    from all_rules.cohort import synth

    count, seed, missing_rate = args
    guideline = Guideline.default()
    evaluator = Evaluator(guideline.ruleset)
    bad: list[Any] = []
    firings: dict[str, int] = {}
    for facts in synth.patients(count, seed, missing_rate):
        values = prepare(validate_facts(facts)).values
        engine = _engine_branches(guideline, values)
        python = evaluator.fired(values)
        for key in engine:
            firings[key] = firings.get(key, 0) + 1
        if engine != python and len(bad) < 10:
            bad.append((facts.get("patient_id"), seed,
                        sorted(set(engine.items()) ^ set(python.items()))))
    return count, bad, firings


@pytest.mark.slow
def test_engine_and_evaluator_agree_on_100k_synthetic_patients() -> None:
    """Over 100,000 synthetic patients (a quarter of them with 30 % of facts unknown),
    every rule branch fires in the engine exactly when the Python evaluator says it holds."""
    per_chunk = math.ceil(SYNTHETIC_PATIENTS / CHUNKS)
    jobs = [(per_chunk, 1000 + index, 0.3 if index == 0 else 0.05)
            for index in range(CHUNKS)]
    workers = min(2, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 2
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_chunk, jobs))
    total = sum(count for count, _, _ in results)
    bad = [entry for _, chunk_bad, _ in results for entry in chunk_bad]
    firings: dict[str, int] = {}
    for _, _, chunk_firings in results:
        for key, count in chunk_firings.items():
            firings[key] = firings.get(key, 0) + count
    print(f"\ndifferential: {total:,} synthetic patients, {len(firings)} of "
          f"{len(Guideline.default().ruleset.rules)} rules fired at least once")
    assert total >= SYNTHETIC_PATIENTS
    assert bad == []
    # The oracle means little if the cohort exercises few rules.
    assert len(firings) >= 0.8 * len(Guideline.default().ruleset.rules)


@cache
def _loaded(parameters: tuple[tuple[str, float], ...]) -> tuple[Guideline, Evaluator]:
    guideline = Guideline.load(RULESETS, parameters=dict(parameters))
    return guideline, Evaluator(guideline.ruleset)


def _case_params() -> list[Any]:
    ruleset = load(RULESETS)
    out = []
    for file in ruleset.files:
        cases = CaseFile.model_validate(
            load_file(RULESETS / file.replace(".yaml", "_test.yaml")).data)
        for case in cases.cases:
            out.append(pytest.param({**cases.base, **case.facts},
                                    tuple(sorted(case.parameters.items())),
                                    id=f"{file}: {case.name}"))
    return out


@pytest.mark.parametrize(("facts", "parameters"), _case_params())
def test_engine_and_evaluator_agree_on_every_case(facts: dict[str, Any],
                                                  parameters: tuple[tuple[str, float], ...]
                                                  ) -> None:
    """Every case of the rulesets' case files (with its parameter overrides): the same
    rule branches fire in the engine and in the Python evaluator."""
    guideline, evaluator = _loaded(parameters)
    assert _disagreement(guideline, evaluator, facts) is None


def _thresholds() -> dict[str, list[float]]:
    """Every number a ruleset compares a top-level numeric fact with, per fact."""
    ruleset = load(RULESETS)
    found: dict[str, set[float]] = {}
    for rule in ruleset.rules:
        for branch in rule.branches:
            for leaf in branch:
                if isinstance(leaf, FactTest) and leaf.op in ("eq", "ne", "gt", "gte", "lt",
                                                              "lte"):
                    value = threshold(leaf.value, ruleset.values)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        found.setdefault(leaf.fact, set()).add(float(value))
    return {fact: sorted(values) for fact, values in found.items()}


THRESHOLDS = _thresholds()


@st.composite
def _near_thresholds(draw: st.DrawFn) -> dict[str, Any]:
    """A patient whose numeric facts sit on, or a hair either side of, a ruleset threshold."""
    facts: dict[str, Any] = draw(patients())
    plan = facts.get("plan")
    for fact, values in THRESHOLDS.items():
        if not draw(st.booleans()):
            continue
        bound = draw(st.sampled_from(values))
        value = draw(st.sampled_from([bound, math.nextafter(bound, math.inf),
                                      math.nextafter(bound, -math.inf), bound + 1e-6,
                                      bound - 1e-6, bound * 1.05, bound * 0.95]))
        if fact.startswith("plan."):
            if isinstance(plan, dict) and fact.removeprefix("plan.") in Plan.model_fields:
                plan[fact.removeprefix("plan.")] = value
            continue
        facts[fact] = int(value) if fact in _INTEGER_FACTS else value
    return facts


_INTEGER_FACTS = {"relapse_count", "remission_number", "courses_since_remission"}


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(_near_thresholds())
def test_engine_and_evaluator_agree_near_thresholds(facts: dict[str, Any]) -> None:
    """Patients on and a hair around every threshold: engine and evaluator agree (hypothesis
    shrinks any disagreement to a minimal patient)."""
    guideline, evaluator = _loaded(())
    try:
        validate_facts(facts)
    except InvalidFactsError:
        assume(False)
    assert _disagreement(guideline, evaluator, facts) is None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients())
def test_engine_and_evaluator_agree_on_any_valid_patient(facts: dict[str, Any]) -> None:
    """Any valid patient, unknowns anywhere: engine and evaluator agree."""
    guideline, evaluator = _loaded(())
    assert _disagreement(guideline, evaluator, facts) is None


def test_a_disagreement_is_caught() -> None:
    """The oracle can fail: an evaluator with one threshold moved disagrees with the engine
    on a patient at that threshold."""
    guideline, _ = _loaded(())
    shifted = load(RULESETS, {"high_risk_age_years": 30})
    wrong = Evaluator(shifted)
    facts = {"age_years": 32, "lineage": "B", "ph_status": "negative",
             "wbc_at_diagnosis_10e9_per_l": 10, "phase": "diagnosis"}
    found = _disagreement(guideline, wrong, facts)
    assert found is not None
    assert "risk.age_35_or_older" in found

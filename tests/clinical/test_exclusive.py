"""No assessment holds two items of one declared exclusive set (policy 5, docs/clinical-policy.md).

The sets are declared in rulesets/ruleset.yaml `exclusive`. Two searches, over more than
100,000 generated patients in all:

- a fast sweep: 50,000 synthetic cohort rows (all_rules.cohort.synth, plausible patients) and
  50,000 patients drawn field by field over the whole model, with every parameter threshold
  and its neighbours among the numbers, so rare combinations (an unfit 80-year-old without a
  TKI, a CNS3 infant, a relapse in consolidation) are reached;
- a hypothesis search (tests/support/strategies.py) that shrinks a collision to a small example.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from all_rules import Guideline
from all_rules.cohort import synth
from all_rules.exceptions import InvalidFactsError
from all_rules.facts import PatientFacts, Plan
from all_rules.ruleset._factspec import FACTS

from ..conftest import RULESETS
from ..support.strategies import patients

SWEEP = 50_000


def exclusive_sets(manifest: Mapping[str, Any] | None = None) -> list[frozenset[str]]:
    data = manifest or yaml.safe_load((RULESETS / "ruleset.yaml").read_text(encoding="utf-8"))
    return [frozenset(entry["ids"]) for entry in data.get("exclusive", [])]


def collisions(ids: Iterable[str], sets: list[frozenset[str]]) -> list[tuple[str, ...]]:
    """The declared sets of which ``ids`` holds two or more, as sorted tuples."""
    present = set(ids)
    return [tuple(sorted(present & s)) for s in sets if len(present & s) > 1]


def _ids(guideline: Guideline, facts: Mapping[str, Any]) -> set[str]:
    selection = guideline.assess_ids(facts)
    return {rule.spec.id for rule, _ in selection.items} | set(selection.features)


def _bounds(info: Any) -> tuple[float, float]:
    low, high = 0.0, 100.0
    for meta in info.metadata:  # pydantic's Ge/Gt/Le/Lt constraints
        for attr in ("ge", "gt"):
            if getattr(meta, attr, None) is not None:
                low = float(getattr(meta, attr))
        for attr in ("le", "lt"):
            if getattr(meta, attr, None) is not None:
                high = float(getattr(meta, attr))
    return low, high


def _field_values(model: type[Any], thresholds: list[float]) -> dict[str, list[Any]]:
    """Each field of ``model`` → candidate values: every enum value / both booleans / the
    thresholds (and neighbours) within range plus a spread of other numbers; None (unknown)."""
    out: dict[str, list[Any]] = {}
    for name, info in model.model_fields.items():
        prefix = "plan." if model is Plan else ""
        spec = FACTS.get(prefix + name)
        if spec is None or spec.derived:
            continue
        if spec.type == "enum":
            values: list[Any] = list(spec.values)
        elif spec.type == "bool":
            values = [True, False]
        else:
            low, high = _bounds(info)
            numbers = [t for t in thresholds if low <= t <= high]
            numbers += [low + (high - low) * k / 8 for k in range(9)]
            if spec.type == "integer":
                values = list(range(int(low), min(int(high), 6) + 1))
            else:
                values = sorted(set(numbers))
        out[name] = [*values, None]
    return out


def domain_patients(count: int, seed: int, guideline: Guideline) -> Iterator[dict[str, Any]]:
    """Patients drawn field by field over the whole model; about a quarter of each field
    but the current age unknown (the phase and the relapse count included); a plan on every
    other patient."""
    rnd = random.Random(seed)
    thresholds = sorted({v + d for v in guideline.ruleset.values.values()
                         for d in (-0.01, 0.0, 0.01) if v + d >= 0})
    fields = _field_values(PatientFacts, thresholds)
    plan_fields = _field_values(Plan, thresholds)
    for index in range(count):
        facts: dict[str, Any] = {"patient_id": f"d{index}"}
        for name, values in fields.items():
            if name == "age_years":
                facts[name] = rnd.choice([v for v in values if v is not None])
            elif rnd.random() < 0.75:
                facts[name] = rnd.choice(values)
        if rnd.random() < 0.5:
            facts["plan"] = {name: rnd.choice(values) for name, values in plan_fields.items()}
        yield facts


def _sweep(guideline: Guideline, rows: Iterable[Mapping[str, Any]],
           sets: list[frozenset[str]], limit: int | None = None,
           ) -> tuple[int, int, Counter[tuple[str, ...]],
                      dict[tuple[str, ...], Mapping[str, Any]]]:
    """Assess ``rows`` (until ``limit`` were assessed); count refusals and collisions."""
    assessed = refused = 0
    found: Counter[tuple[str, ...]] = Counter()
    example: dict[tuple[str, ...], Mapping[str, Any]] = {}
    for facts in rows:
        if assessed == limit:
            break
        try:
            ids = _ids(guideline, facts)
        except InvalidFactsError:
            refused += 1
            continue
        assessed += 1
        for pair in collisions(ids, sets):
            found[pair] += 1
            example.setdefault(pair, facts)
    return assessed, refused, found, example


def _report(found: Counter[tuple[str, ...]],
            example: dict[tuple[str, ...], Mapping[str, Any]]) -> str:
    lines = [f"{n:>7} × {' + '.join(pair)}; e.g. {dict(example[pair])}"
             for pair, n in found.most_common()]
    return "exclusive items emitted together:\n" + "\n".join(lines)


_SETS = exclusive_sets()


def test_exclusive_sets_are_declared() -> None:
    """The property below is not vacuous: the contradictory pairs named in the content review
    are declared."""
    sets = exclusive_sets()
    assert len(sets) >= 8
    for pair in ({"population.adult_regimens", "population.reduced_intensity"},
                 {"ph.tki_unavailable", "population.reduced_intensity"},
                 {"cns.high_dose_methotrexate", "consolidation.high_dose_methotrexate"},
                 {"cns.no_routine_cranial_irradiation", "cns.cranial_irradiation_reserved"},
                 {"transplant.high_risk_adult", "consolidation.mrd_standard"}):
        assert any(pair <= s for s in sets), pair


def test_the_sweep_finds_a_collision_when_there_is_one(guideline: Guideline) -> None:
    """The detector works: two items that do fire together for every patient in induction,
    declared exclusive, are found."""
    rows = [{"age_years": 8.0, "phase": "induction", "relapse_count": 0}]
    sets = [frozenset({"induction.four_drug_backbone", "cns.intrathecal_from_induction"})]
    _, _, found, _ = _sweep(guideline, rows, sets)
    assert found == Counter({("cns.intrathecal_from_induction",
                              "induction.four_drug_backbone"): 1})


@pytest.mark.parametrize("source", ["synth", "domain"])
def test_no_generated_patient_gets_an_excluded_pair(guideline: Guideline, source: str) -> None:
    """2 × 50,000 assessed patients: no assessment holds two ids of one declared exclusive
    set. Domain draws the model refuses (contradictory relapse facts) are replaced."""
    sets = exclusive_sets()
    rows = (synth.patients(SWEEP, seed=7) if source == "synth"
            else domain_patients(SWEEP * 2, seed=11, guideline=guideline))
    assessed, refused, found, example = _sweep(guideline, rows, sets, limit=SWEEP)
    assert assessed == SWEEP
    assert refused <= SWEEP // 5, f"{refused} generated patients refused"
    assert not found, _report(found, example)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts=patients())
def test_no_excluded_pair_hypothesis(facts: dict[str, Any]) -> None:
    """The shrinking search: any collision is reduced to a minimal patient."""
    guideline = Guideline.default()
    try:
        ids = _ids(guideline, facts)
    except InvalidFactsError:
        return
    assert collisions(ids, _SETS) == []


def test_domain_sweep_draws_every_input_fact() -> None:
    """A fact added to the model is drawn by the domain sweep, not silently left out."""
    drawn = set(_field_values(PatientFacts, [])) | {
        "plan." + name for name in _field_values(Plan, [])}
    inputs = {name for name, spec in FACTS.items() if not spec.derived}
    assert inputs <= drawn, sorted(inputs - drawn)


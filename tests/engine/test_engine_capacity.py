"""Durable's fixed traversal stack (64 alpha nodes, error 303) has room to spare.

Durable walks its alpha network depth-first on a fixed stack; every matched child of a node,
and every "not exists" child of an absent fact, waits on it. A patient with many facts
matched or absent overflowed it once the ruleset reached about 125 rules with the tests in
the order they are written (``_compile.fact_order`` now orders them). These tests fail if the
ordering is lost or the ruleset grows past what the order absorbs: patients drawn over the
whole model, with every fact present, with most absent, are assessed under the shipped
guideline and under a copy with every rule but the group rules doubled.
"""

from __future__ import annotations

import copy
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from all_rules import Guideline
from all_rules.engine._compile import compile_ruleset, fact_order
from all_rules.exceptions import InvalidFactsError
from all_rules.facts import PatientFacts, Plan

from ..clinical.test_exclusive import _field_values
from ..conftest import RULESETS

PATIENTS = 2_000


def _patients(guideline: Guideline, keep: float, seed: int) -> Iterator[dict[str, Any]]:
    thresholds = sorted({v + d for v in guideline.ruleset.values.values()
                         for d in (-0.01, 0.0, 0.01) if v + d >= 0})
    fields, plan = _field_values(PatientFacts, thresholds), _field_values(Plan, thresholds)
    rnd = random.Random(seed)
    while True:
        facts = {name: rnd.choice([v for v in values if v is not None])
                 for name, values in fields.items()
                 if name == "age_years" or rnd.random() < keep}
        if rnd.random() < 0.5:
            facts["plan"] = {name: rnd.choice([v for v in values if v is not None])
                             for name, values in plan.items() if rnd.random() < keep}
        yield facts


def _assess_all(guideline: Guideline, keep: float, seed: int) -> int:
    """Assess PATIENTS valid patients; the engine must not fail on any (it raises)."""
    assessed = 0
    for facts in _patients(guideline, keep, seed):
        try:
            guideline.assess_ids(facts)
        except InvalidFactsError:
            continue
        assessed += 1
        if assessed == PATIENTS:
            return assessed
    raise AssertionError("unreachable")


def _doubled(tmp_path: Path) -> Path:
    """The shipped guideline with a copy (id + ``_x``) of every rule but the group rules."""
    target = tmp_path / "doubled"
    shutil.copytree(RULESETS, target, ignore=shutil.ignore_patterns("releases", "*_test.yaml"))
    manifest = yaml.safe_load((target / "ruleset.yaml").read_text(encoding="utf-8"))
    for name in manifest["files"]:
        path = target / name
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        copies = []
        for rule in data["rules"]:
            if rule.get("concludes") != "risk_group":
                twin = copy.deepcopy(rule)
                twin["id"] = rule["id"] + "_x"
                copies.append(twin)
        data["rules"] += copies
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
                        encoding="utf-8")
    return target


@pytest.mark.parametrize("keep", [1.0, 0.5, 0.1])
def test_shipped_guideline_never_overflows(guideline: Guideline, keep: float) -> None:
    assert _assess_all(guideline, keep, seed=1) == PATIENTS


@pytest.mark.parametrize("keep", [1.0, 0.3])
def test_twice_the_rules_still_fit(tmp_path: Path, keep: float) -> None:
    doubled = Guideline.load(_doubled(tmp_path))
    try:
        assert len(doubled.ruleset.rules) > 1.8 * len(Guideline.default().ruleset.rules)
        assert _assess_all(doubled, keep, seed=2) == PATIENTS
    finally:
        doubled.close()


def test_conjunctions_follow_one_fact_order(guideline: Guideline) -> None:
    """Every compiled pattern tests its facts in the one global order (narrowest first)."""
    order = fact_order(guideline.ruleset)
    compiled = compile_ruleset(guideline.ruleset, "s")
    keys = {spec_key: name for name, spec_key in compiled.tested}
    for definition in compiled.definition.values():
        for pattern in definition["all"]:
            tests = next(iter(pattern.values()))
            if not isinstance(tests, dict) or "$and" not in tests:
                continue
            places = [order[keys[_key(test)]] for test in tests["$and"][1:]
                      if _key(test) in keys]
            assert places == sorted(places), definition


def _key(test: dict[str, Any]) -> str:
    """The engine key a compiled test reads."""
    (op, body), = test.items()
    if op in ("$or", "$and"):
        return _key(body[0])
    if isinstance(body, dict):
        (key, _), = body.items()
        return str(key)
    return str(op)

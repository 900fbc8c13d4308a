"""No silence at a decision point (policy 7, docs/clinical-policy.md).

The decision points of ALL care are declared in rulesets/ruleset.yaml `decision_points`: who
reaches each (`reached_when`, a condition of the rule language) and the rules whose items
answer it. Over more than 100,000 generated patients (50,000 synthetic cohort rows and
50,000 drawn field by field, as in tests/clinical/test_exclusive.py), every patient who reaches
a point gets at least one item among its `answered_by` (a risk-group rule answers through the
group it concludes). `reached_when` is decided by the engine's differential oracle, the
plain-Python evaluator of all_rules/engine/_evaluator.py, not by a second reading of the
conditions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import pytest

from all_rules import Guideline
from all_rules.cohort import synth
from all_rules.engine._evaluator import Evaluator, Tracer
from all_rules.exceptions import InvalidFactsError
from all_rules.ruleset._conditions import FactTest
from all_rules.ruleset._model import DecisionPoint
from all_rules.ruleset._schema import DecisionPointSpec

from .test_exclusive import domain_patients

SWEEP = 50_000


def answered(guideline: Guideline, facts: Mapping[str, Any]) -> tuple[Any, set[str]]:
    """The patient's prepared values and the ids that answer for them: every item's rule
    id, the risk features and missing facts, and the risk-group rule that concluded."""
    prepared, selection = guideline._evaluate(facts)
    ids = {rule.spec.id for rule, _ in selection.items}
    ids |= set(selection.features) | {f"group.{selection.group}"}
    return prepared.values, ids


def silences(guideline: Guideline, evaluator: Evaluator, rows: Iterable[Mapping[str, Any]],
             points: tuple[DecisionPoint, ...], limit: int,
             ) -> tuple[int, Counter[str], dict[str, Mapping[str, Any]]]:
    """Assess ``rows`` (until ``limit`` were assessed); count, per decision point, the
    patients who reach it and get none of its items, with a first example."""
    assessed = 0
    found: Counter[str] = Counter()
    example: dict[str, Mapping[str, Any]] = {}
    for facts in rows:
        if assessed == limit:
            break
        try:
            values, ids = answered(guideline, facts)
        except InvalidFactsError:
            continue
        assessed += 1
        tracer = Tracer(evaluator, values)
        for point in points:
            if point.condition is not None and \
                    tracer.condition(point.condition).outcome != "held":
                continue
            if ids.isdisjoint(point.spec.answered_by):
                found[point.spec.id] += 1
                example.setdefault(point.spec.id, {**facts, "_ids": sorted(ids)})
    return assessed, found, example


def _report(found: Counter[str], example: dict[str, Mapping[str, Any]]) -> str:
    return "silent at a decision point:\n" + "\n".join(
        f"{n:>7} × {point}; e.g. {dict(example[point])}" for point, n in found.most_common())


def test_every_care_decision_is_declared(guideline: Guideline) -> None:
    """The property below is not vacuous: the decisions of ALL care are declared, each
    answered by at least one rule, and each reached by some patient below."""
    ids = {p.spec.id for p in guideline.ruleset.decision_points}
    assert ids >= {"risk_group", "induction_backbone", "cns_directed_therapy",
                   "consolidation_intensity", "hsct", "relapse_therapy", "tki_ph",
                   "maintenance"}
    assert all(p.spec.answered_by for p in guideline.ruleset.decision_points)


def test_a_point_no_rule_answers_is_caught(guideline: Guideline) -> None:
    """The detector works: a hand-made point that every induction patient reaches and no
    rule they get answers (maintenance.regimen) is reported, with an example."""
    spec = DecisionPointSpec(id="made_up", title="Made up", why="a test",
                             reached_when={"phase": "induction"},
                             answered_by=["maintenance.regimen"])
    point = DecisionPoint(spec, FactTest("phase", "eq", "induction", ()))
    rows = [{"age_years": 8.0, "phase": "induction", "relapse_count": 0},
            {"age_years": 8.0, "phase": "maintenance", "relapse_count": 0}]
    assessed, found, example = silences(guideline, Evaluator(guideline.ruleset), rows,
                                        (point,), 2)
    assert assessed == 2
    assert found == Counter({"made_up": 1})
    assert example["made_up"]["phase"] == "induction"
    answered_point = attrs.evolve(point, spec=spec.model_copy(
        update={"answered_by": ["induction.four_drug_backbone"]}))
    assert not silences(guideline, Evaluator(guideline.ruleset), rows, (answered_point,),
                        2)[1]


@pytest.mark.parametrize("source", ["synth", "domain"])
def test_nobody_who_reaches_a_decision_point_is_left_without_an_item(
        guideline: Guideline, source: str) -> None:
    """2 × 50,000 assessed patients: everyone who reaches a declared decision point gets
    at least one of its items. Domain draws the model refuses are replaced."""
    rows = (synth.patients(SWEEP, seed=17, missing_rate=0.25) if source == "synth"
            else domain_patients(SWEEP * 2, seed=23, guideline=guideline))
    points = guideline.ruleset.decision_points
    assessed, found, example = silences(guideline, Evaluator(guideline.ruleset), rows,
                                        points, SWEEP)
    assert assessed == SWEEP
    assert not found, _report(found, example)


def _with_points(tmp_path: Any, points: list[dict[str, Any]]) -> Any:
    """A copy of the shipped ruleset whose decision points are ``points``."""
    import shutil

    import yaml

    from ..conftest import RULESETS

    target = tmp_path / "rulesets"
    shutil.copytree(RULESETS, target, ignore=shutil.ignore_patterns("releases"))
    manifest = yaml.safe_load((target / "ruleset.yaml").read_text(encoding="utf-8"))
    manifest["decision_points"] = points
    (target / "ruleset.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False),
                                         encoding="utf-8")
    return target


def test_rules_check_validates_the_decision_points(tmp_path: Any) -> None:
    """`rules check` (and loading) refuses a decision point naming an unknown rule, an
    unknown fact or a derived fact no rule concludes, and one answered by no rule."""
    from all_rules.ruleset._loader import check

    bad = [{"id": "hsct", "title": "HSCT", "why": "test",
            "reached_when": [{"transplant_eligable": True}],
            "answered_by": ["transplant.very_high_rsk"]},
           {"id": "vhr", "title": "VHR", "why": "test", "reached_when": {"derived": "group.hihg"},
            "answered_by": ["transplant.very_high_risk"]}]
    ruleset, issues = check(_with_points(tmp_path / "a", bad), policy=True)
    assert ruleset is None
    messages = "\n".join(str(issue) for issue in issues)
    assert "unknown fact `transplant_eligable`" in messages
    assert "no rule derives `group.hihg`" in messages
    assert "unknown rule `transplant.very_high_rsk`; did you mean " \
           "`transplant.very_high_risk`?" in messages
    empty = [{"id": "empty", "title": "Empty", "why": "test", "answered_by": []}]
    ruleset, issues = check(_with_points(tmp_path / "b", empty), policy=True)
    assert ruleset is None
    assert "decision_points[0].answered_by: List should have at least 1 item" in str(issues[0])


def test_scope_items_are_shown_as_scope(guideline: Guideline) -> None:
    """A scope item keeps its own kind in JSON (both renderings), says so in the text output
    and the HTML report, and is an `info` card worded as not decided by this guideline."""
    import json

    from all_rules.cds._answer import cards
    from all_rules.report._describe import assessment_text
    from all_rules.report._patient import patient_page

    facts = {"age_years": 14.0, "age_at_diagnosis_years": 8.0, "lineage": "B",
             "phase": "relapsed", "relapse_count": 1, "relapse_site": "marrow",
             "months_from_diagnosis_to_relapse": 48.0, "transplant_eligible": True}
    assessment = guideline.assess(facts)
    item = assessment.get("transplant.scope_child_late_b_relapse")
    assert item is not None
    assert item.kind.value == "scope"
    data = json.loads(guideline.assess_json(facts))
    assert data == assessment.to_dict()
    assert {"id": "transplant.scope_child_late_b_relapse", "kind": "scope"}.items() <= next(
        i for i in data["recommendations"] if i["id"] == item.id).items()
    assert "transplant.scope_child_late_b_relapse (scope: not decided by this guideline)" in \
        assessment_text(assessment)
    page = patient_page(assessment, [], [])
    assert "Not decided here" in page
    assert "does not decide allogeneic HSCT" in page
    card = next(c for c in cards(assessment, "h", "https://x", False)
                if c["source"]["topic"]["code"] == item.id)
    assert card["indicator"] == "info"
    assert card["summary"].startswith("Not decided by this guideline: This guideline does "
                                      "not decide")

"""Overrides are bounded and visible: every parameter has a safe range; a value outside it is
refused unless stated as an unsafe override with a reason; every assessment lists its local
parameter values (docs/ruleset-format.md, "Parameters and institution overlays")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from all_rules import (
    Guideline,
    InvalidParameterError,
    ParameterOverride,
    RulesetValidationError,
)
from all_rules.cli import main
from all_rules.ruleset._loader import check, load

from ..conftest import RULESETS

DOSES_PATIENT = {"age_years": 12, "height_cm": 190, "weight_kg": 95, "lineage": "B",
                 "ph_status": "negative", "phase": "induction", "relapse_count": 0}
"""A BSA above 2 m²: 1.4 mg/m² of vincristine reaches the cap."""


def _vincristine(guideline: Guideline) -> Any:
    item = guideline.assess(DOSES_PATIENT).get("induction.four_drug_backbone")
    assert item is not None
    assert item.doses
    return next(d for d in item.doses if d.drug == "vincristine")


# --- the shipped ranges ----------------------------------------------------------------------

def test_every_shipped_parameter_has_a_safe_range_holding_its_value() -> None:
    """Each parameter of the shipped guideline declares a safe range with why, inside its
    hard limits, and its shipped value lies in it."""
    ruleset = load(RULESETS)
    for name, param in ruleset.parameters.items():
        assert param.safe_min is not None, name
        assert param.safe_max is not None, name
        assert param.safe_range_why, name
        assert len(param.safe_range_why) > 40, name
        assert param.safe_min <= param.value <= param.safe_max, name
        assert param.min is None or param.min <= param.safe_min, name
        assert param.max is None or param.safe_max <= param.max, name


def test_the_issue_examples_are_outside_the_safe_ranges() -> None:
    """The two overrides the issue names (a 2.5 mg vincristine cap, a 1 % MRD threshold)
    lie outside the safe ranges: a cap never above the label's 2 mg, MRD positivity no
    less sensitive than the source's 0.01 %."""
    params = load(RULESETS).parameters
    assert params["vincristine_cap_mg"].safe_max == 2
    assert not params["vincristine_cap_mg"].is_safe(2.5)
    assert params["mrd_threshold_percent"].safe_max == 0.01
    assert not params["mrd_threshold_percent"].is_safe(1)
    assert params["mrd_threshold_percent"].is_safe(0.001)


# --- rules check ------------------------------------------------------------------------------

def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULESETS, target, ignore=shutil.ignore_patterns("releases"))
    return target


def _edit(directory: Path, old: str, new: str) -> None:
    manifest = directory / "ruleset.yaml"
    text = manifest.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    manifest.write_text(text.replace(old, new), encoding="utf-8")


def test_rules_check_fails_on_a_parameter_without_a_safe_range(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`rules check` names a parameter that declares no safe range (exit 1); loading the
    ruleset still works (the safe range is an authoring check)."""
    directory = _copy(tmp_path)
    _edit(directory, "    max: 2.5\n    safe_min: 1\n    safe_max: 2\n", "    max: 2.5\n")
    assert main(["rules", "check", str(directory)]) == 1
    out = capsys.readouterr().out
    assert "at parameters.vincristine_cap_mg: parameter `vincristine_cap_mg` has no safe " \
           "range: give `safe_min`, `safe_max` and `safe_range_why`" in out
    assert check(directory)[1] == []


def test_rules_check_fails_on_a_shipped_value_outside_its_safe_range(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A shipped value outside its own safe range and a safe range past the hard limits are
    each reported with file and line."""
    directory = _copy(tmp_path)
    _edit(directory, "    value: 0.01\n", "    value: 0.05\n")
    _edit(directory, "    safe_min: 0.6\n    safe_max: 1\n",
          "    safe_min: 0.6\n    safe_max: 1.5\n")
    ruleset, issues = check(directory, policy=True)
    assert ruleset is None
    messages = [str(i) for i in issues]
    assert any("at parameters.mrd_threshold_percent.value: parameter "
               "`mrd_threshold_percent`: the shipped value 0.05 is outside its safe range "
               "0.001–0.01 %" in m for m in messages), messages
    assert any("parameter `weight_based_bsa_m2`: the safe range 0.6–1.5 m² reaches past "
               "the hard limits 0.3–1" in m for m in messages), messages
    assert all(m.startswith("ruleset.yaml:") for m in messages if "parameter" in m)


def test_rules_check_wants_the_why_of_a_safe_range(tmp_path: Path) -> None:
    """A safe range without `safe_range_why` (or with a blank one) is reported."""
    directory = _copy(tmp_path)
    _edit(directory, "    max: 2.5\n    safe_min: 1\n    safe_max: 2\n    safe_range_why: >-\n",
          "    max: 2.5\n    safe_min: 1\n    safe_max: 2\n    safe_range_why: ' '\n"
          "    source_note: >-\n")
    text = (directory / "ruleset.yaml").read_text(encoding="utf-8")
    start = text.index("    source_note: >-\n")
    end = text.index("  daunorubicin_min_mg_per_m2:")
    (directory / "ruleset.yaml").write_text(text[:start] + text[end:], encoding="utf-8")
    ruleset, issues = check(directory, policy=True)
    assert ruleset is None
    assert [i.message for i in issues] == [
        "parameter `vincristine_cap_mg` has no `safe_range_why`: say why the safe range is "
        "where it is"]


def test_the_shipped_guideline_passes_rules_check(capsys: pytest.CaptureFixture[str]) -> None:
    """`all-rules rules check` on the shipped guideline passes the safe-range checks."""
    assert main(["rules", "check", str(RULESETS)]) == 0


# --- refusals: API and overlay ----------------------------------------------------------------

def test_api_refuses_a_value_outside_the_safe_range_naming_parameter_value_and_range() -> None:
    """Guideline.load(parameters=…) with a 2.5 mg vincristine cap raises InvalidParameterError
    (a RulesetValidationError and a ValueError, so old except clauses still catch it) whose
    message names the parameter, the value and the range."""
    with pytest.raises(InvalidParameterError) as caught:
        Guideline.load(parameters={"vincristine_cap_mg": 2.5})
    error = caught.value
    assert isinstance(error, RulesetValidationError)
    assert isinstance(error, ValueError)
    assert "`vincristine_cap_mg` = 2.5 mg is outside its safe range 1–2 mg" in str(error)
    assert "unsafe override with a reason" in str(error)
    with pytest.raises(InvalidParameterError, match=r"`mrd_threshold_percent` = 1 % is "
                                                    r"outside its safe range 0\.001–0\.01 %"):
        Guideline.load(parameters={"mrd_threshold_percent": 1})
    with pytest.raises(InvalidParameterError, match="did you mean `vincristine_cap_mg`"):
        Guideline.load(parameters={"vincristine_cap": 2})


def test_a_broken_ruleset_is_not_an_invalid_parameter(tmp_path: Path) -> None:
    """Only an override's own fault is an InvalidParameterError; a ruleset with issues of its
    own stays a plain RulesetValidationError even when an override is at fault too."""
    directory = _copy(tmp_path)
    _edit(directory, "name: all-guideline\n", "name: All Guideline\n")
    with pytest.raises(RulesetValidationError) as caught:
        Guideline.load(directory, parameters={"vincristine_cap_mg": 2.5})
    assert not isinstance(caught.value, InvalidParameterError)


def test_an_unsafe_override_needs_a_reason_and_stays_within_the_hard_limits() -> None:
    """unsafe_overrides= accepts a value outside the safe range only with a non-empty
    reason, and never past the parameter's hard limits."""
    for bad in ({"value": 2.5}, {"value": 2.5, "reason": "  "}, {"value": 2.5, "reason": ""}):
        with pytest.raises(InvalidParameterError, match="unsafe_overrides"):
            Guideline.load(unsafe_overrides={"vincristine_cap_mg": bad})
    with pytest.raises(InvalidParameterError, match=r"`vincristine_cap_mg` = 3 is outside "
                                                    r"the allowed range 1–2\.5 mg \(a hard"):
        Guideline.load(unsafe_overrides={"vincristine_cap_mg": {"value": 3, "reason": "x"}})
    with pytest.raises(InvalidParameterError, match="given both"):
        Guideline.load(parameters={"vincristine_cap_mg": 1.5},
                       unsafe_overrides={"vincristine_cap_mg": {"value": 2.5, "reason": "x"}})


def test_an_unsafe_override_with_a_reason_is_used_and_reported() -> None:
    """With a reason, a 2.5 mg cap is used (the dose is computed with it) and the
    assessment says so: shipped and local value, the safe range, unsafe, the reason."""
    shipped = _vincristine(Guideline.default())
    assert (shipped.cap, shipped.dose) == (2, 2)
    local = Guideline.load(unsafe_overrides={
        "vincristine_cap_mg": {"value": 2.5, "reason": "  protocol XY, committee 2026-01 "}})
    try:
        dose = _vincristine(local)
        assert (dose.cap, dose.dose, dose.capped) == (2.5, 2.5, True)
        assessment = local.assess(DOSES_PATIENT)
        assert assessment.parameter_overrides == (ParameterOverride(
            name="vincristine_cap_mg", shipped=2, local=2.5, unit="mg", safe_min=1,
            safe_max=2, unsafe=True, reason="protocol XY, committee 2026-01"),)
        assert assessment.parameter_overrides[0].text() == (
            "vincristine_cap_mg = 2.5 mg (shipped 2 mg; OUTSIDE its safe range 1–2 mg; "
            "reason given: protocol XY, committee 2026-01)")
    finally:
        local.close()


def _overlay(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "overlay.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_overlay_outside_the_safe_range_is_refused_with_file_and_line(
        tmp_path: Path) -> None:
    """An overlay's `parameters` value outside the safe range is refused, naming the overlay
    file and line, the parameter, the value and the range."""
    overlay = _overlay(tmp_path, "description: ours\nparameters:\n"
                                 "  mrd_threshold_percent: 0.1\n")
    with pytest.raises(InvalidParameterError) as caught:
        Guideline.load(overlay=overlay)
    assert [str(i) for i in caught.value.issues] == [
        f"{overlay}:3: at parameters.mrd_threshold_percent: `mrd_threshold_percent` = 0.1 % "
        "is outside its safe range 0.001–0.01 % (" + load(RULESETS).parameters[
            "mrd_threshold_percent"].safe_range_why.rstrip(".")  # type: ignore[union-attr]
        + "); to use it anyway, state it as an unsafe override with a reason (overlay "
        "`unsafe_overrides`, `--unsafe-param` with `--unsafe-reason`, or "
        "`unsafe_overrides=` in Python: docs/ruleset-format.md)"]


def test_an_overlay_states_unsafe_overrides_with_a_reason(tmp_path: Path) -> None:
    """An overlay's `unsafe_overrides: {NAME: {value, reason}}` is accepted; without a
    reason, or with an empty one, the overlay is refused."""
    overlay = _overlay(tmp_path, "parameters:\n  vincristine_cap_mg: 1.5\nunsafe_overrides:\n"
                                 "  mrd_threshold_percent:\n    value: 0.1\n"
                                 "    reason: our protocol's day-15 cut-off\n")
    local = Guideline.load(overlay=overlay)
    try:
        overrides = {o.name: o for o in local.assess({"age_years": 5}).parameter_overrides}
        assert overrides["mrd_threshold_percent"].unsafe
        assert overrides["mrd_threshold_percent"].reason == "our protocol's day-15 cut-off"
        assert not overrides["vincristine_cap_mg"].unsafe
        assert overrides["vincristine_cap_mg"].reason is None
    finally:
        local.close()
    for body in ("{value: 0.1}", "{value: 0.1, reason: ''}"):
        bad = _overlay(tmp_path, f"unsafe_overrides:\n  mrd_threshold_percent: {body}\n")
        with pytest.raises(InvalidParameterError, match="unsafe_overrides"):
            Guideline.load(overlay=bad)


# --- the output carries the overrides ----------------------------------------------------------

def test_no_override_no_field_and_any_override_is_listed() -> None:
    """The shipped guideline's JSON has no `parameter_overrides`; a guideline with a local
    value inside the safe range lists it (unsafe false), in both JSON paths identically."""
    patient = {"patient_id": "p", "age_years": 12, "lineage": "B", "phase": "diagnosis",
               "wbc_at_diagnosis_10e9_per_l": 80}
    shipped = Guideline.default().assess(patient)
    assert shipped.parameter_overrides == ()
    assert "parameter_overrides" not in shipped.to_dict()
    assert Guideline.default().assess_json(patient) == shipped.to_json(indent=None)
    local = Guideline.load(parameters={"mrd_threshold_percent": 0.005,
                                       "adult_b_wbc_10e9_per_l": 25})
    try:
        assessment = local.assess(patient)
        data = assessment.to_dict()
        assert list(data) == ["patient_id", "ruleset", "parameter_overrides", "risk",
                              "recommendations"]
        assert data["parameter_overrides"] == [
            {"name": "adult_b_wbc_10e9_per_l", "shipped": 30.0, "local": 25.0,
             "unit": "×10⁹/L", "safe_min": 20.0, "safe_max": 30.0, "unsafe": False,
             "reason": None},
            {"name": "mrd_threshold_percent", "shipped": 0.01, "local": 0.005, "unit": "%",
             "safe_min": 0.001, "safe_max": 0.01, "unsafe": False, "reason": None}]
        assert local.assess_json(patient) == assessment.to_json(indent=None)
        assert json.loads(assessment.to_json()) == data
    finally:
        local.close()


def test_both_json_paths_agree_on_unsafe_overrides_with_any_reason_text() -> None:
    """The hand-written JSON (cohorts) equals the models' JSON for unsafe overrides whose
    reasons hold quotes, backslashes, control characters and non-ASCII text."""
    reason = 'a "quoted" \\ reason\nwith\ttabs, ünïcode ✓ and \x1b escapes'
    local = Guideline.load(unsafe_overrides={
        "vincristine_cap_mg": {"value": 2.5, "reason": reason},
        "blinatumomab_min_age_years": {"value": 0.05, "reason": "one"}})
    try:
        for facts in (DOSES_PATIENT, {"age_years": 0.5}, {"patient_id": "x\u2028y",
                                                          "age_years": 70}):
            assert local.assess_json(facts) == local.assess(facts).to_json(indent=None)
        assert local.assess(DOSES_PATIENT).parameter_overrides[1].reason == reason
    finally:
        local.close()

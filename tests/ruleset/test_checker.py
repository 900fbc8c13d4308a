"""The ruleset checker: invalid-file fixtures pin the exact messages, with file and line."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from all_rules import Guideline, RulesetValidationError
from all_rules.ruleset._loader import check

from ..conftest import FIXTURES, RULESETS

MINIMAL = FIXTURES / "minimal"
INVALID = yaml.safe_load((FIXTURES / "invalid_rulesets.yaml").read_text(encoding="utf-8"))


def _build(tmp_path: Path, fixture: dict[str, Any]) -> Path:
    target = tmp_path / "ruleset"
    shutil.copytree(MINIMAL, target)
    if "append" in fixture:
        rules = target / "rules.yaml"
        indented = "".join(f"  {line}\n" for line in fixture["append"].splitlines())
        rules.write_text(rules.read_text(encoding="utf-8") + indented, encoding="utf-8")
    for name, content in fixture.get("files", {}).items():
        (target / name).write_text(content, encoding="utf-8")
    return target


def test_minimal_fixture_is_valid() -> None:
    """The base of every fixture passes, so each fixture's issues are its own defect's."""
    ruleset, issues = check(MINIMAL)
    assert issues == []
    assert ruleset is not None


@pytest.mark.parametrize("fixture", INVALID, ids=[f["name"] for f in INVALID])
def test_invalid_ruleset_messages(tmp_path: Path, fixture: dict[str, Any]) -> None:
    """Each defect is reported exactly as pinned: file, line, rule id, path, message."""
    ruleset, issues = check(_build(tmp_path, fixture))
    assert ruleset is None
    assert [str(issue) for issue in issues] == fixture["expect"]


def test_shipped_ruleset_is_valid() -> None:
    """The guideline shipped in rulesets/ passes the checker."""
    ruleset, issues = check(RULESETS)
    assert issues == []
    assert ruleset is not None
    assert len(ruleset.rules) > 60


def test_loading_an_invalid_ruleset_raises_with_every_issue(tmp_path: Path) -> None:
    """Guideline.load refuses an invalid ruleset and lists all issues, not the first."""
    fixture = next(f for f in INVALID if f["name"].startswith("value that does not fit"))
    with pytest.raises(RulesetValidationError) as caught:
        Guideline.load(_build(tmp_path, fixture))
    assert len(caught.value.issues) == 3


def test_overlay_changes_a_threshold_and_the_digest(tmp_path: Path) -> None:
    """An institution overlay moves a threshold without editing the rulesets."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("parameters:\n  adult_b_wbc_10e9_per_l: 25\n", encoding="utf-8")
    patient = {"age_years": 30, "lineage": "B", "ph_status": "negative",
               "wbc_at_diagnosis_10e9_per_l": 28, "phase": "diagnosis"}
    default = Guideline.default()
    local = Guideline.load(overlay=overlay)
    try:
        assert "risk.wbc_b_over_30" not in default.assess(patient).ids()
        assert "risk.wbc_b_over_30" in local.assess(patient).ids()
        assert local.info.digest != default.info.digest
    finally:
        local.close()


def test_overlay_errors_name_the_parameter(tmp_path: Path) -> None:
    """Unknown names get a did-you-mean; values outside the allowed range are refused."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("parameters:\n  adult_b_wbc: 50\n  mrd_threshold_percent: 5\n",
                       encoding="utf-8")
    _, issues = check(RULESETS, overlay=overlay)
    assert [str(i) for i in issues] == [
        f"{overlay}:2: at parameters.adult_b_wbc: unknown parameter `adult_b_wbc`; "
        "did you mean `adult_b_wbc_10e9_per_l`?",
        f"{overlay}:3: at parameters.mrd_threshold_percent: `mrd_threshold_percent` = 5 is "
        "outside the allowed range 0.0001–1 % (a hard limit: refused even as an unsafe "
        "override)",
    ]


def test_direct_parameter_override(tmp_path: Path) -> None:
    """Parameters can also be overridden in code, and are checked the same way."""
    local = Guideline.load(parameters={"high_risk_age_years": 30})
    try:
        facts = {"age_years": 32, "phase": "diagnosis"}
        assert "risk.age_35_or_older" in local.assess(facts).ids()
        assert "risk.age_35_or_older" not in Guideline.default().assess(facts).ids()
    finally:
        local.close()
    with pytest.raises(RulesetValidationError, match="high_risk_age"):
        Guideline.load(parameters={"high_risk_age": 40})


# --- Content policy (`all-rules rules check`; docs/clinical-policy.md) ----------------------

POLICY = yaml.safe_load((FIXTURES / "policy_rulesets.yaml").read_text(encoding="utf-8"))
_STATEMENTS = """statements:
  - id: S1
    section: Test
    text: The statement the minimal rules encode.
    needs_rule: true
  - id: S2
    section: Test
    text: An outcome figure.
    needs_rule: false
    why_no_rule: outcome figure
"""


def _indent(text: str, by: str) -> str:
    return "".join(f"{by}{line}\n" for line in text.splitlines())


def _build_traced(tmp_path: Path, fixture: dict[str, Any]) -> Path:
    """tests/fixtures/minimal made traceable, plus the fixture's one defect."""
    from all_rules.ruleset._factspec import FACTS

    target = _build(tmp_path, {"append": fixture.get("append", "")} if "append" in fixture
                    else {})
    for rules in (target / "rules.yaml", target / "groups.yaml"):
        rules.write_text(rules.read_text(encoding="utf-8").replace(
            "  - id: group.", "  - sources: [S1]\n    id: group.").replace(
            "  - id: risk.old\n", "  - id: risk.old\n    sources: [S1]\n"), encoding="utf-8")
    (target / "statements.yaml").write_text(
        _STATEMENTS + _indent(fixture.get("statements", ""), "  "), encoding="utf-8")
    manifest = target / "ruleset.yaml"
    text = manifest.read_text(encoding="utf-8").replace(
        "parameters:\n", "  - id: Example label 2024\n    title: An example drug label, 2024\n"
        + _indent(fixture.get("citations", ""), "  ") + "parameters:\n", 1)
    text += fixture.get("manifest", "")
    unread = [name for name, spec in FACTS.items() if not spec.derived
              and name != "age_years" and name not in fixture.get("read", [])]
    text += "informational_facts:\n" + _indent(fixture.get("informational", ""), "  ")
    text += "".join(f"  {name}: not read by the fixture\n" for name in unread)
    manifest.write_text(text, encoding="utf-8")
    return target


def test_traced_minimal_fixture_passes_the_policy(tmp_path: Path) -> None:
    """The base of the policy fixtures is clean, so each fixture's issues are its own."""
    ruleset, issues = check(_build_traced(tmp_path, {}), policy=True)
    assert issues == []
    assert ruleset is not None


@pytest.mark.parametrize("fixture", POLICY, ids=[f["name"] for f in POLICY])
def test_policy_messages(tmp_path: Path, fixture: dict[str, Any]) -> None:
    """Each policy defect is reported as pinned, with file, line and rule id; the ruleset
    still loads without `policy` (the policy is an authoring check, not a load check)."""
    directory = _build_traced(tmp_path, fixture)
    ruleset, issues = check(directory, policy=True)
    assert ruleset is None
    assert [str(issue) for issue in issues] == fixture["expect"]
    if "statements" not in fixture or "why_no_rule" in fixture["statements"]:
        assert check(directory)[1] == []


def test_extension_with_a_named_dated_source_needs_no_statement(tmp_path: Path) -> None:
    """An extension may have no `sources` when it says why and cites a named, dated source."""
    directory = _build_traced(tmp_path, {"append": (
        "- id: risk.extended\n  basis: extension\n"
        "  interpretation: Not in the source; the example label gives it.\n"
        "  title: Extended\n  kind: info\n  severity: info\n  phase: any\n"
        "  when:\n    - age_years: {gte: 99}\n  text: x\n  reason: y\n"
        "  citations: [1, Example label 2024]\n")})
    ruleset, issues = check(directory, policy=True)
    assert issues == []
    assert ruleset is not None


def test_a_ruleset_without_statements_is_not_traced(tmp_path: Path) -> None:
    """Without statements.yaml, rules need no `sources`; the other policy checks still run."""
    _, issues = check(MINIMAL, policy=True)
    assert issues
    assert all("informational_facts" in issue.path for issue in issues)


def test_shipped_ruleset_passes_the_content_policy() -> None:
    """`all-rules rules check` on the shipped guideline: every rule traced to the source or
    a named external source, every statement that needs a rule has one, every fact read or
    informational, every exclusive set well formed."""
    ruleset, issues = check(RULESETS, policy=True)
    assert [str(issue) for issue in issues] == []
    assert ruleset is not None


def test_rules_check_command_runs_the_policy(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`all-rules rules check DIR` reports policy issues and exits 1; the fixture's base
    passes."""
    from all_rules.cli import main

    assert main(["rules", "check", str(_build_traced(tmp_path / "ok", {}))]) == 0
    bad = _build_traced(tmp_path / "bad", {"read": ["sex"]})
    assert main(["rules", "check", str(bad)]) == 1
    assert "fact `sex` is accepted and read by no rule" in capsys.readouterr().out


def test_facts_are_read_through_the_quantities_derived_from_them() -> None:
    """Policy 6 counts a fact as read when a rule reads a quantity computed from it (the BSA
    from height and weight, the age at diagnosis), and only then."""
    from all_rules.ruleset._policy import facts_read

    ruleset, _ = check(RULESETS)
    assert ruleset is not None
    read = facts_read(ruleset)
    assert "induction.four_drug_backbone" in read["height_cm"]
    assert "risk.age_35_or_older" in read["age_at_diagnosis_years"]
    assert "risk.age_35_or_older" not in read["height_cm"]


def test_rules_show_and_the_catalogue_give_basis_and_statements() -> None:
    """A reviewer sees, for each rule, its basis and the statements it encodes."""
    from all_rules.report._describe import catalogue_markdown, describe_rule

    ruleset, _ = check(RULESETS)
    assert ruleset is not None
    rule = next(r for r in ruleset.rules if r.key == "risk.age_35_or_older")
    assert "  basis: source; source statements: S24 (docs/traceability.md)" in describe_rule(
        rule, ruleset)
    assert "Basis: *extension*; source statements: none" in catalogue_markdown(ruleset)

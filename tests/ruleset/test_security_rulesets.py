"""Rulesets and overlays are bounded and confined: no YAML aliases (billion laughs, cycles),
limited nesting and size, rule files inside the ruleset directory, finite parameters only
(docs/security.md)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from all_rules.cli import main
from all_rules.ruleset._loader import check
from all_rules.ruleset._safe_yaml import MAX_DEPTH, MAX_FILE_BYTES

from ..conftest import FIXTURES

MINIMAL = FIXTURES / "minimal"


@pytest.fixture
def ruleset(tmp_path: Path) -> Path:
    target = tmp_path / "ruleset"
    shutil.copytree(MINIMAL, target)
    return target


def _messages(directory: Path, overlay: Path | None = None) -> list[str]:
    result, issues = check(directory, overlay=overlay)
    assert result is None
    return [str(issue) for issue in issues]


BILLION_LAUGHS = "".join(
    [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]\n" if n else "l0: &l0 [lol]\n"
     for n in range(10)])


def test_billion_laughs_is_refused_at_once(ruleset: Path) -> None:
    """A few lines of nested aliases expand to 9⁹ nodes: refused at the first anchor,
    promptly (well under a second), with file and line."""
    rules = ruleset / "rules.yaml"
    rules.write_text(BILLION_LAUGHS + rules.read_text(encoding="utf-8"), encoding="utf-8")
    start = time.monotonic()
    messages = _messages(ruleset)
    assert time.monotonic() - start < 5
    assert messages == ["rules.yaml:1: invalid YAML: anchors and aliases (&name, *name, <<) "
                        "are not allowed in rulesets; write the value out"]


def test_a_recursive_alias_is_refused(tmp_path: Path, ruleset: Path) -> None:
    """A self-referencing alias (a cycle) in an overlay is refused, not followed."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("parameters: &p\n  wbc_limit: 40\n  again: *p\n", encoding="utf-8")
    assert _messages(ruleset, overlay) == [
        f"{overlay}:1: invalid YAML: anchors and aliases (&name, *name, <<) are not allowed "
        "in rulesets; write the value out"]


def test_deep_nesting_is_refused(ruleset: Path) -> None:
    """Nesting beyond 50 levels (the shipped files need 13) is refused with its line;
    100,000 levels neither overflow the stack nor take long."""
    assert MAX_DEPTH == 50
    rules = ruleset / "rules.yaml"
    for depth in (MAX_DEPTH + 1, 100_000):
        rules.write_text("rules: " + "[" * depth + "]" * depth + "\n", encoding="utf-8")
        assert _messages(ruleset) == [f"rules.yaml:1: invalid YAML: nested deeper than "
                                      f"{MAX_DEPTH} levels"]


def test_an_oversized_file_is_refused_unread(ruleset: Path) -> None:
    """A rule file over 4 MiB is refused before it is parsed."""
    assert MAX_FILE_BYTES == 4 * 2**20
    rules = ruleset / "rules.yaml"
    rules.write_text(rules.read_text(encoding="utf-8") + "#" * MAX_FILE_BYTES,
                     encoding="utf-8")
    assert _messages(ruleset) == ["rules.yaml: larger than 4,194,304 bytes"]


@pytest.mark.parametrize("name", ["../outside.yaml", "/ABS", "link.yaml"])
def test_rule_files_must_be_inside_the_ruleset_directory(ruleset: Path, name: str) -> None:
    """`files:` naming a path outside the directory — `..`, absolute, or a symbolic link
    that leads out — is refused; the file is never read."""
    outside = ruleset.parent / "outside.yaml"
    outside.write_text((ruleset / "rules.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    if name == "/ABS":
        name = str(outside)
    if name == "link.yaml":
        (ruleset / "link.yaml").symlink_to(outside)
    manifest = ruleset / "ruleset.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace(
        "  - rules.yaml", f"  - {name}"), encoding="utf-8")
    messages = _messages(ruleset)
    assert any(f"`{name}` is outside the ruleset directory" in m for m in messages), messages


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_parameters_are_refused(tmp_path: Path, ruleset: Path,
                                           value: str) -> None:
    """NaN makes every comparison false and ±inf every one true or false: a parameter's
    value in the manifest, or an overlay's override, must be finite."""
    manifest = ruleset / "ruleset.yaml"
    original = manifest.read_text(encoding="utf-8")
    manifest.write_text(original.replace("    value: 18\n", f"    value: {value}\n"),
                        encoding="utf-8")
    messages = _messages(ruleset)
    assert any("`adult_age_years` value must be a finite number" in m for m in messages)
    manifest.write_text(original, encoding="utf-8")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"parameters:\n  wbc_limit: {value}\n", encoding="utf-8")
    assert any("`wbc_limit` takes a finite number" in m
               for m in _messages(ruleset, overlay))


def test_rules_check_exits_1_on_a_non_finite_overlay(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, ruleset: Path) -> None:
    """`all-rules rules check --overlay` names the non-finite parameter and fails."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("parameters:\n  wbc_limit: .nan\n", encoding="utf-8")
    code = main(["rules", "check", str(ruleset), "--overlay", str(overlay)])
    out = capsys.readouterr().out
    assert code == 1
    assert "`wbc_limit` takes a finite number" in out


def test_a_non_finite_overlay_given_to_assess_exits_2(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An overlay passed to `assess` is input to the command: NaN in it exits 2 naming the
    parameter (a broken ruleset directory still exits 1)."""
    patient = tmp_path / "patient.json"
    patient.write_text('{"age_years": 40}', encoding="utf-8")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("parameters:\n  adult_b_wbc_10e9_per_l: .nan\n", encoding="utf-8")
    with pytest.raises(SystemExit) as caught:
        main(["assess", str(patient), "--overlay", str(overlay)])
    assert caught.value.code == 2
    assert "`adult_b_wbc_10e9_per_l` takes a finite number" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(SystemExit) as caught:
        main(["assess", str(patient), "--rules", str(broken), "--overlay", str(overlay)])
    assert caught.value.code == 1

"""diff: what changes between two guidelines, patient by patient; shipped versions."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from all_rules import Guideline
from all_rules.cli import main
from all_rules.cohort import RowError, synth
from all_rules.cohort._compare import run_diff
from all_rules.cohort._io import GuidelineSpec
from all_rules.cohort._read import CohortInputError
from all_rules.cohort.diff import DiffSummary, PatientChange, compare
from all_rules.report._change_text import summary_markdown
from all_rules.ruleset._loader import check
from all_rules.ruleset._versions import UnknownVersionError, shipped_versions, version_directory

from ..conftest import FIXTURES, RULESETS

DIFF = FIXTURES / "diff"
RELEASE = "2026.1.0"
RELEASE_DIGEST = "sha256:b16e5e4be1ea0edccd12330c050dab800186b9c9fda5a8b4698b43024db58640"
"""The digest of release 2026.1.0 as shipped: any edit of its files changes it."""


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _patients(path: Path) -> list[dict[str, Any]]:
    return _jsonl(path)


@pytest.fixture(scope="module")
def fixture_pair() -> tuple[Guideline, Guideline]:
    return Guideline.load(DIFF / "old"), Guideline.load(DIFF / "new")


# --- the hand-checked fixture pair ---------------------------------------------------------


def test_fixture_pair_gives_the_hand_checked_changes(
        fixture_pair: tuple[Guideline, Guideline]) -> None:
    """old → new: wbc_limit 30 → 50, rec.reword consider → recommend and reworded, rec.gone
    replaced by rec.new, vincristine 1.4 → 1.5 mg/m². Checked by hand, patient by patient."""
    old, new = fixture_pair
    records = list(compare(old, new, _patients(DIFF / "patients.jsonl")))
    by_id = {r.patient_id: r for r in records}
    # P1 (nothing concerned) and P8 (not in induction, WBC unknown) do not appear.
    assert list(by_id) == ["P2-group", "P3-reworded", "P4-added-removed", "P5-evidence",
                           "P6-bad", "P7-dose"]

    group = by_id["P2-group"]  # WBC 40: above 30, not above 50
    assert isinstance(group, PatientChange)
    assert group.row == 2
    assert group.risk_group == ("high", "standard")
    assert group.features == ((), ("risk.wbc",))
    assert [i["id"] for i in group.removed] == ["risk.wbc"]
    assert group.removed[0]["evidence"] == [
        {"fact": "wbc_at_diagnosis_10e9_per_l", "value": 40.0, "test": "> 30"}]
    assert (group.added, group.changed) == ((), ())
    assert group.changes == ("risk_group", "features", "removed")

    reworded = by_id["P3-reworded"]
    assert isinstance(reworded, PatientChange)
    assert reworded.changes == ("changed",)
    assert reworded.risk_group == ("high", "high")
    (item,) = reworded.changed
    assert (item.id, item.fields) == ("rec.reword", ("kind", "text"))
    assert item.before == {"kind": "consider", "text": "Old wording."}
    assert item.after == {"kind": "recommend", "text": "New wording."}

    swapped = by_id["P4-added-removed"]
    assert isinstance(swapped, PatientChange)
    assert swapped.changes == ("added", "removed", "changed")
    assert [i["id"] for i in swapped.added] == ["rec.new"]
    assert [i["id"] for i in swapped.removed] == ["rec.gone"]
    assert swapped.added[0]["text"] == "New in this version."
    assert [c.id for c in swapped.changed] == ["rec.reword"]

    evidence = by_id["P5-evidence"]  # WBC 60: a feature under both, the threshold quoted
    assert isinstance(evidence, PatientChange)
    (item,) = evidence.changed
    assert (item.id, item.fields) == ("risk.wbc", ("reason", "evidence"))
    assert item.before["reason"] == "WBC at diagnosis 60 ×10⁹/L, above 30 ×10⁹/L."
    assert item.after["reason"] == "WBC at diagnosis 60 ×10⁹/L, above 50 ×10⁹/L."

    bad = by_id["P6-bad"]
    assert isinstance(bad, RowError)
    assert (bad.row, bad.kind) == (6, "invalid")
    assert [e.field for e in bad.errors] == ["age_years", "wbc_at_diagnosis_10e9_per_l"]

    dose = by_id["P7-dose"]  # BSA √(140 × 35 / 3600) = 1.167 m²
    assert isinstance(dose, PatientChange)
    (item,) = dose.changed
    assert (item.id, item.fields) == ("rec.dose", ("doses",))
    assert [(d["per_m2"], d["dose"]) for d in item.before["doses"]] == [(1.4, 1.63)]
    assert [(d["per_m2"], d["dose"]) for d in item.after["doses"]] == [(1.5, 1.75)]


def test_fixture_pair_summary_and_record_json(fixture_pair: tuple[Guideline, Guideline],
                                              tmp_path: Path) -> None:
    out, summary_path = tmp_path / "changes.jsonl", tmp_path / "summary.json"
    code = main(["diff", str(DIFF / "patients.jsonl"), "--from", str(DIFF / "old"),
                 "--to", str(DIFF / "new"), "--out", str(out), "--summary", str(summary_path),
                 "--workers", "1", "--quiet"])
    assert code == 0
    lines = _jsonl(out)
    old, new = fixture_pair
    assert lines == [r.to_dict() if isinstance(r, PatientChange) else json.loads(r.to_json())
                     for r in compare(old, new, _patients(DIFF / "patients.jsonl"))]
    assert lines[0]["risk_group"] == {"before": "high", "after": "standard"}
    assert lines[0]["kind"] == "changed"
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert (summary["patients"], summary["assessed"], summary["invalid_rows"],
            summary["changed"]["patients"], summary["unchanged"]) == (8, 7, 1, 5, 2)
    assert summary["from"]["version"] == "1.0.0"
    assert summary["to"]["version"] == "2.0.0"
    assert {k: v["patients"] for k, v in summary["changes"].items()} == {
        "risk_group": 1, "features": 1, "missing": 0, "added": 1, "removed": 2, "changed": 4}
    assert summary["changes"]["changed"]["examples"] == ["P3-reworded", "P4-added-removed",
                                                         "P5-evidence", "P7-dose"]
    assert summary["risk_groups"] == [{"before": "high", "after": "standard", "patients": 1,
                                       "examples": ["P2-group"]}]
    assert summary["rules"]["rec.reword"] == {
        "patients": 2, "added": 0, "removed": 0, "changed": 2, "fields": {"kind": 2, "text": 2},
        "examples": ["P3-reworded", "P4-added-removed"]}
    assert summary["rules"]["risk.wbc"]["removed"] == 1
    assert summary["rules"]["risk.wbc"]["fields"] == {"reason": 1, "evidence": 1}
    assert set(summary["rules"]) == {"rec.reword", "rec.gone", "rec.new", "risk.wbc",
                                     "rec.dose"}
    markdown = summary_markdown(summary)
    assert "| high → standard | 1 | `P2-group` |" in markdown
    assert "| `rec.reword` | 2 | 0 | 0 | 2 (kind 2, text 2) |" in markdown


def test_examples_are_capped_and_taken_in_input_order(
        fixture_pair: tuple[Guideline, Guideline]) -> None:
    old, new = fixture_pair
    rows = [{"patient_id": f"R{i}", "age_years": 30} for i in range(8)]
    summary = DiffSummary()
    for record in compare(old, new, rows):
        summary.add(record)
    assert summary.to_dict()["changes"]["changed"] == {
        "patients": 8, "examples": ["R0", "R1", "R2", "R3", "R4"]}


def test_compare_counts_every_row_into_a_summary_given(
        fixture_pair: tuple[Guideline, Guideline]) -> None:
    old, new = fixture_pair
    summary = DiffSummary.for_guidelines(old, new)
    records = list(compare(old, new, _patients(DIFF / "patients.jsonl"), summary=summary))
    data = summary.to_dict()
    assert len(records) == 6
    assert (data["patients"], data["assessed"], data["unchanged"], data["invalid_rows"]) == (
        8, 7, 2, 1)
    assert data["from"]["digest"] == old.info.digest


def test_an_engine_failure_under_one_guideline_is_an_error_record_naming_the_side(
        fixture_pair: tuple[Guideline, Guideline], monkeypatch: pytest.MonkeyPatch) -> None:
    from all_rules.exceptions import EvaluationError

    old, new = Guideline.load(DIFF / "old"), Guideline.load(DIFF / "new")

    def broken(values: Any) -> Any:
        raise EvaluationError("rule engine failed: test")

    monkeypatch.setattr(new.engine, "evaluate", broken)
    (record,) = compare(old, new, [{"patient_id": "X", "age_years": 10}])
    assert isinstance(record, RowError)
    assert (record.kind, record.patient_id) == ("engine", "X")
    assert record.errors[0].field == "(engine: to)"


# --- self-diffs, overlays, workers ---------------------------------------------------------


@pytest.mark.slow
def test_the_shipped_guideline_against_itself_is_empty_over_100000_patients(
        tmp_path: Path) -> None:
    """Two separately compiled copies of one guideline, alternating in each process."""
    source, out = tmp_path / "cohort.jsonl", tmp_path / "changes.jsonl"
    synth.write(source, 100_000, 1, "jsonl")
    here = str(RULESETS)
    run = run_diff(source, out, GuidelineSpec(), GuidelineSpec(rules=here), workers=2)
    data = run.summary.to_dict()
    assert (data["patients"], data["assessed"], data["changed"]["patients"]) == (
        100_000, 100_000, 0)
    assert out.read_bytes() == b""


def test_the_fixture_rulesets_against_themselves_are_empty(
        fixture_pair: tuple[Guideline, Guideline]) -> None:
    old, new = fixture_pair
    rows = [r for r in _patients(DIFF / "patients.jsonl") if r["patient_id"] != "P6-bad"]
    assert list(compare(old, Guideline.load(DIFF / "old"), rows)) == []
    assert list(compare(new, Guideline.load(DIFF / "new"), rows)) == []


def _diagnosis_age(p: dict[str, Any]) -> float | None:
    """The age the NCI criteria read: the age at diagnosis, else the current age during
    diagnosis and induction only (docs/concepts.md)."""
    if p.get("age_at_diagnosis_years") is not None:
        return float(p["age_at_diagnosis_years"])
    if p.get("phase", "diagnosis") in ("diagnosis", "induction"):
        return float(p["age_years"])
    return None


def _child_b(p: dict[str, Any]) -> bool:
    age = _diagnosis_age(p)
    return age is not None and 1 <= age < 18 and p.get("lineage") == "B"


def _wbc(p: dict[str, Any]) -> float:
    value = p.get("wbc_at_diagnosis_10e9_per_l")
    return -1.0 if value is None else float(value)


@pytest.fixture(scope="module")
def overlay_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]],
                                                                     Path]:
    folder = tmp_path_factory.mktemp("overlay")
    overlay = folder / "ours.yaml"
    overlay.write_text("unsafe_overrides:\n  nci_wbc_10e9_per_l: {value: 60, reason: a "
                       "test of an unsafe override}\n", encoding="utf-8")
    source = folder / "cohort.jsonl"
    synth.write(source, 12_000, 3, "jsonl")
    patients = _jsonl(source)
    with source.open("a", encoding="utf-8") as handle:  # bad rows among the good ones
        handle.write('{"patient_id": "BAD1", "age_years": -1}\nnot json\n')
    return source, patients, overlay


def test_an_overlay_moving_one_threshold_changes_exactly_the_patients_between(
        overlay_run: tuple[Path, list[dict[str, Any]], Path], tmp_path: Path) -> None:
    """nci_wbc 50 → 60 (children with B-ALL, NCI high risk by WBC): exactly the children
    under the NCI age at diagnosis with WBC in [50, 60) change group, feature or a missing
    fact. The others that change at all only see the threshold in the evidence:
    quoted as 60 (WBC >= 60), or no longer quoted (in [50, 60), high risk by age)."""
    source, patients, overlay = overlay_run
    out = tmp_path / "changes.jsonl"
    code = main(["diff", str(source), "--to-overlay", str(overlay), "--out", str(out),
                 "--workers", "2", "--quiet"])
    assert code == 0
    records = _jsonl(out)
    errors = [r for r in records if r["kind"] != "changed"]
    assert [(e["row"], e["kind"]) for e in errors] == [(12_001, "invalid"), (12_002, "invalid")]
    changes = [r for r in records if r["kind"] == "changed"]
    between = {p["patient_id"] for p in patients if _child_b(p) and 50 <= _wbc(p) < 60}
    young = {p["patient_id"] for p in patients
             if p["patient_id"] in between and (_diagnosis_age(p) or 0) < 10}
    assert len(young) > 50
    moved = {r["patient_id"] for r in changes if r["changes"] != ["changed"]}
    assert moved == young
    by_id = {p["patient_id"]: p for p in patients}
    for record in changes:
        patient = by_id[record["patient_id"]]
        assert _child_b(patient)
        assert _wbc(patient) >= 50
        if record["patient_id"] in young:
            continue
        assert record["changes"] == ["changed"]
        for item in record["changed"]:
            if _wbc(patient) >= 60:  # the same items, the new threshold quoted
                before, after = json.dumps(item["before"]), json.dumps(item["after"])
                assert after.replace(">= 60", ">= 50").replace(
                    "at least 60 ", "at least 50 ") == before
            else:  # high risk by age alone now: the WBC test drops out of the evidence
                assert item["after"]["evidence"] == [
                    e for e in item["before"]["evidence"]
                    if e["fact"] != "wbc_at_diagnosis_10e9_per_l"]


def test_workers_give_byte_identical_output(
        overlay_run: tuple[Path, list[dict[str, Any]], Path], tmp_path: Path) -> None:
    source, _, overlay = overlay_run
    outputs = []
    for workers in (1, 2):
        out, summary = tmp_path / f"w{workers}.jsonl", tmp_path / f"w{workers}.json"
        assert main(["diff", str(source), "--to-overlay", str(overlay), "--out", str(out),
                     "--summary", str(summary), "--workers", str(workers), "--quiet"]) == 0
        outputs.append((out.read_bytes(), summary.read_bytes()))
    assert outputs[0] == outputs[1]
    assert outputs[0][0].count(b"\n") > 100


def test_two_guidelines_evaluated_alternately_give_their_own_results(
        fixture_pair: tuple[Guideline, Guideline]) -> None:
    """Two compiled rulesets in one process, interleaved patient by patient, give exactly
    what each gives alone (each has its own engine state)."""
    patients = list(synth.patients(400, seed=5))
    shipped = Guideline.load()
    shifted = Guideline.load(unsafe_overrides={
        "nci_wbc_10e9_per_l": {"value": 60, "reason": "test"},
        "adult_age_years": {"value": 16, "reason": "test"}})
    alone_a = [shipped.assess_json(p) for p in patients]
    alone_b = [shifted.assess_json(p) for p in patients]
    old, _ = fixture_pair
    interleaved_a, interleaved_b = [], []
    for patient in patients:
        interleaved_a.append(shipped.assess_json(patient))
        old.assess_json({"age_years": 30})  # a third ruleset in between
        interleaved_b.append(shifted.assess_json(patient))
    assert interleaved_a == alone_a
    assert interleaved_b == alone_b
    assert alone_a != alone_b


def test_compare_takes_data_frames_like_assess_frame() -> None:
    pd = pytest.importorskip("pandas")
    patients = list(synth.patients(300, seed=7))
    frame = pd.DataFrame([synth.flatten(p) for p in patients])
    old, new = Guideline.default(), Guideline.load(
        unsafe_overrides={"nci_wbc_10e9_per_l": {"value": 60, "reason": "test"}})
    from_frame = [r.to_json() for r in compare(old, new, frame)]
    from_dicts = [r.to_json() for r in compare(old, new, patients)]
    assert from_frame == from_dicts
    assert from_frame
    with pytest.raises(ValueError, match="wbc"):
        list(compare(old, new, pd.DataFrame([{"wbc": 3}])))


# --- CLI: inputs, outputs ------------------------------------------------------------------


def test_cli_refuses_an_output_named_as_another_format(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["diff", str(DIFF / "patients.jsonl"), "--out", str(tmp_path / "c.csv")])
    assert exit_info.value.code == 2
    assert "JSON Lines" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_unknown_version_exits_2_naming_the_shipped_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["diff", str(DIFF / "patients.jsonl"), "--from", "1999.1.0",
              "--out", str(tmp_path / "c.jsonl")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "1999.1.0" in err
    assert RELEASE in err
    assert list(tmp_path.iterdir()) == []


def test_cli_unreadable_input_writes_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(CohortInputError):
        run_diff(empty, tmp_path / "c.jsonl", GuidelineSpec(), GuidelineSpec())
    assert [p.name for p in tmp_path.iterdir()] == ["empty.jsonl"]


def test_cli_markdown_summary_for_a_changelog(tmp_path: Path) -> None:
    out, summary = tmp_path / "c.jsonl", tmp_path / "summary.md"
    assert main(["diff", str(DIFF / "patients.jsonl"), "--from", str(DIFF / "old"),
                 "--to", str(DIFF / "new"), "--out", str(out), "--summary", str(summary),
                 "--summary-format", "markdown", "--quiet", "--workers", "1"]) == 0
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("Compared 8 patients: from diff-fixture 1.0.0")
    assert "- changed: 5 of 7 assessed (71.4 %)" in text
    assert "| items removed | 2 | `P2-group`, `P4-added-removed` |" in text


# --- shipped versions ----------------------------------------------------------------------


def test_the_previous_release_ships_frozen_and_loads_by_version() -> None:
    directory = RULESETS / "releases" / RELEASE
    ruleset, issues = check(directory)
    assert issues == []
    assert ruleset is not None
    assert (ruleset.version, ruleset.digest) == (RELEASE, RELEASE_DIGEST)
    assert sorted(p.name for p in directory.iterdir()) == sorted(["ruleset.yaml",
                                                                  *ruleset.files])
    loaded = Guideline.load(version=RELEASE)
    assert (loaded.info.version, loaded.info.digest) == (RELEASE, RELEASE_DIGEST)
    assert loaded.assess({"age_years": 40, "lineage": "B"}).risk.group.value == "high"


def test_the_current_ruleset_ignores_the_releases_folder(tmp_path: Path) -> None:
    copy = tmp_path / "rulesets"
    shutil.copytree(RULESETS, copy, ignore=shutil.ignore_patterns("releases"))
    before, _ = check(copy)
    broken = copy / "releases" / "9.9.9"
    broken.mkdir(parents=True)
    (broken / "ruleset.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    (copy / "releases" / "extra.yaml").write_text("rules: nonsense\n", encoding="utf-8")
    after, issues = check(copy)
    assert issues == []
    assert before is not None
    assert after is not None
    assert after.digest == before.digest


def test_versions_resolve_only_listed_names(tmp_path: Path) -> None:
    root = tmp_path / "rulesets"
    shutil.copytree(DIFF / "new", root)
    shutil.copytree(DIFF / "old", root / "releases" / "1.0.0")
    shutil.copytree(DIFF / "old", root / "releases" / "7.0.0")  # its manifest says 1.0.0
    assert [(v.version, v.current) for v in shipped_versions(root)] == [
        ("2.0.0", True), ("1.0.0", False)]
    assert version_directory("1.0.0", root) == root / "releases" / "1.0.0"
    assert version_directory("2.0.0", root) == root
    for name in ("7.0.0", "../releases/1.0.0", "", "releases"):
        with pytest.raises(UnknownVersionError, match=re.escape("shipped: 2.0.0, 1.0.0")):
            version_directory(name, root)
    with pytest.raises(ValueError, match="not both"):
        Guideline.load(DIFF / "old", version=RELEASE)


def test_cli_rules_versions_lists_each_version_with_its_digest(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "versions", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    current = check()[0]
    assert current is not None
    assert listed[0] == {"version": current.version, "digest": current.digest, "current": True}
    if current.version != RELEASE:
        assert {"version": RELEASE, "digest": RELEASE_DIGEST, "current": False} in listed
    assert main(["rules", "versions"]) == 0
    assert current.digest in capsys.readouterr().out

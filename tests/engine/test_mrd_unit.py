"""MRD's unit cannot be misread (issue 17, section 4): an input form that carries its unit,
and every MRD level a reader sees shown as a percent and as cells."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from all_rules import Guideline, InvalidFactsError, PatientFacts, assess, validate_facts
from all_rules.cds._answer import cards
from all_rules.cli import main
from all_rules.engine._format import cells_text, fact_phrase, mrd_text
from all_rules.facts import MrdQuantity, MrdUnit
from all_rules.report._describe import assessment_text, describe_rule

RULESETS = Path(__file__).resolve().parents[2] / "rulesets"
MRD_FIELDS = ("mrd_end_of_induction_percent", "mrd_consolidation_percent",
              "mrd_current_percent")

#: A standard-risk child in consolidation: the end-of-induction MRD decides between
#: consolidation.mrd_intensify and consolidation.mrd_standard.
CHILD = {"patient_id": "mrd-child", "age_years": 8, "age_at_diagnosis_years": 8,
         "lineage": "B", "ph_status": "negative", "wbc_at_diagnosis_10e9_per_l": 10,
         "cns_status": "CNS1", "kmt2a_rearranged": False, "phase": "consolidation",
         "complete_remission": True, "weeks_to_complete_remission": 3, "relapse_count": 0,
         "remission_number": 1}

#: A second remission with positive MRD and HSCT planned (docs/examples/cr2_mrd_positive).
CR2 = {"patient_id": "mrd-cr2", "age_years": 31, "age_at_diagnosis_years": 28, "bsa_m2": 1.85,
       "lineage": "B", "ph_status": "negative", "wbc_at_diagnosis_10e9_per_l": 12,
       "cns_status": "CNS1", "kmt2a_rearranged": False, "cd19_positive": True,
       "phase": "relapsed", "complete_remission": True, "weeks_to_complete_remission": 3,
       "mrd_end_of_induction_percent": 0.002, "relapse_count": 1, "relapse_site": "marrow",
       "remission_number": 2, "mrd_current_percent": {"value": 8e-4, "unit": "fraction"},
       "courses_since_remission": 0, "transplant_eligible": True, "prior_allogeneic_hsct": False,
       "plan": {"allogeneic_hsct": True, "mrd_monitoring": True, "systemic_therapy": True}}


def _mrd(value: Any) -> float | None:
    return validate_facts({"age_years": 8, "mrd_current_percent": value}).mrd_current_percent


def _refusal(value: Any, field: str = "mrd_current_percent") -> str:
    with pytest.raises(InvalidFactsError) as caught:
        validate_facts({"age_years": 8, field: value})
    errors = {e.field: e.message for e in caught.value.errors}
    assert set(errors) == {field}
    return errors[field]


# --- input ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "percent"), [
    (0.0003, 0.0003),                                   # a bare number stays a percent
    (0.01, 0.01),
    (0, 0.0),
    (100, 100.0),
    ({"value": 0.0003, "unit": "%"}, 0.0003),
    ({"value": 100, "unit": "%"}, 100.0),
    ({"value": 3e-4, "unit": "fraction"}, 0.03),        # the lab's 3×10⁻⁴
    ({"value": 1e-4, "unit": "fraction"}, 0.01),        # exactly the threshold
    ({"value": 0, "unit": "fraction"}, 0.0),
    ({"value": 1, "unit": "fraction"}, 100.0),
    ({"value": -4, "unit": "log10"}, 0.01),             # exactly the threshold
    ({"value": -3.5, "unit": "log10"}, 0.0316227766017),
    ({"value": 0, "unit": "log10"}, 100.0),
    ({"value": -10, "unit": "log10"}, 1e-8),
])
def test_each_unit_is_converted_to_percent(given: Any, percent: float) -> None:
    """The engine reads percent; the threshold edges (10⁻⁴ and log10 -4) are exactly 0.01."""
    assert _mrd(given) == percent


def test_every_mrd_field_accepts_the_quantity() -> None:
    facts = validate_facts({"age_years": 8, **{f: {"value": 2e-4, "unit": "fraction"}
                                               for f in MRD_FIELDS}})
    assert [getattr(facts, f) for f in MRD_FIELDS] == [0.02, 0.02, 0.02]


def test_the_quantity_from_python_and_from_json_text() -> None:
    assert PatientFacts(age_years=8, mrd_current_percent=MrdQuantity(
        value=-4, unit=MrdUnit.LOG10)).mrd_current_percent == 0.01  # type: ignore[arg-type]
    text = '{"age_years": 8, "mrd_current_percent": {"value": 5e-4, "unit": "fraction"}}'
    assert PatientFacts.model_validate_json(text).mrd_current_percent == 0.05
    # the facts echo in percent: a dumped patient validates to the same values
    facts = PatientFacts.model_validate_json(text)
    assert validate_facts(facts.model_dump()) == facts


@pytest.mark.parametrize(("given", "words"), [
    ({"value": 2, "unit": "fraction"},
     "MRD 2 with unit 'fraction' is outside 0 to 1 (a fraction of cells is at most 1)"),
    ({"value": -0.0001, "unit": "fraction"},
     "MRD -0.0001 with unit 'fraction' is outside 0 to 1 (a level is never below 0)"),
    ({"value": 101, "unit": "%"},
     "MRD 101 with unit '%' is outside 0 to 100 (above 100 % is more cells than there are)"),
    ({"value": 0.5, "unit": "log10"},
     "MRD 0.5 with unit 'log10' is outside -10 to 0 (log10 of a fraction of cells is at most "
     "0)"),
    ({"value": -11, "unit": "log10"},
     "MRD -11 with unit 'log10' is outside -10 to 0 (below -10 is taken for a typing error)"),
    ({"value": 1, "unit": "ppm"}, "MRD unit 'ppm' is not one of '%', 'fraction', 'log10'"),
    ({"value": 1, "unit": "Fraction"}, "MRD unit 'Fraction' is not one of"),
    ({"value": "0.01", "unit": "%"}, "MRD value '0.01' is not a number"),
    ({"value": True, "unit": "%"}, "MRD value True is not a number"),
    ({"value": 0.01}, "an MRD quantity has exactly `value` and `unit`, got {'value': 0.01}"),
    ({"value": 0.01, "unit": "%", "date": "x"}, "an MRD quantity has exactly `value` and"),
    ({"value": float("nan"), "unit": "%"},
     "MRD nan with unit '%' is outside 0 to 100 (not a number)"),
])
def test_refusals_name_the_field_the_value_and_the_unit(given: Any, words: str) -> None:
    assert words in _refusal(given)


def test_a_bare_number_out_of_range_is_still_refused() -> None:
    assert "less than or equal to 100" in _refusal(101, "mrd_end_of_induction_percent")
    assert "greater than or equal to 0" in _refusal(-1, "mrd_consolidation_percent")


def test_the_json_schema_documents_both_forms() -> None:
    schema = PatientFacts.model_json_schema()
    for name in MRD_FIELDS:
        field = schema["properties"][name]
        forms = field["anyOf"][0]["anyOf"]
        assert forms[0] == {"type": "number", "minimum": 0, "maximum": 100,
                            "description": "percent of cells"}
        assert forms[1]["properties"]["unit"] == {"enum": ["%", "fraction", "log10"]}
        assert forms[1]["required"] == ["value", "unit"]
        assert "fraction" in field["description"]
        assert "log10" in field["description"]
        assert not {"ge", "le"} & set(field["anyOf"][0])


def test_the_lab_fraction_given_with_its_unit_intensifies() -> None:
    """The hazard: a lab's 3×10⁻⁴ typed as a bare 0.0003 is 0.0003 % (below 0.01 %); given
    with its unit it is 0.03 % and intensification is advised. The bare reading is shown as
    0.0003 % (3 in 1,000,000 cells), so the misreading can be seen."""
    bare = assess({**CHILD, "mrd_end_of_induction_percent": 0.0003})
    unit = assess({**CHILD, "mrd_end_of_induction_percent": {"value": 3e-4,
                                                             "unit": "fraction"}})
    assert "consolidation.mrd_standard" in {i.id for i in bare.recommendations}
    standard = next(i for i in bare.recommendations if i.id == "consolidation.mrd_standard")
    assert "latest MRD 0.0003 % (3 in 1,000,000 cells)" in standard.reason
    ids = {i.id for i in unit.recommendations}
    assert {"consolidation.mrd_intensify", "risk.mrd_end_of_induction"} <= ids
    assert "consolidation.mrd_standard" not in ids


# --- display ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("percent", "shown"), [
    (0.0003, "0.0003 % (3 in 1,000,000 cells)"),
    (0.01, "0.01 % (1 in 10,000 cells)"),
    (0.05, "0.05 % (5 in 10,000 cells)"),
    (0.012, "0.012 % (12 in 100,000 cells)"),
    (0.00003, "0.00003 % (3 in 10,000,000 cells)"),   # never 3e-05
    (0.0316227766017, "0.0316228 % (316 in 1,000,000 cells)"),
    (5, "5 % (5 in 100 cells)"),
    (99.99, "99.99 % (9,999 in 10,000 cells)"),
    (100, "100 % (all cells)"),
    (0, "0 % (none detected)"),
])
def test_both_notations(percent: float, shown: str) -> None:
    assert mrd_text(percent) == shown


def test_cells_text_rounds_to_three_digits() -> None:
    assert cells_text(0.012345) == "123 in 1,000,000 cells"


def test_fact_phrases() -> None:
    assert fact_phrase("mrd_current_percent", 0.05) == "current MRD 0.05 % (5 in 10,000 cells)"
    assert fact_phrase("mrd_current_percent", None) == "current MRD unknown"
    assert fact_phrase("age_years", 3.0) == "age 3 years"


def test_reasons_texts_and_the_threshold_show_both_notations() -> None:
    assessment = assess(CR2)
    items = {i.id: i for i in assessment.recommendations}
    assert items["audit.hsct_with_positive_mrd"].reason == (
        "HSCT is planned with current MRD 0.08 % (8 in 10,000 cells), at or above 0.01 % "
        "(1 in 10,000 cells), and no further course given yet.")
    assert items["transplant.mrd_positive_second_remission"].reason.startswith(
        "Current remission 2 (second or later) with MRD 0.08 % (8 in 10,000 cells), at or "
        "above 0.01 % (1 in 10,000 cells), after 0 further course(s)")
    child = assess({**CHILD, "mrd_end_of_induction_percent": 0.05})
    intensify = next(i for i in child.recommendations if i.id == "consolidation.mrd_intensify")
    assert intensify.text == ("Intensify treatment; MRD at or above 0.01 % (1 in 10,000 "
                              "cells) calls for it.")
    assert "latest MRD 0.05 % (5 in 10,000 cells)" in intensify.reason
    risk = next(i for i in child.recommendations if i.id == "risk.mrd_end_of_induction")
    assert risk.reason == ("End-of-induction MRD 0.05 % (5 in 10,000 cells) is at or above "
                           "0.01 % (1 in 10,000 cells).")


def test_an_overridden_threshold_shows_both_notations() -> None:
    guideline = Guideline.load(parameters={"mrd_threshold_percent": 0.001})
    child = guideline.assess({**CHILD, "mrd_end_of_induction_percent": 0.005})
    intensify = next(i for i in child.recommendations if i.id == "consolidation.mrd_intensify")
    assert "0.001 % (1 in 100,000 cells)" in intensify.text


def test_json_evidence_stays_machine_readable() -> None:
    """Evidence values in JSON are numbers in percent, in both JSON renderings."""
    assessment = assess(CR2)
    data = json.loads(assessment.to_json())
    evidence = [e for item in data["recommendations"] for e in item["evidence"]
                if e["fact"] == "mrd_current_percent"]
    assert evidence
    assert all(e["value"] == 0.08 and e["test"] == ">= 0.01" for e in evidence)
    # the cohort writer fills MRD levels into memoized prose: same text, byte for byte
    guideline = Guideline.default()
    for value in (0.08, 0.0003, 0.05):
        facts = {**CR2, "mrd_current_percent": value}
        assert guideline.assess_json(facts) == guideline.assess(facts).to_json(indent=None)


def test_text_output_shows_both_notations() -> None:
    text = assessment_text(assess(CR2))
    assert ("Evidence: allogeneic HSCT planned; current MRD 0.08 % (8 in 10,000 cells), "
            "at least 0.01 % (1 in 10,000 cells)") in text
    assert "Why: HSCT is planned with current MRD 0.08 % (8 in 10,000 cells)" in text


def test_html_report_shows_both_notations(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cr2.json"
    path.write_text(json.dumps(CR2))
    assert main(["assess", str(path), "--format", "html", "--why-not",
                 "transplant.proceed_despite_mrd"]) == 0
    page = capsys.readouterr().out
    cells = re.findall(r"<td>([^<]*MRD[^<]*|[0-9.]+ %[^<]*)</td>", page)
    assert any("0.08 % (8 in 10,000 cells)" in cell for cell in cells)  # the evidence table
    assert "current MRD 0.08 % (8 in 10,000 cells), at or above 0.01 %" in page
    # the why-not tree: the patient's value in both notations
    assert "current MRD 0.08 % (8 in 10,000 cells) <code>mrd_current_percent</code>" in page
    assert not re.search(r"<td>0\.08</td>", page)


def test_cds_cards_show_both_notations() -> None:
    shown = cards(assess(CR2), "hook-1", "https://example.org/docs", only_alerts=False)
    details = "\n".join(card["detail"] for card in shown)
    assert ("- current MRD 0.08 % (8 in 10,000 cells), at least 0.01 % (1 in 10,000 cells)"
            in details)
    assert "current MRD 0.08 % (8 in 10,000 cells)" in details
    assert "= 0.08 (" not in details


def test_explanations_show_both_notations() -> None:
    explanation = Guideline.default().explain(CR2, "transplant.proceed_despite_mrd")
    text = explanation.text()
    assert ("[held] current MRD at least 0.01 % (1 in 10,000 cells) — current MRD 0.08 % "
            "(8 in 10,000 cells) (`mrd_current_percent`)") in text
    data = json.loads(explanation.to_json())
    found = json.dumps(data)
    assert ("current MRD at least 0.01 % (1 in 10,000 cells): held (current MRD 0.08 % "
            "(8 in 10,000 cells))") in found
    assert '"value": 0.08' in found                    # the value itself stays a number


def test_no_template_writes_a_unit_after_an_mrd_placeholder() -> None:
    """The placeholder renders value, unit and cells; a literal % after it would print
    "0.05 % (5 in 10,000 cells)%"."""
    for path in sorted(RULESETS.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\{\$?mrd_[a-z_]*percent\}\s*%", text), path.name


def test_rule_descriptions_show_the_threshold_in_both_notations() -> None:
    """`rules show` and the catalogue: the MRD threshold as percent and cells."""
    guideline = Guideline.default()
    lines = "\n".join(describe_rule(guideline.rule("consolidation.mrd_intensify")[0],
                                    guideline.ruleset))
    assert ("latest MRD (mrd_latest_percent) ≥ 0.01 % (1 in 10,000 cells) "
            "($mrd_threshold_percent)") in lines

"""Patient facts at the boundary: every class of bad input refused, every field named."""

from __future__ import annotations

import math
from typing import Any

import pytest

from all_rules import InvalidFactsError, PatientFacts, assess, validate_facts
from all_rules.engine._prepare import mosteller_bsa_m2, prepare


def _errors(facts: Any) -> dict[str, str]:
    with pytest.raises(InvalidFactsError) as caught:
        validate_facts(facts)
    return {error.field: error.message for error in caught.value.errors}


def test_wrong_types_are_refused_not_coerced() -> None:
    """"45" is not a number and 1 is not a boolean: no silent coercion."""
    errors = _errors({"age_years": "45", "complete_remission": 1, "relapse_count": 1.5,
                      "wbc_at_diagnosis_10e9_per_l": True})
    assert set(errors) == {"age_years", "complete_remission", "relapse_count",
                           "wbc_at_diagnosis_10e9_per_l"}
    assert errors["age_years"] == "Input should be a valid number (got '45')"


def test_unknown_enum_value_names_the_choices() -> None:
    """An unknown enum value is refused with the allowed values and the value given."""
    errors = _errors({"age_years": 30, "lineage": "X", "phase": "remission"})
    assert errors["lineage"] == "Input should be 'B', 'T' or 'unknown' (got 'X')"
    assert "diagnosis" in errors["phase"]


def test_unknown_field_suggests_the_nearest_name() -> None:
    """A misspelt or unit-less field is refused with a did-you-mean."""
    errors = _errors({"age_years": 30, "wbc": 45, "plan": {"tkis": True}})
    assert errors["wbc"] == "unknown field; did you mean `wbc_at_diagnosis_10e9_per_l`?"
    assert errors["plan.tkis"] == "unknown field; did you mean `tki`?"


def test_out_of_range_and_implausible_values() -> None:
    """WBC above 2,000 ×10⁹/L, MRD above 100 %, negative counts, age above 120."""
    errors = _errors({"age_years": 121, "wbc_at_diagnosis_10e9_per_l": 2500,
                      "mrd_end_of_induction_percent": 150, "relapse_count": -1,
                      "height_cm": 400, "remission_number": 0})
    assert set(errors) == {"age_years", "wbc_at_diagnosis_10e9_per_l",
                           "mrd_end_of_induction_percent", "relapse_count", "height_cm",
                           "remission_number"}
    assert errors["wbc_at_diagnosis_10e9_per_l"] == (
        "Input should be less than or equal to 2000 (got 2500)")


def test_age_is_required_and_everything_else_optional() -> None:
    """Only age_years is required; a missing age is named."""
    assert _errors({}) == {"age_years": "is required"}
    assert validate_facts({"age_years": 3}).lineage is None


def test_every_offending_field_is_named_at_once() -> None:
    """All problems in one refusal, nested ones with their path."""
    errors = _errors({"age_years": -1, "sex": "f", "plan": {
        "doses": [{"drug": "vincristine", "dose": 2, "unit": "IU"},
                  {"drug": "aspirin", "dose": 1, "unit": "mg"},
                  {"drug": "daunorubicin", "dose": 0, "unit": "mg"}]}})
    assert set(errors) == {"age_years", "sex", "plan.doses[0]", "plan.doses[1].drug",
                           "plan.doses[2].dose"}
    assert errors["plan.doses[0]"] == "unit 'IU' does not fit vincristine; use mg or mg/m2"


def test_implausible_dose_is_refused() -> None:
    """A vincristine dose of 20 mg is a data-entry error, not a dose to audit."""
    errors = _errors({"age_years": 30, "plan": {"doses": [
        {"drug": "vincristine", "dose": 20, "unit": "mg"}]}})
    assert "implausible" in errors["plan.doses[0]"]


def test_not_an_object() -> None:
    """A list or a string is not a patient."""
    assert _errors([1, 2]) == {"(facts)": "must be a JSON object / mapping, got list"}


def test_error_text_carries_only_the_offending_values() -> None:
    """The refusal names fields and the bad value only, never other patient data."""
    with pytest.raises(InvalidFactsError) as caught:
        validate_facts({"patient_id": "SECRET-MRN-123", "age_years": 30, "lineage": "Q",
                        "sex": "female"})
    assert "SECRET" not in str(caught.value)
    assert "female" not in str(caught.value)


def test_absent_or_null_is_unknown_never_a_default() -> None:
    """Explicit nulls and absent facts are unknown: no phase is read as a new diagnosis and no
    relapse count as 0 (issue 17 §1)."""
    facts = validate_facts({"age_years": 5, "lineage": None, "phase": None,
                            "relapse_count": None})
    assert facts.phase is None
    assert facts.relapse_count is None
    absent = validate_facts({"age_years": 5})
    assert absent.phase is None
    assert absent.relapse_count is None


def test_mosteller_bsa_and_given_bsa_wins() -> None:
    """BSA is Mosteller's sqrt(h·w/3600) unless bsa_m2 is given, which wins."""
    assert mosteller_bsa_m2(180, 80) == pytest.approx(math.sqrt(180 * 80 / 3600))
    computed = prepare(PatientFacts(age_years=30, height_cm=180, weight_kg=80))
    assert computed.values["bsa_m2"] == pytest.approx(2.0, abs=1e-4)
    assert computed.bsa_source == "mosteller"
    given = prepare(PatientFacts(age_years=30, height_cm=180, weight_kg=80, bsa_m2=1.5))
    assert given.values["bsa_m2"] == 1.5
    assert given.bsa_source == "given"
    assert prepare(PatientFacts(age_years=30, height_cm=180)).values["bsa_m2"] is None


def test_doses_are_converted_both_ways() -> None:
    """Doses in mg and mg/m² are compared on both scales using the BSA."""
    prepared = prepare(validate_facts({"age_years": 30, "bsa_m2": 2.0, "plan": {"doses": [
        {"drug": "vincristine", "dose": 1.4, "unit": "mg/m2"},
        {"drug": "vincristine", "dose": 2.0, "unit": "mg"}]}}))
    assert prepared.values["plan.vincristine_max_mg"] == 2.8
    assert prepared.values["plan.vincristine_max_mg_per_m2"] == 1.4


def test_model_and_mapping_give_the_same_assessment() -> None:
    """assess() takes the pydantic model or a plain mapping, with the same result."""
    data = {"age_years": 12, "lineage": "B", "wbc_at_diagnosis_10e9_per_l": 60,
            "ph_status": "negative"}
    assert assess(PatientFacts(**data)) == assess(data)


def test_field_order_does_not_matter() -> None:
    """The same facts in another key order give byte-identical output."""
    data = {"age_years": 12, "lineage": "B", "wbc_at_diagnosis_10e9_per_l": 60,
            "ph_status": "negative", "cns_status": "CNS1", "bsa_m2": 1.2}
    reordered = dict(reversed(list(data.items())))
    assert assess(data).to_json() == assess(reordered).to_json()

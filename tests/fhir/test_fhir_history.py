"""FHIR → the facts added for clinical coverage (issue 18 §3): Down syndrome from a Condition,
a past allogeneic HSCT and cranial irradiation from completed Procedures, ETV6::RUNX1 from its
ICD-O-3 diagnosis code, and the genetic results read as positive/negative (docs/fhir.md).
Each is true when the record says so, and unknown (absent) otherwise — never false."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fhir.resources")

from all_rules.fhir import CodeMap, facts_from_bundle

from ..support.fhir_charts import (
    ICD10,
    ICD10CM,
    ICDO3,
    LOINC,
    ON,
    SNOMED,
    bundle,
    diagnosis,
    status,
)

LOCAL = "urn:oid:1.2.3"
GENETIC = ("hypodiploidy", "high_hyperdiploidy", "etv6_runx1", "iamp21", "tcf3_hlf", "ph_like",
           "abl1_t315i", "testicular_involvement_end_of_induction")


@pytest.fixture(scope="module")
def codes(tmp_path_factory: pytest.TempPathFactory) -> CodeMap:
    """The shipped map plus an institution's procedure and genetic result codes."""
    path: Path = tmp_path_factory.mktemp("codes") / "codes.yaml"
    path.write_text(
        "history_procedures:\n"
        f"  - fact: prior_allogeneic_hsct\n    codes: [{{system: '{LOCAL}', code: 'ALLO'}}]\n"
        f"  - fact: prior_cranial_irradiation\n    codes: [{{system: '{LOCAL}', code: 'CRT'}},"
        f" {{system: '{LOCAL}', code: 'CSI'}}]\n"
        "observations:\n" + "".join(
            f"  - fact: {fact}\n    kind: coded\n    codes: [{{system: '{LOCAL}', "
            f"code: '{fact.upper()}'}}]\n" for fact in GENETIC), encoding="utf-8")
    return CodeMap.load(extra=path)


def _procedure(code: str, state: str = "completed", when: str | None = "2024-05-02",
               ident: str = "proc") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Procedure", "id": ident, "status": state,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": LOCAL, "code": code}]}}
    if when is not None:
        resource["performedDateTime"] = when
    return resource


def _condition(code: str, system: str = SNOMED, ident: str = "ds",
               **fields: Any) -> dict[str, Any]:
    return diagnosis(ident, code, system, onset=None, **fields)


def _result(fact: str, answer: str, when: str = "2026-11-20") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"obs-{fact}", "status": "final",
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when,
            "code": {"coding": [{"system": LOCAL, "code": fact.upper()}]},
            "valueCodeableConcept": {"coding": [{"system": LOINC, "code": answer}]}}


def _mapped(codes: CodeMap, *resources: dict[str, Any]) -> Any:
    return facts_from_bundle(bundle(diagnosis(), *resources), assessment_date=ON,
                             code_map=codes)


# ---- Procedures: a past allogeneic HSCT, cranial irradiation ---------------------------------

@pytest.mark.parametrize(("code", "fact"), [("ALLO", "prior_allogeneic_hsct"),
                                            ("CRT", "prior_cranial_irradiation"),
                                            ("CSI", "prior_cranial_irradiation")])
def test_a_completed_procedure_makes_its_fact_true(codes: CodeMap, code: str,
                                                   fact: str) -> None:
    mapped = _mapped(codes, _procedure(code))
    assert getattr(mapped.facts, fact) is True
    assert mapped.provenance[fact] == "Procedure/proc (2024-05-02)"


@pytest.mark.parametrize("state", ["not-done", "entered-in-error", "in-progress", "preparation",
                                   "stopped", "on-hold", "unknown", None])
def test_a_procedure_not_done_says_nothing(codes: CodeMap, state: str | None) -> None:
    resource = _procedure("ALLO", state or "completed")
    if state is None:
        del resource["status"]
    mapped = _mapped(codes, resource)
    assert mapped.facts.prior_allogeneic_hsct is None          # unknown, never false
    assert any(u.fact == "prior_allogeneic_hsct" and "not a procedure that was done" in u.reason
               for u in mapped.unmapped)


def test_no_procedure_leaves_the_history_unknown(codes: CodeMap) -> None:
    mapped = _mapped(codes)
    facts = mapped.facts
    assert (facts.prior_allogeneic_hsct, facts.prior_cranial_irradiation,
            facts.down_syndrome) == (None, None, None)
    assert "prior_allogeneic_hsct" not in mapped.provenance


def test_an_autologous_or_unspecified_transplant_is_not_allogeneic(codes: CodeMap) -> None:
    autologous = _procedure("AUTO", ident="auto")
    unspecified = {**_procedure("x", ident="hsct"), "code": {
        "coding": [{"system": SNOMED, "code": "77465005"}], "text": "stem cell transplant"}}
    mapped = _mapped(codes, autologous, unspecified)
    assert mapped.facts.prior_allogeneic_hsct is None
    assert {("Procedure/auto", "no code in the code map"),
            ("Procedure/hsct", "no code in the code map")} <= {
        (u.resource, u.reason) for u in mapped.unmapped}


def test_the_shipped_map_has_no_procedure_code_without_the_institution() -> None:
    """No standard code could be verified: an unknown code is reported, never guessed."""
    mapped = facts_from_bundle(bundle(diagnosis(), _procedure("ALLO")), assessment_date=ON)
    assert mapped.facts.prior_allogeneic_hsct is None


@pytest.mark.parametrize(("when", "used"), [("2026-11-27", True), ("2026-11-28", False),
                                            ("2019", True), ("2026-10", True), ("2026-11", False),
                                            ("2026-12", False), (None, True),
                                            ("someday", False)])
def test_a_procedure_is_placed_against_the_assessment_date(codes: CodeMap, when: str | None,
                                                           used: bool) -> None:
    """After the assessment date it had not happened yet; a year or month counts from its
    last day (November may end after the 27th); an undated completed procedure was done
    before the record was read."""
    mapped = _mapped(codes, _procedure("ALLO", when=when))
    assert mapped.facts.prior_allogeneic_hsct is (True if used else None)
    if not used:
        assert any(u.fact == "prior_allogeneic_hsct" for u in mapped.unmapped)


def test_performed_period_and_another_patient(codes: CodeMap) -> None:
    period = _procedure("CRT", when=None)
    period["performedPeriod"] = {"start": "2020-01-06", "end": "2020-01-20"}
    other = {**_procedure("ALLO", ident="other"), "subject": {"reference": "Patient/p2"}}
    mapped = _mapped(codes, period, other)
    assert mapped.facts.prior_cranial_irradiation is True
    assert mapped.provenance["prior_cranial_irradiation"] == "Procedure/proc (2020-01-06)"
    assert mapped.facts.prior_allogeneic_hsct is None


# ---- Conditions: Down syndrome ---------------------------------------------------------------

@pytest.mark.parametrize(("system", "code"), [
    (SNOMED, "41040004"), (ICD10, "Q90"), (ICD10, "Q90.0"), (ICD10, "Q90.9"),
    (ICD10CM, "Q90.0"), (ICD10CM, "Q90.1"), (ICD10CM, "Q90.2"), (ICD10CM, "Q90.9")])
def test_down_syndrome_from_a_condition(system: str, code: str) -> None:
    mapped = facts_from_bundle(bundle(diagnosis(), _condition(code, system)),
                               assessment_date=ON)
    assert mapped.facts.down_syndrome is True
    assert mapped.provenance["down_syndrome"] == "Condition/ds"
    assert mapped.diagnosis is not None
    assert mapped.diagnosis.resource == "Condition/dx"


@pytest.mark.parametrize(("clinical", "verification"), [
    (None, "refuted"), (None, "entered-in-error"), (None, "unconfirmed"),
    (None, "provisional"), ("inactive", None), ("resolved", None)])
def test_a_refuted_or_not_current_down_syndrome_says_nothing(clinical: str | None,
                                                             verification: str | None) -> None:
    mapped = facts_from_bundle(bundle(diagnosis(), _condition(
        "41040004", **status(clinical, verification))), assessment_date=ON)
    assert mapped.facts.down_syndrome is None
    assert any(u.fact == "down_syndrome" for u in mapped.unmapped)
    assert mapped.rejected_diagnoses == ()          # not an ALL diagnosis that was rejected


def test_active_confirmed_down_syndrome_counts() -> None:
    mapped = facts_from_bundle(bundle(diagnosis(), _condition(
        "41040004", **status("active", "confirmed"), recordedDate="2000-01-01")),
        assessment_date=ON)
    assert mapped.facts.down_syndrome is True


def test_down_syndrome_is_not_an_all_diagnosis() -> None:
    """The diagnosis gate stays closed for a record with only Down syndrome."""
    mapped = facts_from_bundle(bundle(_condition("41040004")), assessment_date=ON)
    assert not mapped.has_all_diagnosis
    assert mapped.facts.down_syndrome is True


def test_down_syndrome_recorded_after_the_assessment_date_is_not_used() -> None:
    mapped = facts_from_bundle(bundle(diagnosis(), _condition(
        "41040004", recordedDate="2026-12-01")), assessment_date=ON)
    assert mapped.facts.down_syndrome is None


# ---- Diagnosis codes: ETV6::RUNX1; hyperdiploidy and hypodiploidy not carried ----------------

def test_icdo3_9814_carries_etv6_runx1() -> None:
    mapped = facts_from_bundle(bundle(diagnosis(code="9814/3", system=ICDO3)),
                               assessment_date=ON)
    assert (mapped.facts.lineage, mapped.facts.etv6_runx1) == ("B", True)


@pytest.mark.parametrize(("code", "fact"), [("9815/3", "high_hyperdiploidy"),
                                            ("9816/3", "hypodiploidy")])
def test_ploidy_codes_do_not_say_the_ploidy_facts(code: str, fact: str) -> None:
    """The WHO categories (> 50 chromosomes with no upper limit; < 46) are not the facts'
    definitions (51-67; < 44): the codes leave them unknown."""
    mapped = facts_from_bundle(bundle(diagnosis(code=code, system=ICDO3)), assessment_date=ON)
    assert mapped.facts.lineage == "B"
    assert getattr(mapped.facts, fact) is None


def test_a_negative_result_disagreeing_with_the_code_leaves_etv6_runx1_unknown(
        codes: CodeMap) -> None:
    mapped = facts_from_bundle(bundle(diagnosis(code="9814/3", system=ICDO3),
                                      _result("etv6_runx1", "LA6577-6")),
                               assessment_date=ON, code_map=codes)
    assert mapped.facts.etv6_runx1 is None
    assert "etv6_runx1" in mapped.undetermined


# ---- Observations: genetic results read as positive / negative -------------------------------

@pytest.mark.parametrize("fact", GENETIC)
@pytest.mark.parametrize(("answer", "value"), [("LA6576-8", True), ("LA11882-0", True),
                                               ("LA6577-6", False), ("LA11883-8", False)])
def test_genetic_results_are_qualitative(codes: CodeMap, fact: str, answer: str,
                                         value: bool) -> None:
    mapped = _mapped(codes, _result(fact, answer))
    assert getattr(mapped.facts, fact) is value


@pytest.mark.parametrize("fact", GENETIC)
def test_an_unrecognised_answer_or_no_result_is_unknown(codes: CodeMap, fact: str) -> None:
    mapped = _mapped(codes, _result(fact, "LA0000-0"))
    assert getattr(mapped.facts, fact) is None
    assert any(u.fact == fact for u in mapped.unmapped)
    assert getattr(_mapped(codes).facts, fact) is None


@pytest.mark.parametrize("fact", ["hypodiploidy", "etv6_runx1", "iamp21", "tcf3_hlf",
                                  "ph_like", "high_hyperdiploidy"])
def test_subtype_results_are_read_at_diagnosis(codes: CodeMap, fact: str) -> None:
    """A negative ETV6::RUNX1 or karyotype on a remission marrow months later measures
    residual disease, not the subtype: only a result near the diagnosis date is used."""
    mapped = _mapped(codes, _result(fact, "LA6577-6", when="2026-11-25"))
    assert getattr(mapped.facts, fact) is False
    mapped = facts_from_bundle(bundle(diagnosis(onset="2026-03-01"),
                                      _result(fact, "LA6577-6", when="2026-11-25")),
                               assessment_date=ON, code_map=codes)
    assert getattr(mapped.facts, fact) is None


def test_t315i_is_the_latest_result(codes: CodeMap) -> None:
    mapped = facts_from_bundle(bundle(diagnosis(onset="2025-01-10"),
                                      _result("abl1_t315i", "LA6576-8", when="2026-11-01")),
                               assessment_date=ON, code_map=codes)
    assert mapped.facts.abl1_t315i is True

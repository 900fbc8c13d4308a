"""FHIR MRD results in the units labs send: converted to percent, or reported, never guessed
(issue 17, section 4; docs/fhir.md "MRD and its unit")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fhir.resources")

from all_rules.fhir import CodeMap, facts_from_bundle

from ..support.fhir_charts import ON, bundle, diagnosis, observation

LOCAL = "urn:oid:1.2.3"
FACTS = {"MRD-EOI": "mrd_end_of_induction_percent", "MRD-CONS": "mrd_consolidation_percent",
         "MRD-NOW": "mrd_current_percent"}


@pytest.fixture(scope="module")
def codes(tmp_path_factory: pytest.TempPathFactory) -> CodeMap:
    """The shipped map plus an institution's MRD codes (MRD has no single standard code)."""
    path: Path = tmp_path_factory.mktemp("codes") / "codes.yaml"
    path.write_text("observations:\n" + "".join(
        f"  - fact: {fact}\n    kind: quantity\n    codes: [{{system: '{LOCAL}', "
        f"code: '{code}'}}]\n" for code, fact in FACTS.items()), encoding="utf-8")
    return CodeMap.load(extra=path)


def _mrd(codes: CodeMap, value: float, unit: str | None, code: str = "MRD-NOW",
         ucum: bool = True) -> tuple[Any, list[str]]:
    """(the fact's value, the reasons it was not used) for one MRD Observation."""
    result = observation("m", code, value, unit or "", system=LOCAL)
    quantity = result["valueQuantity"]
    if unit is None:
        del quantity["unit"], quantity["code"]
    elif not ucum:  # an HL7 v2 feed: the unit as text, no UCUM code
        del quantity["code"], quantity["system"]
    mapped = facts_from_bundle(bundle(diagnosis(), result), assessment_date=ON,
                               code_map=codes)
    fact = FACTS[code]
    return getattr(mapped.facts, fact), [u.reason for u in mapped.unmapped if u.fact == fact]


@pytest.mark.parametrize(("value", "unit", "percent"), [
    (0.01, "%", 0.01),
    (3e-4, "1", 0.03),                 # a fraction: 3×10⁻⁴ is 0.03 %, not 0.0003 %
    (3e-4, "{fraction}", 0.03),
    (1e-4, "1", 0.01),                 # exactly the threshold
    (3, "10*-4", 0.03),                # 3 × 10⁻⁴ of cells
    (1, "10*-4", 0.01),
    (5, "10*-5", 0.005),
    (12, "10*-6", 0.0012),
    (2, "10*-3", 0.2),
    (-4, "{log10}", 0.01),             # log10 of the fraction
    (-3.5, "{log10}", 0.0316227766017),
    (0, "{log10}", 100.0),
    (4, "{log_reduction}", 0.01),      # a 4-log reduction: 1 in 10,000 cells
    (0, "%", 0.0),
    (100, "%", 100.0),
    (1, "1", 100.0),
])
def test_units_labs_send_are_converted(codes: CodeMap, value: float, unit: str,
                                       percent: float) -> None:
    found, reasons = _mrd(codes, value, unit)
    assert (found, reasons) == (percent, [])


@pytest.mark.parametrize(("value", "unit", "percent"), [
    (3e-4, "fraction", 0.03), (-4, "log10", 0.01), (4, "log reduction", 0.01),
    (4, "Log Reduction", 0.01), (0.05, "%", 0.05),
])
def test_unit_strings_without_a_code(codes: CodeMap, value: float, unit: str,
                                     percent: float) -> None:
    found, reasons = _mrd(codes, value, unit, ucum=False)
    assert (found, reasons) == (percent, [])


def test_every_mrd_fact_is_converted(codes: CodeMap) -> None:
    for code in FACTS:
        assert _mrd(codes, 2, "10*-4", code=code) == (0.02, [])


def test_no_unit_is_reported_not_read_as_percent(codes: CodeMap) -> None:
    found, reasons = _mrd(codes, 0.0003, None)
    assert found is None
    assert reasons == ["mrd_current_percent 0.0003 has no unit: MRD is not read without one "
                       "(a percent and a fraction of cells differ 100-fold; units: "
                       "docs/fhir.md)"]


@pytest.mark.parametrize("unit", ["log", "ppm", "10*-4/L", "%{cells}", "{log}"])
def test_an_unknown_unit_is_reported(codes: CodeMap, unit: str) -> None:
    """A bare `log` says neither log10 of the fraction nor a log reduction: not guessed."""
    found, reasons = _mrd(codes, 1, unit)
    assert found is None
    assert len(reasons) == 1
    assert reasons[0].startswith(f"unit {unit!r} cannot be converted for mrd_current_percent "
                                 "(accepted UCUM codes: %, 1, 10*-3, 10*-4")
    assert "{log10}, {log_reduction}" in reasons[0]


@pytest.mark.parametrize(("value", "unit", "words"), [
    (3, "1", "mrd_current_percent 3 1 is not an MRD level: MRD 300.0 with unit '%' is "
             "outside 0 to 100"),
    (101, "%", "is outside 0 to 100"),
    (-0.01, "%", "mrd_current_percent -0.01 % is not an MRD level: MRD -0.01 with unit '%' "
                 "is outside 0 to 100 (a level is never below 0)"),
    (20000, "10*-4", "MRD 200.0 with unit '%' is outside 0 to 100"),
    (0.5, "{log10}", "mrd_current_percent 0.5 {log10} is not an MRD level: MRD 0.5 with unit "
                     "'log10' is outside -10 to 0"),
    (-1, "{log_reduction}", "a log reduction is never below 0"),
    (11, "{log_reduction}", "outside -10 to 0"),
])
def test_out_of_range_after_conversion_is_reported(codes: CodeMap, value: float, unit: str,
                                                   words: str) -> None:
    found, reasons = _mrd(codes, value, unit)
    assert found is None
    assert len(reasons) == 1
    assert words in reasons[0]


def test_a_reported_value_leaves_the_fact_unknown_and_asked_for(codes: CodeMap) -> None:
    """An unreadable MRD never becomes a value: the fact stays unknown."""
    result = observation("m", "MRD-EOI", 0.0003, "", system=LOCAL)
    del result["valueQuantity"]["unit"], result["valueQuantity"]["code"]
    mapped = facts_from_bundle(bundle(diagnosis(), result), assessment_date=ON,
                               code_map=codes)
    assert mapped.facts.mrd_end_of_induction_percent is None
    assert [u.resource for u in mapped.unmapped if u.fact == "mrd_end_of_induction_percent"] \
        == ["Observation/m"]

"""Synthetic cohorts for demos, tests and benchmarks (``all-rules synth``).

Not real patients and not an epidemiological model: plausible, documented distributions
(docs/cohorts.md) that exercise every rule, with a share of unknown values. The same
``seed`` always gives the same cohort.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._records import COLUMNS, format_doses

__all__ = ["PHASES", "flatten", "patient", "patients", "write"]

PHASES = (("diagnosis", 0.15), ("induction", 0.20), ("consolidation", 0.25),
          ("maintenance", 0.25), ("relapsed", 0.10), ("refractory", 0.05))


def _pick(rnd: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    values, weights = zip(*weighted, strict=True)
    return rnd.choices(values, weights)[0]


def _age(rnd: random.Random) -> float:
    band = rnd.random()
    if band < 0.03:
        return round(rnd.uniform(0.05, 0.99), 2)          # infants
    if band < 0.45:
        return round(rnd.triangular(1, 10, 3.5), 1)       # the childhood peak, 2-5 years
    if band < 0.60:
        return round(rnd.uniform(10, 18), 1)              # adolescents
    return round(min(95.0, rnd.triangular(18, 90, 30)), 1)  # adults, skewed young


#: Years from diagnosis to assessment by phase (uniform between the bounds).
_YEARS_SINCE_DIAGNOSIS = {"diagnosis": (0.0, 0.02), "induction": (0.0, 0.1),
                          "consolidation": (0.1, 0.7), "maintenance": (0.5, 3.0),
                          "relapsed": (0.5, 6.0), "refractory": (0.1, 1.0)}


def _age_at_diagnosis(rnd: random.Random, age: float, phase: str) -> float | None:
    """The age at diagnosis, at most the current age; unknown for 15 % of patients."""
    if rnd.random() < 0.15:
        return None
    low, high = _YEARS_SINCE_DIAGNOSIS[phase]
    return round(max(0.0, age - rnd.uniform(low, high)), 2)


def _ph_rate(age: float) -> float:
    """Ph+ rises with age: ~3 % of children, ~15 % at 18-39, ~30 % at 40-59, ~40 % at 60+."""
    if age < 18:
        return 0.03
    if age < 40:
        return 0.15
    if age < 60:
        return 0.30
    return 0.40


def patient(rnd: random.Random, index: int, missing_rate: float = 0.05,
            more: random.Random | None = None) -> dict[str, Any]:
    """One synthetic patient (nested facts, docs/facts.md).

    The steps draw from ``rnd`` one after the other, so their order (and the order of the
    draws inside each) is what makes a seed give the same cohort: change neither. The facts
    added later (genetic subtypes, Down syndrome, the history: issue 18) draw from their own
    stream ``more``, so that a seed still gives every earlier fact of every patient as
    before (the reference cohort of `all-rules diff` stays comparable across versions).
    Without ``more``, a stream is derived from the state of ``rnd`` without drawing from it.
    """
    more = more or random.Random(repr(rnd.getstate()))
    facts = _at_diagnosis(rnd, index)
    age, phase = facts["age_years"], facts["phase"]
    _add_response(rnd, facts, phase, age < 18)
    _add_relapse(rnd, facts, phase)
    added = {**_genetics(more, facts), **_history(more, facts)}
    if rnd.random() < 0.3:
        facts["plan"] = _plan(rnd, age, phase)
    _leave_unknown(rnd, facts, missing_rate)
    facts.update({name: value for name, value in added.items()
                  if more.random() >= missing_rate})
    return facts


#: The primary B-ALL subtypes drawn for a B-lineage patient neither Ph+ nor KMT2A-rearranged,
#: as shares by age at diagnosis (infant < 1, child 1-17, 18-39, 40+); at most one per
#: patient (the subtypes exclude one another). Plausible, not epidemiology (docs/cohorts.md).
_SUBTYPES: dict[str, tuple[float, float, float, float]] = {
    "etv6_runx1": (0.005, 0.25, 0.03, 0.01),
    "high_hyperdiploidy": (0.02, 0.28, 0.08, 0.04),
    "hypodiploidy": (0.002, 0.015, 0.04, 0.08),
    "iamp21": (0.0, 0.02, 0.01, 0.005),
    "tcf3_hlf": (0.0, 0.005, 0.003, 0.002),
    "ph_like": (0.01, 0.10, 0.20, 0.15),
}
#: Tests reported together, and the share of patients without their result (more at
#: diagnosis, when results are pending): karyotype, fusion FISH/PCR, Ph-like screening.
_TESTS = ((("hypodiploidy", "high_hyperdiploidy", "iamp21"), 0.15),
          (("etv6_runx1", "tcf3_hlf"), 0.10), (("ph_like",), 0.40))


def _age_band(age: float) -> int:
    return 0 if age < 1 else 1 if age < 18 else 2 if age < 40 else 3


def _genetics(more: random.Random, facts: dict[str, Any]) -> dict[str, Any]:
    """The genetic subtype facts; ABL1 T315I for Ph+ relapsed or refractory disease."""
    at_diagnosis = facts["age_at_diagnosis_years"]
    age = facts["age_years"] if at_diagnosis is None else at_diagnosis
    pending = 0.4 if facts["phase"] == "diagnosis" else 0.0
    found: dict[str, Any] = {}
    if facts["lineage"] == "T":
        if more.random() >= _TESTS[0][1] + pending:    # a karyotype, no B-lineage subtype
            found.update(hypodiploidy=False, high_hyperdiploidy=False)
        return found
    subtype = None
    if facts["ph_status"] != "positive" and not facts["kmt2a_rearranged"]:
        roll, band = more.random(), _age_band(age)
        for name, shares in _SUBTYPES.items():
            roll -= shares[band]
            if roll < 0:
                subtype = name
                break
    for names, unknown in _TESTS:
        if more.random() >= unknown + pending:
            found.update({name: name == subtype for name in names})
    if facts["ph_status"] == "positive" and facts["phase"] in ("relapsed", "refractory") \
            and more.random() < 0.7:
        found["abl1_t315i"] = more.random() < 0.3
    return found


def _history(more: random.Random, facts: dict[str, Any]) -> dict[str, Any]:
    """Down syndrome; a past allogeneic HSCT (only after a relapse) and cranial irradiation
    (rare; more after a CNS relapse); testicular disease at the end of induction (boys and
    men with it at diagnosis, from consolidation on)."""
    found: dict[str, Any] = {}
    if more.random() < 0.9:
        found["down_syndrome"] = more.random() < (0.025 if facts["age_years"] < 18 else 0.003)
    relapses = facts["relapse_count"]
    if relapses:
        found["prior_allogeneic_hsct"] = more.random() < (0.2 if relapses == 1 else 0.4)
    elif more.random() < 0.6:
        found["prior_allogeneic_hsct"] = False
    if more.random() < 0.7:
        cns = facts.get("relapse_site") in ("isolated_cns", "combined")
        found["prior_cranial_irradiation"] = more.random() < (0.15 if cns else 0.02)
    if facts["sex"] == "male" and facts["testicular_involvement"] and \
            facts["phase"] in ("consolidation", "maintenance") and more.random() < 0.8:
        found["testicular_involvement_end_of_induction"] = more.random() < 0.15
    return found


def _at_diagnosis(rnd: random.Random, index: int) -> dict[str, Any]:
    """Who the patient is and the disease at diagnosis, the phase, and the setting of care."""
    age = _age(rnd)
    child = age < 18
    lineage = _pick(rnd, (("B", 0.85 if child else 0.75), ("T", 0.15 if child else 0.25)))
    ph = "positive" if lineage == "B" and rnd.random() < _ph_rate(age) else "negative"
    wbc_median = 50.0 if lineage == "T" else 10.0
    wbc = round(min(1500.0, rnd.lognormvariate(math.log(wbc_median), 1.1)), 1)
    height = round(50 + min(age, 18) * 6.5 + rnd.gauss(0, 6) if child else rnd.gauss(170, 10), 1)
    weight = round(max(3.0, 3.5 + min(age, 18) * 3.4 + rnd.gauss(0, 3)) if child
                   else max(40.0, rnd.gauss(75, 14)), 1)
    phase = _pick(rnd, PHASES)
    return {
        "patient_id": f"SYN{index:08d}",
        "age_years": age,
        "age_at_diagnosis_years": _age_at_diagnosis(rnd, age, phase),
        "sex": rnd.choice(["female", "male"]),
        "height_cm": max(40.0, min(230.0, height)),
        "weight_kg": min(250.0, weight),
        "lineage": lineage,
        "ph_status": ph,
        "wbc_at_diagnosis_10e9_per_l": wbc,
        "cns_status": _pick(rnd, (("CNS1", 0.85), ("CNS2", 0.10), ("CNS3", 0.05))),
        "testicular_involvement": rnd.random() < 0.02,
        "kmt2a_rearranged": rnd.random() < (0.7 if age < 1 else 0.05),
        "cd19_positive": lineage == "B" and rnd.random() < 0.97,
        "cd22_positive": lineage == "B" and rnd.random() < 0.9,
        "phase": phase,
        "tki_available": rnd.random() < 0.9,
        "transplant_eligible": rnd.random() < (0.7 if age < 60 else 0.3),
        "substantial_comorbidities": rnd.random() < (0.05 if age < 60 else 0.4),
        "resource_level": _pick(rnd, (("basic", 0.1), ("core", 0.2), ("enhanced", 0.4),
                                      ("maximal", 0.3))),
        "specialized_center": rnd.random() < 0.85,
    }


def _add_response(rnd: random.Random, facts: dict[str, Any], phase: str, child: bool) -> None:
    """Response to induction (remission, MRD at its end): always past induction, for some
    patients still in it; MRD after consolidation for most patients in consolidation."""
    past_induction = phase not in ("diagnosis", "induction")
    if past_induction or rnd.random() < 0.3:
        remission = phase != "refractory" and rnd.random() < (0.95 if child else 0.88)
        facts["complete_remission"] = remission
        if remission:
            facts["weeks_to_complete_remission"] = round(rnd.triangular(2.5, 8, 3), 1)
        negative = rnd.random() < (0.75 if child else 0.6)
        facts["mrd_end_of_induction_percent"] = (
            round(rnd.uniform(0, 0.0099), 4) if negative
            else round(min(100.0, rnd.lognormvariate(math.log(0.1), 1.5)), 4))
    if phase == "consolidation" and rnd.random() < 0.7:
        facts["mrd_consolidation_percent"] = round(rnd.choice([0.0, 0.001, 0.02, 0.3]), 4)


def _add_relapse(rnd: random.Random, facts: dict[str, Any], phase: str) -> None:
    """Relapse facts: none on the first line, except for some patients consolidating or
    maintaining a second remission (recorded in those phases); for relapsed and refractory
    patients, the relapse and, for some, a later remission."""
    if phase not in ("relapsed", "refractory"):
        facts["relapse_count"] = 0
        if phase in ("consolidation", "maintenance") and rnd.random() < 0.08:
            facts.update(relapse_count=1, remission_number=2, relapse_site="marrow",
                         months_from_diagnosis_to_relapse=round(rnd.uniform(6, 60), 1),
                         mrd_current_percent=round(rnd.choice([0.0, 0.005, 0.05, 0.5]), 4),
                         courses_since_remission=rnd.choice([0, 1, 2]))
        return
    facts["relapse_count"] = 0 if phase == "refractory" else rnd.choice([1, 1, 1, 2, 3])
    if facts["relapse_count"]:
        facts["relapse_site"] = _pick(rnd, (("marrow", 0.7), ("isolated_cns", 0.1),
                                            ("isolated_testicular", 0.05),
                                            ("combined", 0.15)))
        facts["months_from_diagnosis_to_relapse"] = round(rnd.uniform(2, 72), 1)
        if facts["relapse_site"] == "combined" and rnd.random() < 0.5:
            facts["relapse_cns_involved"] = rnd.random() < 0.4
    if facts["relapse_count"] and rnd.random() < 0.5:
        facts["remission_number"] = facts["relapse_count"] + 1
        facts["mrd_current_percent"] = round(rnd.choice([0.0, 0.005, 0.05, 0.5]), 4)
        facts["courses_since_remission"] = rnd.choice([0, 1, 2])


def _leave_unknown(rnd: random.Random, facts: dict[str, Any], missing_rate: float) -> None:
    """Drop each optional fact with probability ``missing_rate`` (id and age stay; the phase
    and the number of relapses are dropped like any other fact: absent is unknown)."""
    for name in list(facts):
        if name not in ("patient_id", "age_years") and rnd.random() < missing_rate:
            del facts[name]


def _plan(rnd: random.Random, age: float, phase: str) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "intrathecal_in_induction": rnd.random() < 0.95,
        "cranial_irradiation": rnd.random() < 0.05,
        "mrd_monitoring": rnd.random() < 0.9,
        "tki": rnd.random() < 0.5,
        "systemic_therapy": rnd.random() < 0.97,
        "steroid": "prednisone" if age < 10 and rnd.random() < 0.8 else "dexamethasone",
    }
    if phase in ("relapsed", "refractory"):
        plan["allogeneic_hsct"] = rnd.random() < 0.5
    if phase == "maintenance":
        plan["maintenance_years"] = rnd.choice([1.5, 2.0, 2.5, 3.0])
    if phase in ("diagnosis", "induction"):
        if age >= 18 and rnd.random() < 0.5:
            plan["regimen"] = rnd.choice(["ukall_xii_ecog_2993", "hyper_cvad", "source_backbone"])
        plan["doses"] = [
            {"drug": "vincristine", "dose": rnd.choice([1.4, 1.5, 2.0, 2.5]),
             "unit": rnd.choice(["mg", "mg/m2"])},
            {"drug": "daunorubicin", "dose": rnd.choice([25, 30, 35, 60]), "unit": "mg/m2"},
            {"drug": "pegaspargase", "dose": rnd.choice([2500, 2000]), "unit": "IU/m2"},
        ]
    return plan


def patients(count: int, seed: int, missing_rate: float = 0.05) -> Iterator[dict[str, Any]]:
    rnd = random.Random(seed)
    more = random.Random(f"all-rules synth {seed}: facts of 2026.4")
    for index in range(count):
        yield patient(rnd, index, missing_rate, more)


def flatten(facts: dict[str, Any]) -> dict[str, Any]:
    """Nested facts as one flat record (CSV / Parquet columns)."""
    flat = {k: v for k, v in facts.items() if k != "plan"}
    for name, value in (facts.get("plan") or {}).items():
        flat[f"plan.{name}"] = format_doses(value) if name == "doses" else value
    return flat


def write(path: Path, count: int, seed: int, fmt: str, missing_rate: float = 0.05) -> int:
    """Write a synthetic cohort; returns the number of patients written."""
    rows = patients(count, seed, missing_rate)
    temp = path.with_name(f".{path.name}.partial")
    try:
        if fmt == "jsonl":
            with temp.open("w", encoding="utf-8", newline="\n") as handle:
                for facts in rows:
                    handle.write(json.dumps(facts, ensure_ascii=False) + "\n")
        elif fmt == "csv":
            with temp.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(COLUMNS),
                                        lineterminator="\n")
                writer.writeheader()
                for facts in rows:
                    writer.writerow({k: _cell(v) for k, v in flatten(facts).items()})
        else:
            _write_parquet(temp, rows)
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return count


def _cell(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value


def _write_parquet(path: Path, rows: Iterator[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"str": pa.string(), "float": pa.float64(), "int": pa.int64(),
             "bool": pa.bool_(), "doses": pa.string()}
    schema = pa.schema([(name, types[kind]) for name, kind in COLUMNS.items()])
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[dict[str, Any]] = []
        for facts in rows:
            batch.append(flatten(facts))
            if len(batch) == 50_000:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))

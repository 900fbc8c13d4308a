"""Mapping time of a five-year chart (~2,000 resources) to facts.

Run: ``python tests/benchmarks/bench_fhir.py [N]`` (default 200 runs). Builds one patient's
chart over five years — weekly blood counts (half as CBC panels with components), monthly
vitals, other labs the map does not read, diagnoses old and current, finished and current
orders — and prints p50 / p99 of ``facts_from_bundle`` on it; in the same run, ``json.loads``
of the same Bundle's JSON as the reference (the least any reader of it must spend).
Target: p99 <= 50 ms.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import time
from typing import Any

from all_rules.fhir import facts_from_bundle

LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
ON = dt.date(2026, 11, 27)
START = dt.date(2021, 11, 1)
_OTHER = [("718-7", "g/dL", 11.2), ("777-3", "10*3/uL", 210), ("2951-2", "mmol/L", 139),
          ("2160-0", "mg/dL", 0.8), ("1742-6", "U/L", 31), ("8867-4", "/min", 82),
          ("8310-5", "Cel", 36.8)]


def _obs(ident: str, code: str, value: float, unit: str, day: dt.date) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": ident, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                "observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": f"{day.isoformat()}T08:30:00+01:00",
            "issued": f"{day.isoformat()}T11:02:00+01:00",
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def chart() -> dict[str, Any]:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "p1", "birthDate": "2012-04-03", "gender": "male"}]
    for index, (code, onset, clinical) in enumerate([
            ("91857003", "2021-11-03", "resolved"), ("277571004", "2021-11-04", "active"),
            ("195967001", "2016-01-01", "active"), ("38341003", "2023-05-01", "active")]):
        resources.append({
            "resourceType": "Condition", "id": f"c{index}", "subject": {"reference": "Patient/p1"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                     "condition-clinical", "code": clinical}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
            "onsetDateTime": onset})
    week = 0
    day = START
    while day <= ON and len(resources) < 1_900:
        if week % 2:
            resources.append({**_obs(f"cbc{week}", "58410-2", 0, "1", day),
                              "valueQuantity": None, "component": [
                {"code": {"coding": [{"system": LOINC, "code": "6690-2"}]},
                 "valueQuantity": {"value": 3 + week % 7, "unit": "10*3/uL", "system": UCUM,
                                   "code": "10*3/uL"}},
                {"code": {"coding": [{"system": LOINC, "code": "718-7"}]},
                 "valueQuantity": {"value": 11.0, "unit": "g/dL", "system": UCUM,
                                   "code": "g/dL"}}]})
            del resources[-1]["valueQuantity"]
        else:
            resources.append(_obs(f"wbc{week}", "6690-2", 3 + week % 5, "10*3/uL", day))
        for code, unit, value in _OTHER[: 4 + week % 4]:
            resources.append(_obs(f"{code}-{week}", code, value, unit, day))
        if week % 4 == 0:
            resources.append(_obs(f"h{week}", "8302-2", 130 + week / 10, "cm", day))
            resources.append(_obs(f"w{week}", "29463-7", 28 + week / 20, "kg", day))
            resources.append({
                "resourceType": "MedicationRequest", "id": f"mr{week}",
                "status": "completed" if day < ON - dt.timedelta(days=28) else "active",
                "intent": "order", "subject": {"reference": "Patient/p1"},
                "authoredOn": day.isoformat(),
                "medicationCodeableConcept": {"coding": [{
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "11202"}]},
                "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {
                    "value": 1.5, "code": "mg/m2", "system": UCUM}}]}]})
        week += 1
        day += dt.timedelta(days=7 if week < 200 else 3)
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"fullUrl": f"https://ehr.example/fhir/{r['resourceType']}/{r['id']}",
                       "resource": r} for r in resources]}


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main(runs: int) -> None:
    bundle = chart()
    text = json.dumps(bundle)
    mapped = facts_from_bundle(bundle, assessment_date=ON)  # warm: imports, code map
    assert mapped.facts.wbc_at_diagnosis_10e9_per_l is not None, mapped.unmapped[:5]
    wall: dict[str, list[float]] = {"map": [], "json": []}
    cpu: dict[str, list[float]] = {"map": [], "json": []}
    for _ in range(runs):
        for name, work in (("map", lambda: facts_from_bundle(bundle, assessment_date=ON)),
                           ("json", lambda: json.loads(text))):
            began, began_cpu = time.perf_counter(), time.process_time()
            work()
            wall[name].append((time.perf_counter() - began) * 1000)
            cpu[name].append((time.process_time() - began_cpu) * 1000)
    print(f"chart: {len(bundle['entry'])} resources, {len(text) / 1e6:.2f} MB of JSON; "
          f"{len(mapped.unmapped)} reported as not used")
    for label, name in (("facts_from_bundle", "map"), ("reference json.loads", "json")):
        p50, p99 = _percentiles(wall[name])
        c50, c99 = _percentiles(cpu[name])
        print(f"{label}: wall p50 {p50:.1f} ms, p99 {p99:.1f} ms; CPU p50 {c50:.1f} ms, "
              f"p99 {c99:.1f} ms over {runs} runs")
    print("target: facts_from_bundle p99 <= 50 ms (CPU time shows the work when the machine "
          "is shared)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)

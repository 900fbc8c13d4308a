"""Latency of ``assess`` over generated patients, against a plain-Python reference.

Run: ``python tests/benchmarks/bench_assess.py [N]`` (default N = 5,000 patients).

Prints p50 / p99 / mean of one ``Guideline.assess`` call (validation, preparation, the
durable-rules evaluation of the whole catalogue with its staged derivations, and the
assembly of the explained output), and, measured in the same run over the same patients,
a hand-written Python evaluation of the risk rules alone (features and group) as the
reference floor. Targets on a 2-core machine: p50 <= 300 µs, p99 <= 1 ms.
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
from typing import Any

import _runtime  # tests/benchmarks/_runtime.py, beside this script

from all_rules import Guideline

PHASES = ("diagnosis", "induction", "consolidation", "maintenance", "relapsed", "refractory")


def patient(rnd: random.Random, index: int) -> dict[str, Any]:
    """A plausible patient with some unknowns (a quarter of optional facts missing)."""
    age = rnd.choice([rnd.uniform(0.2, 1), rnd.uniform(1, 18), rnd.uniform(18, 85)])
    facts: dict[str, Any] = {
        "patient_id": f"B{index:06d}", "age_years": round(age, 1),
        "lineage": rnd.choice(["B", "B", "B", "T", None]),
        "ph_status": rnd.choice(["positive", "negative", "negative", "unknown"]),
        "wbc_at_diagnosis_10e9_per_l": round(rnd.lognormvariate(2.5, 1.2), 1),
        "cns_status": rnd.choice(["CNS1", "CNS1", "CNS2", "CNS3", None]),
        "height_cm": 60 + min(age, 18) * 6, "weight_kg": 8 + min(age, 18) * 3.5,
        "phase": rnd.choice(PHASES),
        "complete_remission": rnd.choice([True, True, False, None]),
        "weeks_to_complete_remission": rnd.choice([3, 4, 5, 6, None]),
        "mrd_end_of_induction_percent": rnd.choice([0.0, 0.001, 0.01, 0.5, None]),
        "mrd_consolidation_percent": rnd.choice([0.0, 0.02, None]),
        "relapse_count": rnd.choice([0, 0, 1, 2]),
        "remission_number": rnd.choice([1, 2, None]),
        "mrd_current_percent": rnd.choice([0.0, 0.05, None]),
        "courses_since_remission": rnd.choice([0, 1, 2, None]),
        "tki_available": rnd.choice([True, False, None]),
        "transplant_eligible": rnd.choice([True, False, None]),
        "specialized_center": rnd.choice([True, False, None]),
    }
    if rnd.random() < 0.3:
        facts["plan"] = {"intrathecal_in_induction": rnd.choice([True, False]),
                         "tki": rnd.choice([True, False]),
                         "doses": [{"drug": "vincristine", "dose": rnd.choice([1.4, 2.5]),
                                    "unit": rnd.choice(["mg", "mg/m2"])}]}
    return {k: v for k, v in facts.items()
            if v is not None and (k == "age_years" or rnd.random() > 0.05)}


def reference_risk(p: dict[str, Any]) -> tuple[str, list[str]]:
    """The risk features and group in plain Python: the floor the engine is compared to."""
    age, lineage, wbc = p["age_years"], p.get("lineage"), p.get("wbc_at_diagnosis_10e9_per_l")
    features = []
    if age >= 18 and age >= 35:
        features.append("risk.age_35_or_older")
    if age >= 18 and lineage == "B" and wbc is not None and wbc > 30:
        features.append("risk.wbc_b_over_30")
    if age >= 18 and lineage == "T" and wbc is not None and wbc > 100:
        features.append("risk.wbc_t_over_100")
    if 1 <= age < 18 and lineage == "B" and (age >= 10 or (wbc is not None and wbc >= 50)):
        features.append("risk.nci_high")
    if age < 1:
        features.append("risk.infant")
    weeks = p.get("weeks_to_complete_remission")
    late = p.get("phase") in PHASES[2:]
    slow = (weeks is not None and weeks > 4) or (p.get("complete_remission") is False and late)
    if slow:
        features.append("risk.slow_remission")
    if p.get("ph_status") == "positive":
        features.append("risk.ph_positive")
    mrd = p.get("mrd_end_of_induction_percent")
    if mrd is not None and mrd >= 0.01:
        features.append("risk.mrd_end_of_induction")
    poor = slow or (mrd is not None and mrd >= 0.01)
    if (lineage == "T" or p.get("ph_status") == "positive") and poor:
        return "very_high", features
    if features:
        return "high", features
    missing = p.get("ph_status") in (None, "unknown") or wbc is None or lineage is None
    if missing or (late and (mrd is None or weeks is None)):
        return "indeterminate", features
    return ("standard" if late or mrd is not None else "provisional_standard"), features


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def timed(function: Any, patients: list[dict[str, Any]]) -> list[float]:
    samples = []
    clock = time.perf_counter_ns
    for facts in patients:
        start = clock()
        function(facts)
        samples.append((clock() - start) / 1000)
    return sorted(samples)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    rnd = random.Random(20261127)
    patients = [patient(rnd, i) for i in range(count)]
    guideline = Guideline.default()
    for facts in patients[:500]:  # warm-up: caches, allocator, branch predictors
        guideline.assess(facts)
        reference_risk(facts)
    gc.collect()
    gc.disable()
    try:
        engine = timed(guideline.assess, patients)
        reference = timed(reference_risk, patients)
    finally:
        gc.enable()
    fired = statistics.mean(len(guideline.assess(p).recommendations) for p in patients[:1000])
    rules = len(guideline.ruleset.rules)
    branches = len(guideline.engine.definition)
    print(_runtime.describe())
    print(f"all-rules assess latency over {count:,} generated patients "
          f"({rules} rules, {branches} engine rules, {fired:.1f} items per patient on average)")
    print(f"{'':24}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}")
    for name, samples in (("assess (full catalogue)", engine),
                          ("reference (risk only)", reference)):
        print(f"{name:24}{percentile(samples, 0.5):10.1f}{percentile(samples, 0.99):10.1f}"
              f"{statistics.fmean(samples):10.1f}")
    ratio = percentile(engine, 0.5) / percentile(reference, 0.5)
    print(f"ratio assess/reference at p50: {ratio:.0f}x")
    p50, p99 = percentile(engine, 0.5), percentile(engine, 0.99)
    verdict = "meets" if p50 <= 300 and p99 <= 1000 else "MISSES"
    print(f"target p50 <= 300 µs, p99 <= 1000 µs: {verdict}")


if __name__ == "__main__":
    main()

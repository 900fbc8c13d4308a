"""Cost of the differential oracle and of explanations, per patient.

Run: ``python tests/benchmarks/bench_explain.py [N]`` (default N = 5,000 synthetic patients).

Prints, over the same prepared patients, the mean time of the engine's evaluation, of the
Python evaluator's (``Evaluator.fired``: what the differential test runs 100,000 times), and
of one full ``Guideline.explain`` (evaluation, trace and models). The 100k differential test
needs engine + evaluator + preparation under ~1.2 ms per patient to stay within a minute on
two processes.
"""

from __future__ import annotations

import sys
import time

from all_rules import Guideline
from all_rules.cohort import synth
from all_rules.engine._evaluator import Evaluator
from all_rules.engine._guideline import validate_facts
from all_rules.engine._prepare import prepare


def main(count: int) -> None:
    guideline = Guideline.default()
    evaluator = Evaluator(guideline.ruleset)
    rows = list(synth.patients(count, 7))
    start = time.perf_counter()
    prepared = [prepare(validate_facts(row)).values for row in rows]
    prep = time.perf_counter() - start
    start = time.perf_counter()
    for values in prepared:
        guideline.engine.evaluate(values)
    engine = time.perf_counter() - start
    start = time.perf_counter()
    for values in prepared:
        evaluator.fired(values)
    python = time.perf_counter() - start
    sample = rows[: max(1, count // 10)]
    start = time.perf_counter()
    for row in sample:
        guideline.explain(row, "group.high")
    explain = time.perf_counter() - start
    print(f"{count:,} synthetic patients")
    print(f"validate + prepare   {prep / count * 1e6:8.1f} µs/patient")
    print(f"engine evaluate      {engine / count * 1e6:8.1f} µs/patient")
    print(f"python evaluator     {python / count * 1e6:8.1f} µs/patient")
    print(f"explain(group.high)  {explain / len(sample) * 1e6:8.1f} µs/patient "
          f"({len(sample):,} patients)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000)

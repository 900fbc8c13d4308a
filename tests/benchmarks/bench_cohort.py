"""Cohort throughput: synth, then cohort JSON Lines -> JSON Lines, against the I/O floor.

Run: ``python tests/benchmarks/bench_cohort.py [N] [--workers W]`` (default N = 1,000,000,
W = the machine's cores). Prints patients per second for the full run (read, validate,
evaluate the whole catalogue, write the explained assessment), the same for the I/O floor
(read + validate + write, no evaluation) measured in the same run with the same workers, the
ratio between them, and peak resident memory. Target on 2 cores: 1,000,000 in <= 60 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import _runtime  # tests/benchmarks/_runtime.py, beside this script

from all_rules.cohort import synth
from all_rules.cohort._io import GuidelineSpec, run_cohort


def _floor(source: Path, out: Path, workers: int) -> float:
    """The I/O floor: the cohort pipeline with evaluation switched off."""
    start = time.perf_counter()
    run_cohort(source, out, workers=workers, spec=GuidelineSpec(), evaluate=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="all-rules-bench-") as tmp:
        folder = Path(tmp)
        source, floor_out, out = (folder / "cohort.jsonl", folder / "floor.jsonl",
                                  folder / "assessed.jsonl")
        start = time.perf_counter()
        synth.write(source, args.count, args.seed, "jsonl")
        synth_seconds = time.perf_counter() - start

        floor_seconds = _floor(source, floor_out, args.workers)
        floor_out.unlink()

        start = time.perf_counter()
        run = run_cohort(source, out, workers=args.workers, spec=GuidelineSpec())
        seconds = time.perf_counter() - start

        size_in = source.stat().st_size / 2**20
        size_out = out.stat().st_size / 2**20
        parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    n = args.count
    print(_runtime.describe())
    print(f"cohort throughput, {n:,} synthetic patients, {args.workers} worker process(es), "
          f"{os.cpu_count()} cores")
    print(f"  synth (seed {args.seed}):            {synth_seconds:8.1f} s  ({size_in:,.0f} MiB)")
    print(f"  I/O floor (read+validate+write): {floor_seconds:8.1f} s  "
          f"{n / floor_seconds:10,.0f} patients/s")
    print(f"  cohort JSONL -> JSONL:           {seconds:8.1f} s  {n / seconds:10,.0f} patients/s"
          f"  ({size_out:,.0f} MiB out)")
    print(f"  ratio cohort / floor:            {seconds / floor_seconds:8.2f}x")
    print(f"  peak RSS: parent {parent:,.0f} MiB, largest worker {worker:,.0f} MiB, "
          f"upper bound for all processes {parent + args.workers * worker:,.0f} MiB")
    print(f"  rows: {run.summary.assessed:,} assessed, {run.summary.invalid:,} invalid, "
          f"{run.summary.engine_errors:,} engine errors")
    verdict = "meets" if seconds <= 60 * n / 1_000_000 else "MISSES"
    print(f"  target 1,000,000 in <= 60 s (scaled: {60 * n / 1_000_000:.0f} s): {verdict}")


if __name__ == "__main__":
    main()

"""diff throughput against one cohort run, on the same synthetic input, in one run.

Run: ``python tests/benchmarks/bench_diff.py [N] [--workers W] [--from RULES]``
(default N = 200,000; the target is stated for 1,000,000: pass ``1000000``). Times
``cohort`` (JSON Lines in, the explained assessment of every patient out) and ``diff``
(every patient assessed by both guidelines, the changed ones written) with the same
workers, and prints both and their ratio. Target: diff <= about 2 x cohort.

The ``to`` side is the shipped guideline; the ``from`` side is the shipped guideline with
``nci_wbc_10e9_per_l`` moved from 50 to 60 (a few per cent of patients change), or the
ruleset directory / shipped version given with ``--from``.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from all_rules.cohort import synth
from all_rules.cohort._compare import run_diff
from all_rules.cohort._io import GuidelineSpec, run_cohort
from all_rules.ruleset._versions import version_directory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", nargs="?", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--from", dest="old", metavar="RULES",
                        help="ruleset directory or shipped version (default: the shipped "
                             "guideline with nci_wbc_10e9_per_l = 60)")
    args = parser.parse_args()
    if args.old is None:
        old = GuidelineSpec(unsafe=(("nci_wbc_10e9_per_l", 60.0, "benchmark"),))
    else:
        directory = args.old if Path(args.old).is_dir() else str(version_directory(args.old))
        old = GuidelineSpec(rules=directory)
    with tempfile.TemporaryDirectory(prefix="all-rules-bench-") as tmp:
        folder = Path(tmp)
        source = folder / "cohort.jsonl"
        synth.write(source, args.count, args.seed, "jsonl")

        start = time.perf_counter()
        run_cohort(source, folder / "assessed.jsonl", workers=args.workers,
                   spec=GuidelineSpec())
        cohort_seconds = time.perf_counter() - start
        (folder / "assessed.jsonl").unlink()

        start = time.perf_counter()
        run = run_diff(source, folder / "changes.jsonl", old, GuidelineSpec(),
                       workers=args.workers)
        diff_seconds = time.perf_counter() - start
        changed = run.summary.changed.count
        size_out = (folder / "changes.jsonl").stat().st_size / 2**20
    n = args.count
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"diff against cohort, {n:,} synthetic patients (seed {args.seed}), "
          f"{args.workers} worker process(es), {os.cpu_count()} cores")
    print(f"  cohort (one guideline, every assessment written): {cohort_seconds:8.1f} s  "
          f"{n / cohort_seconds:10,.0f} patients/s")
    print(f"  diff (two guidelines, changes written):           {diff_seconds:8.1f} s  "
          f"{n / diff_seconds:10,.0f} patients/s")
    print(f"  ratio diff / cohort: {diff_seconds / cohort_seconds:.2f} (target <= about 2)")
    print(f"  changed patients: {changed:,} ({100 * changed / n:.1f} %), "
          f"{size_out:,.1f} MiB of changes")
    print(f"  peak RSS: parent {parent:,.0f} MiB, largest worker {worker:,.0f} MiB")


if __name__ == "__main__":
    main()

"""The ``all-rules diff`` and ``all-rules rules versions`` commands (docs/diff.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from all_rules.cohort._io import GuidelineSpec
from all_rules.cohort._read import CohortInputError
from all_rules.ruleset._versions import UnknownVersionError, version_digests, version_directory

from ._params import add_unsafe_options, distinct, unsafe_overrides


def add_diff_parser(commands: Any, parameter: Any, workers: int) -> None:
    """``diff``'s options; ``parameter`` parses ``NAME=VALUE`` (``_params.parameter``)."""
    diff = commands.add_parser(
        "diff", help="what changes between two guidelines, patient by patient",
        description="Assess every row under two guidelines (default: the shipped one on both "
                    "sides) and write one JSON line per patient whose assessment changed, or "
                    "per bad row. A summary table goes to stdout. RULES is a ruleset "
                    "directory or a shipped version (`all-rules rules versions`).")
    diff.add_argument("input", metavar="INPUT", type=Path)
    diff.add_argument("--out", metavar="CHANGES.jsonl", type=Path, required=True)
    for side in ("from", "to"):
        diff.add_argument(f"--{side}", dest=f"{side}_rules", metavar="RULES",
                          help="ruleset directory or shipped version (default: the shipped "
                               "guideline)")
        diff.add_argument(f"--{side}-overlay", metavar="FILE", type=Path,
                          help=f"overlay of parameter overrides for the `{side}` side")
        diff.add_argument(f"--{side}-param", metavar="NAME=VALUE", type=parameter,
                          action="append", default=[],
                          help=f"override one parameter on the `{side}` side (repeatable)")
    diff.add_argument("--param", metavar="NAME=VALUE", type=parameter, action="append",
                      default=[], help="override one parameter on both sides (repeatable)")
    add_unsafe_options(diff, ("", "from-", "to-"))
    diff.add_argument("--input-format", choices=("csv", "jsonl", "parquet"))
    diff.add_argument("--workers", type=int, default=workers,
                      help="worker processes, at most the usable cores (default: all of them)")
    diff.add_argument("--summary", metavar="PATH", type=Path,
                      help="also write the summary (JSON, or Markdown with --summary-format)")
    diff.add_argument("--summary-format", choices=("json", "markdown"), default="json")
    diff.add_argument("--report", metavar="PATH", type=Path,
                      help="also write a one-page HTML report with plots (docs/reports.md)")
    diff.add_argument("--quiet", action="store_true", help="no summary table on stdout")


def add_versions_parser(rule_commands: Any) -> None:
    versions = rule_commands.add_parser("versions",
                                        help="the shipped guideline versions and digests")
    versions.add_argument("--format", choices=("text", "json"), default="text")


def rules_versions(args: argparse.Namespace) -> int:
    found = version_digests()
    if args.format == "json":
        print(json.dumps([{"version": v.version, "digest": digest, "current": v.current}
                          for v, digest in found], indent=2))
    else:
        for shipped, digest in found:
            print(f"{shipped.version:<12} {digest}{'  (current)' if shipped.current else ''}")
    return 0


def _spec(rules: str | None, overlay: Path | None,
          params: list[tuple[str, float]], unsafe: dict[str, dict[str, Any]]) -> GuidelineSpec:
    directory: str | None = None
    if rules is not None:
        if Path(rules).is_dir():
            directory = rules
        else:
            try:
                directory = str(version_directory(rules))
            except UnknownVersionError as error:
                raise CohortInputError(f"{rules}: not a ruleset directory, and {error}"
                                       ) from None
    return GuidelineSpec(directory, str(overlay) if overlay else None,
                         tuple(sorted(distinct(params).items())),
                         tuple(sorted((name, item["value"], item["reason"])
                                      for name, item in unsafe.items())))


def _unsafe_sides(args: argparse.Namespace) -> tuple[dict[str, dict[str, Any]],
                                                     dict[str, dict[str, Any]]]:
    """The unsafe overrides of the `from` and `to` sides (``--unsafe-param`` on both)."""
    given = bool(args.unsafe_param or args.from_unsafe_param or args.to_unsafe_param)
    return (unsafe_overrides([*args.unsafe_param, *args.from_unsafe_param],
                             args.unsafe_reason, given),
            unsafe_overrides([*args.unsafe_param, *args.to_unsafe_param],
                             args.unsafe_reason, given))


def output_paths(args: argparse.Namespace) -> list[Path]:
    """Every path a diff run writes (the changes, and the summary and report if asked
    for)."""
    return [args.out, *(path for path in (args.summary, args.report) if path is not None)]


def run(args: argparse.Namespace, usable_cores: int, progress_bar: Any) -> int:
    from all_rules.cohort._compare import check_output_name, run_diff
    from all_rules.cohort._io import check_outputs, stderr_is_terminal
    from all_rules.cohort._io import output_paths as cohort_output_paths
    from all_rules.cohort._read import count_rows, format_of
    from all_rules.report._change_text import summary_markdown, summary_table

    if args.workers < 1:
        raise CohortInputError("--workers must be at least 1")
    if args.report is not None:  # fail before the run, not after it
        from all_rules.report._plots import require_matplotlib

        require_matplotlib()
    if args.workers > usable_cores:
        sys.stderr.write(f"all-rules: note: --workers {args.workers} on {usable_cores} usable "
                         f"cores: running {usable_cores}\n")
        args.workers = usable_cores
    old_unsafe, new_unsafe = _unsafe_sides(args)
    old = _spec(args.from_rules, args.from_overlay, [*args.param, *args.from_param], old_unsafe)
    new = _spec(args.to_rules, args.to_overlay, [*args.param, *args.to_param], new_unsafe)
    check_output_name(args.out)
    # File safety as for cohort: no output may be the input (by name or link), a directory,
    # or another output; checked before anything is read or written.
    check_outputs(args.input, [*cohort_output_paths(args.out, "jsonl"), *output_paths(args)[1:]])
    bar = None
    if stderr_is_terminal():
        in_fmt = format_of(args.input, args.input_format)
        bar = progress_bar(count_rows(args.input, in_fmt) if args.input.is_file() else None)
    try:
        result = run_diff(args.input, args.out, old, new, input_format=args.input_format,
                          workers=args.workers, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    data = result.summary.to_dict()
    if args.summary is not None:
        text = (summary_markdown(data) if args.summary_format == "markdown"
                else json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        args.summary.write_text(text, encoding="utf-8")
    if args.report is not None:
        from all_rules.report._diff import write_diff_report

        overlays = {side: path.name for side, path in (("from", args.from_overlay),
                                                        ("to", args.to_overlay)) if path}
        write_diff_report(args.report, data, source=args.input.name, overlays=overlays)
        print(f"wrote {args.report}", file=sys.stderr)
    if not args.quiet:
        sys.stdout.write(summary_table(data))
    for path in result.outputs:
        print(f"wrote {path}", file=sys.stderr)
    if result.interrupted:
        print(f"all-rules: interrupted; output holds the first {data['patients']:,} rows",
              file=sys.stderr)
        return 130
    if data["engine_errors"]:
        print(f"all-rules: {data['engine_errors']} row(s) failed in the engine",
              file=sys.stderr)
        return 1
    return 0

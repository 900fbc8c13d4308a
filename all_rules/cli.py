"""The ``all-rules`` command line.

Exit codes (docs/cli.md): 0 success; 2 invalid input (field errors on stderr); 1 anything else
(an invalid ruleset, an engine failure). Results go to stdout, diagnostics to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from ._cohort_io import CohortInputError
from ._describe import assessment_text, catalogue_markdown, describe_rule
from ._guideline import Guideline
from ._ruleset import check
from .exceptions import (
    AllRulesError,
    InvalidFactsError,
    RulesetLoadError,
    RulesetValidationError,
)
from .facts import PatientFacts
from .output import Assessment

EXIT_OK, EXIT_ERROR, EXIT_INVALID_INPUT = 0, 1, 2


class _InputError(Exception):
    """Input that cannot be read as one patient (exit 2)."""


def _parameter(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: not a number: {value!r}") from None


def _add_ruleset_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", metavar="DIR", type=Path,
                        help="ruleset directory (default: the shipped guideline)")
    parser.add_argument("--overlay", metavar="FILE", type=Path,
                        help="institution overlay: a YAML file of parameter overrides")
    parser.add_argument("--param", metavar="NAME=VALUE", type=_parameter, action="append",
                        default=[], help="override one parameter (repeatable)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="all-rules",
        description="ALL management guideline: explained, cited recommendations for a patient.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    assess = commands.add_parser("assess", help="assess one patient (a JSON object)")
    assess.add_argument("input", metavar="PATH|-", help="patient facts as JSON; - for stdin")
    assess.add_argument("--format", choices=("json", "text"), default="json")
    _add_ruleset_options(assess)

    rules = commands.add_parser("rules", help="list, show or check rules")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    listing = rule_commands.add_parser("list", help="every rule: id, kind, severity, phase")
    listing.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                         help="markdown: the full catalogue page (docs/catalogue.md)")
    _add_ruleset_options(listing)
    show = rule_commands.add_parser("show", help="one rule: condition in words, parameters")
    show.add_argument("rule_id", metavar="ID")
    _add_ruleset_options(show)
    checker = rule_commands.add_parser("check", help="validate a ruleset directory")
    checker.add_argument("path", metavar="PATH", nargs="?", type=Path,
                         help="ruleset directory (default: the shipped guideline)")
    checker.add_argument("--overlay", metavar="FILE", type=Path,
                         help="also check this overlay against the ruleset")

    cohort = commands.add_parser(
        "cohort", help="assess every row of a CSV, JSON Lines or Parquet file",
        description="Assess a cohort. JSON Lines output: one assessment (or row error) per "
                    "line. CSV/Parquet output: OUT's stem + .patients and .recommendations "
                    "tables. A summary table goes to stdout.")
    cohort.add_argument("input", metavar="INPUT", type=Path)
    cohort.add_argument("--out", metavar="OUTPUT", type=Path, required=True)
    cohort.add_argument("--input-format", choices=("csv", "jsonl", "parquet"))
    cohort.add_argument("--output-format", choices=("csv", "jsonl", "parquet"))
    cohort.add_argument("--workers", type=int, default=_usable_cores(),
                        help="worker processes, at most the usable cores (default: all of "
                             "them)")
    cohort.add_argument("--summary", metavar="PATH", type=Path,
                        help="also write the summary as JSON")
    cohort.add_argument("--quiet", action="store_true", help="no summary table on stdout")
    _add_ruleset_options(cohort)

    synth = commands.add_parser("synth", help="write a synthetic cohort (docs/cohorts.md)")
    synth.add_argument("count", metavar="N", type=int)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", metavar="PATH", type=Path, required=True)
    synth.add_argument("--format", choices=("csv", "jsonl", "parquet"),
                       help="default: from the extension of PATH")
    synth.add_argument("--missing-rate", type=float, default=0.05,
                       help="share of optional facts left unknown (default 0.05)")

    serve = commands.add_parser("serve", help="run the CDS Hooks service (docs/fhir.md)")
    serve.add_argument("--config", metavar="FILE", type=Path,
                       help="service settings (YAML): base_url, issuers and their JWK Sets")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--insecure", action="store_true",
                       help="accept unauthenticated requests: LOCAL TRIALS ONLY")

    schema = commands.add_parser("schema", help="JSON Schema of the facts and the output")
    schema.add_argument("which", nargs="?", choices=("facts", "assessment", "all"),
                        default="all")
    return parser


def _guideline(args: argparse.Namespace) -> Guideline:
    params = dict(args.param)
    if args.rules is None and args.overlay is None and not params:
        return Guideline.default()
    return Guideline.load(args.rules, parameters=params, overlay=args.overlay)


def _read_patient(source: str) -> Any:
    try:
        if source == "-":
            text = sys.stdin.buffer.read().decode("utf-8")
        else:
            text = Path(source).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise _InputError(f"{source}: no such file") from None
    except UnicodeDecodeError as error:
        raise _InputError(f"{source}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise _InputError(f"{source}: cannot read: {error.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise _InputError(f"{source}: not valid JSON: {error.msg} at line {error.lineno}, "
                          f"column {error.colno}") from None
    if isinstance(data, list):
        raise _InputError(f"{source}: expected one patient (a JSON object), got a list; "
                          "use `all-rules cohort` for many patients")
    return data


def _assess(args: argparse.Namespace) -> int:
    data = _read_patient(args.input)
    guideline = _guideline(args)
    assessment = guideline.assess(data)
    out = assessment_text(assessment) if args.format == "text" else assessment.to_json() + "\n"
    sys.stdout.write(out)
    return EXIT_OK


def _rules(args: argparse.Namespace) -> int:
    if args.rules_command == "check":
        ruleset, issues = check(args.path, overlay=args.overlay, policy=True)
        for issue in issues:
            print(issue)
        if ruleset is None:
            print(f"{len(issues)} issue(s) found", file=sys.stderr)
            return EXIT_ERROR
        print(f"ok: {ruleset.name} {ruleset.version}: {len(ruleset.rules)} rules in "
              f"{len(ruleset.files)} files, {len(ruleset.parameters)} parameters, "
              f"{ruleset.digest}")
        return EXIT_OK
    guideline = _guideline(args)
    ruleset = guideline.ruleset
    if args.rules_command == "list":
        rows = [{"id": r.spec.id, "variant": r.spec.variant, "concludes": r.spec.concludes.value,
                 "kind": r.spec.kind.value if r.spec.kind else None,
                 "severity": r.spec.severity.value if r.spec.severity else None,
                 "phase": r.spec.phase.value if r.spec.phase else None,
                 "title": r.spec.title, "file": r.file} for r in ruleset.rules]
        if args.format == "json":
            print(json.dumps(rows, indent=2, ensure_ascii=False))
        elif args.format == "markdown":
            sys.stdout.write(catalogue_markdown(ruleset))
        else:
            for row in rows:
                key = str(row["id"]) + (f"#{row['variant']}" if row["variant"] else "")
                what = row["kind"] or row["concludes"]
                print(f"{key:<48} {what:<14} {row['severity'] or '-':<9} "
                      f"{row['phase'] or '-':<20} {row['title']}")
        return EXIT_OK
    rules = guideline.rule(args.rule_id)
    if not rules:
        from ._conditions import suggest

        print(f"all-rules: no rule `{args.rule_id}`"
              f"{suggest(args.rule_id, {r.spec.id for r in ruleset.rules})}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    print("\n\n".join("\n".join(describe_rule(rule, ruleset)) for rule in rules))
    return EXIT_OK


def _usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _cohort(args: argparse.Namespace) -> int:
    from ._cohort_io import (
        GuidelineSpec,
        count_rows,
        format_of,
        run_cohort,
        stderr_is_terminal,
    )

    if args.workers < 1:
        raise _InputError("--workers must be at least 1")
    cores = _usable_cores()
    if args.workers > cores:
        # Like `xz -T`: the work is CPU-bound, so processes beyond the cores only cost
        # memory (about 70 MiB each) and time; the output is the same for any count.
        sys.stderr.write(f"all-rules: note: --workers {args.workers} on {cores} usable cores: "
                         f"running {cores} (more would be slower and cost about 70 MiB "
                         "each)\n")
        args.workers = cores
    spec = GuidelineSpec(str(args.rules) if args.rules else None,
                         str(args.overlay) if args.overlay else None,
                         tuple(sorted(dict(args.param).items())))
    bar: _Progress | None = None
    if stderr_is_terminal():
        in_fmt = format_of(args.input, args.input_format)
        bar = _Progress(count_rows(args.input, in_fmt) if args.input.is_file() else None)
    try:
        run = run_cohort(args.input, args.out, input_format=args.input_format,
                         output_format=args.output_format, workers=args.workers, spec=spec,
                         progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    if args.summary is not None:
        args.summary.write_text(run.summary.to_json() + "\n", encoding="utf-8")
    if not args.quiet:
        sys.stdout.write(run.summary.table())
    for path in run.outputs:
        print(f"wrote {path}", file=sys.stderr)
    if run.interrupted:
        print(f"all-rules: interrupted; output holds the first {run.summary.patients:,} rows",
              file=sys.stderr)
        return 130
    if run.summary.engine_errors:
        print(f"all-rules: {run.summary.engine_errors} row(s) failed in the engine",
              file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


class _Progress:
    """A one-line progress bar on stderr: count, bar, rate and ETA (drawn on a terminal)."""

    def __init__(self, total: int | None, interval: float = 0.2) -> None:
        self.total, self.done, self.interval = total, 0, interval
        self.start = self.drawn = time.monotonic()

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.drawn >= self.interval:
            self.drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        line = f"{self.done:,} patients, {rate:,.0f} patients/s, {_clock(elapsed)} elapsed"
        if self.total:
            share = min(1.0, self.done / self.total)
            width = 24
            filled = int(share * width)
            eta = (self.total - self.done) / rate if rate else 0.0
            line = (f"{share:4.0%} |{'#' * filled}{'.' * (width - filled)}| "
                    f"{self.done:,}/{self.total:,}, {rate:,.0f} patients/s, ETA {_clock(eta)}")
        columns = shutil.get_terminal_size(fallback=(100, 24)).columns or 100
        sys.stderr.write("\r" + line[: columns - 1].ljust(columns - 1))
        sys.stderr.flush()

    def close(self) -> None:
        self._draw(time.monotonic())
        sys.stderr.write("\n")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _synth(args: argparse.Namespace) -> int:
    from . import synth
    from ._cohort_io import format_of

    if args.count < 0:
        raise _InputError("N must be 0 or more")
    fmt = format_of(args.out, args.format)
    synth.write(args.out, args.count, args.seed, fmt, args.missing_rate)
    print(f"wrote {args.count:,} synthetic patients to {args.out}", file=sys.stderr)
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .cds import ServiceSettings, create_app
    except ImportError:
        raise _InputError("the service needs: pip install 'all-rules[serve]'") from None
    if args.config is not None:
        settings = ServiceSettings.load(args.config)
    elif args.insecure:
        settings = ServiceSettings(base_url=f"http://{args.host}:{args.port}")
    else:
        raise _InputError("give --config (issuers and keys), or --insecure for a local trial")
    if args.insecure:
        settings = settings.model_copy(update={"insecure": True})
        print("all-rules: WARNING: INSECURE MODE — requests are not authenticated. Local "
              "trials only; never expose this port.", file=sys.stderr)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    schemas = {"facts": PatientFacts.model_json_schema(),
               "assessment": Assessment.model_json_schema(mode="serialization")}
    out = schemas if args.which == "all" else schemas[args.which]
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return EXIT_OK


def _fail(message: str, code: int) -> NoReturn:
    print(f"all-rules: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``all-rules`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "assess":
            return _assess(args)
        if args.command == "rules":
            return _rules(args)
        if args.command == "cohort":
            return _cohort(args)
        if args.command == "synth":
            return _synth(args)
        if args.command == "serve":
            return _serve(args)
        return _schema(args)
    except (_InputError, CohortInputError) as error:
        _fail(str(error), EXIT_INVALID_INPUT)
    except InvalidFactsError as error:
        _fail(str(error), EXIT_INVALID_INPUT)
    except (RulesetValidationError, RulesetLoadError) as error:
        _fail(str(error), EXIT_ERROR)
    except AllRulesError as error:
        _fail(str(error), EXIT_ERROR)
    except BrokenPipeError:
        # `all-rules … | head`: the reader left; that is not an error of ours.
        sys.stderr.close()
        return EXIT_OK
    except OSError as error:  # the output's folder is missing, the disk is full, …
        where = f"{error.filename}: " if error.filename else ""
        _fail(f"{where}{error.strerror or error}", EXIT_ERROR)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

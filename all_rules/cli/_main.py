"""The ``all-rules`` command line.

Exit codes (docs/cli.md): 0 success; 2 invalid input (field errors on stderr); 1 anything else
(an invalid ruleset, an engine failure). Results go to stdout, diagnostics to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from all_rules import __version__
from all_rules.cohort._read import CohortInputError
from all_rules.engine._guideline import Guideline
from all_rules.engine._input import (
    DEFAULT_LIMIT,
    LIMIT_VARIABLE,
    excerpt,
    printable,
    read_bounded_json,
)
from all_rules.exceptions import (
    AllRulesError,
    InvalidFactsError,
    InvalidParameterError,
    RulesetLoadError,
    RulesetValidationError,
    UnreadableInputError,
)
from all_rules.facts import PatientFacts
from all_rules.output import Assessment
from all_rules.report._describe import assessment_text, catalogue_markdown, describe_rule
from all_rules.ruleset._loader import check

from . import _diff
from ._params import add_unsafe_options, distinct, parameter, unsafe_overrides

if TYPE_CHECKING:
    from all_rules.cohort._io import CohortRun, GuidelineSpec

EXIT_OK, EXIT_ERROR, EXIT_INVALID_INPUT = 0, 1, 2


class _InputError(Exception):
    """Input that cannot be read as one patient (exit 2)."""


def _byte_count(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive number of bytes: {excerpt(text)}")
    return int(text)


def _add_ruleset_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", metavar="DIR", type=Path,
                        help="ruleset directory (default: the shipped guideline)")
    parser.add_argument("--overlay", metavar="FILE", type=Path,
                        help="institution overlay: a YAML file of parameter overrides")
    parser.add_argument("--param", metavar="NAME=VALUE", type=parameter, action="append",
                        default=[], help="override one parameter within its safe range "
                                         "(repeatable)")
    add_unsafe_options(parser)


def _add_input_limit_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-input-bytes", metavar="N", type=_byte_count,
                        help="refuse input larger than N bytes (default: "
                             f"${LIMIT_VARIABLE}, else {DEFAULT_LIMIT:,})")


def _parser() -> argparse.ArgumentParser:
    """The whole command line; each command's options are set by its own function below, in
    the order ``all-rules --help`` lists the commands."""
    parser = argparse.ArgumentParser(
        prog="all-rules",
        description="ALL management guideline: explained, cited recommendations for a patient.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_assess_parser(commands)
    _add_explain_parser(commands)
    _add_rules_parser(commands)
    _add_cohort_parser(commands)
    _diff.add_diff_parser(commands, parameter, _usable_cores())
    _add_synth_parser(commands)
    _add_serve_parser(commands)
    _add_schema_parser(commands)
    return parser


def _add_assess_parser(commands: Any) -> None:
    assess = commands.add_parser("assess", help="assess one patient (a JSON object)")
    assess.add_argument("input", metavar="PATH|-", help="patient facts as JSON; - for stdin")
    assess.add_argument("--format", choices=("json", "text", "html"), default="json",
                        help="html: a self-contained one-page report (docs/reports.md)")
    assess.add_argument("--why-not", metavar="RULE_ID", action="append", default=[],
                        help="also explain why this rule fired or not (repeatable; "
                             "docs/explain.md)")
    _add_input_limit_option(assess)
    _add_ruleset_options(assess)


def _add_explain_parser(commands: Any) -> None:
    explain = commands.add_parser("explain", help="why a rule fired for a patient, or why not")
    explain.add_argument("input", metavar="PATH|-", help="patient facts as JSON; - for stdin")
    explain.add_argument("rule_id", metavar="RULE_ID")
    explain.add_argument("--format", choices=("json", "text", "html"), default="text")
    _add_input_limit_option(explain)
    _add_ruleset_options(explain)


def _add_rules_parser(commands: Any) -> None:
    """``rules list | show | check | versions``."""
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
    _diff.add_versions_parser(rule_commands)


def _add_cohort_parser(commands: Any) -> None:
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
    cohort.add_argument("--report", metavar="PATH", type=Path,
                        help="also write a one-page HTML report with plots (docs/reports.md)")
    cohort.add_argument("--quiet", action="store_true", help="no summary table on stdout")
    _add_ruleset_options(cohort)


def _add_synth_parser(commands: Any) -> None:
    synth = commands.add_parser("synth", help="write a synthetic cohort (docs/cohorts.md)")
    synth.add_argument("count", metavar="N", type=int)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", metavar="PATH", type=Path, required=True)
    synth.add_argument("--format", choices=("csv", "jsonl", "parquet"),
                       help="default: from the extension of PATH")
    synth.add_argument("--missing-rate", type=float, default=0.05,
                       help="share of optional facts left unknown (default 0.05)")


def _add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the CDS Hooks service (docs/fhir.md)")
    serve.add_argument("--config", metavar="FILE", type=Path,
                       help="service settings (YAML): base_url, issuers and their JWK Sets, "
                            "fhir_servers, limits (docs/fhir.md, docs/security.md)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--insecure", action="store_true",
                       help="accept unauthenticated requests (and never fetch from a FHIR "
                            "server): LOCAL TRIALS ONLY")


def _add_schema_parser(commands: Any) -> None:
    schema = commands.add_parser("schema", help="JSON Schema of the facts and the output")
    schema.add_argument("which", nargs="?", choices=("facts", "assessment", "all"),
                        default="all")


def _guideline(args: argparse.Namespace) -> Guideline:
    params = distinct(args.param)
    unsafe = _unsafe_of(args)
    if args.rules is None and args.overlay is None and not params and not unsafe:
        return Guideline.default()
    return Guideline.load(args.rules, parameters=params, overlay=args.overlay,
                          unsafe_overrides=unsafe)


def _unsafe_of(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return unsafe_overrides(args.unsafe_param, args.unsafe_reason)


def _read_patient(source: str, limit: int | None) -> Any:
    data = read_bounded_json(source, limit)
    if isinstance(data, list):
        raise _InputError(f"{source}: expected one patient (a JSON object), got a list; "
                          "use `all-rules cohort` for many patients")
    return data


def _assess(args: argparse.Namespace) -> int:
    data = _read_patient(args.input, args.max_input_bytes)
    guideline = _guideline(args)
    assessment = guideline.assess(data)
    if args.why_not or args.format == "html":
        from ._explain import assess_explained

        sys.stdout.write(assess_explained(guideline, data, assessment, args.why_not,
                                          args.format))
        return EXIT_OK
    if args.format == "text":
        if assessment.patient_id is not None:  # an id cannot forge a line of the report
            assessment = assessment.model_copy(
                update={"patient_id": printable(assessment.patient_id)})
        out = assessment_text(assessment)
    else:
        out = assessment.to_json() + "\n"
    sys.stdout.write(out)
    return EXIT_OK


def _rules(args: argparse.Namespace) -> int:
    if args.rules_command == "versions":
        return _diff.rules_versions(args)
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
        from all_rules.ruleset._conditions import suggest

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
    """``all-rules cohort``: check the options, run the cohort (a signal stops it, keeping
    whole chunks), then write the summary and report and say how it went (the exit code)."""
    from all_rules.cohort._io import run_cohort

    _check_cohort_options(args)
    spec = _cohort_spec(args)
    bar = _cohort_progress(args)
    stopped_by: list[int] = []
    previous = _stop_on_signals(stopped_by)
    try:
        run = run_cohort(args.input, args.out, input_format=args.input_format,
                         output_format=args.output_format, workers=args.workers, spec=spec,
                         progress=bar.update if bar is not None else None,
                         also_writes=_cohort_side_outputs(args))
    except KeyboardInterrupt:  # before the output was opened: there is nothing to keep
        print("all-rules: interrupted before any output was written", file=sys.stderr)
        return 128 + (stopped_by[0] if stopped_by else signal.SIGINT)
    finally:
        _restore_signals(previous)
        if bar is not None:
            bar.close()
    _write_cohort_extras(args, run, spec)
    return _cohort_outcome(args, run, stopped_by)


def _check_cohort_options(args: argparse.Namespace) -> None:
    """Refuse bad options before any work (a --report that could not be drawn included), and
    cap --workers at the usable cores."""
    if args.workers < 1:
        raise _InputError("--workers must be at least 1")
    if args.report is not None:  # fail before the run, not after it
        from all_rules.report._plots import require_matplotlib

        require_matplotlib()
    cores = _usable_cores()
    if args.workers > cores:
        # Like `xz -T`: the work is CPU-bound, so processes beyond the cores only cost
        # memory (about 70 MiB each) and time; the output is the same for any count.
        sys.stderr.write(f"all-rules: note: --workers {args.workers} on {cores} usable cores: "
                         f"running {cores} (more would be slower and cost about 70 MiB "
                         "each)\n")
        args.workers = cores


def _cohort_spec(args: argparse.Namespace) -> GuidelineSpec:
    """The guideline as each worker process loads it again (--rules, --overlay, --param)."""
    from all_rules.cohort._io import GuidelineSpec

    return GuidelineSpec(str(args.rules) if args.rules else None,
                         str(args.overlay) if args.overlay else None,
                         tuple(sorted(distinct(args.param).items())),
                         tuple(sorted((name, item["value"], item["reason"])
                                      for name, item in _unsafe_of(args).items())))


def _cohort_progress(args: argparse.Namespace) -> _Progress | None:
    """A progress bar when stderr is a terminal; its total when the input can be counted."""
    from all_rules.cohort._io import stderr_is_terminal
    from all_rules.cohort._read import count_rows, format_of

    if not stderr_is_terminal():
        return None
    in_fmt = format_of(args.input, args.input_format)
    return _Progress(count_rows(args.input, in_fmt) if args.input.is_file() else None)


def _write_cohort_extras(args: argparse.Namespace, run: CohortRun, spec: GuidelineSpec) -> None:
    """The outputs asked for besides the tables: --summary (JSON) and --report (HTML)."""
    if args.summary is not None:
        _write_whole(args.summary, run.summary.to_json() + "\n")
    if args.report is not None:
        from all_rules.report._cohort import write_cohort_report

        write_cohort_report(args.report, run.summary.to_dict(), spec.load().ruleset,
                            source=args.input.name)
        print(f"wrote {args.report}", file=sys.stderr)


def _cohort_outcome(args: argparse.Namespace, run: CohortRun, stopped_by: list[int]) -> int:
    """The summary table, the files written, and the exit code: 128 + the signal when the
    run was stopped, 1 when any row failed in the engine."""
    if not args.quiet:
        sys.stdout.write(run.summary.table())
    for path in run.outputs:
        print(f"wrote {path}", file=sys.stderr)
    if run.interrupted:
        print(f"all-rules: interrupted; output holds the first {run.summary.patients:,} rows",
              file=sys.stderr)
        return 128 + (stopped_by[0] if stopped_by else signal.SIGINT)
    if run.summary.engine_errors:
        print(f"all-rules: {run.summary.engine_errors} row(s) failed in the engine",
              file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _stop_on_signals(stopped_by: list[int]) -> dict[int, Any]:
    """SIGTERM and SIGHUP stop a cohort run as Ctrl-C does (whole chunks kept, workers
    stopped, spools removed; exit 128 + the signal), unless the signal was ignored when the
    process started (nohup; Python likewise leaves an ignored SIGINT ignored). (Python
    ignores SIGXFSZ from the start, so a file-size limit is an OSError: exit 1, nothing
    partial.) Returns the handlers to restore."""

    def stop(signum: int, _: Any) -> None:
        if not stopped_by:
            stopped_by.append(signum)
            raise KeyboardInterrupt

    hangup = getattr(signal, "SIGHUP", None)  # not on Windows
    # A signal ignored when the process started stays ignored: `nohup all-rules cohort …`
    # must survive its terminal's hangup, as any Unix tool started under nohup does.
    previous: dict[int, Any] = {signum: signal.signal(signum, stop)
                                for signum in (signal.SIGTERM, hangup)
                                if signum is not None
                                and signal.getsignal(signum) is not signal.SIG_IGN}
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    """Put back the handlers ``_stop_on_signals`` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a full disk leaves no partial file)."""
    temp = _temporary(path)
    temp.unlink(missing_ok=True)
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _cohort_side_outputs(args: argparse.Namespace) -> list[Path]:
    """Files a cohort run writes besides its tables; all are checked against the input
    (``check_outputs``) before anything is written. A new output option joins here."""
    return [p for path in (args.summary, args.report) if path is not None
            for p in (path, _temporary(path))]


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


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
    from all_rules.cohort import synth
    from all_rules.cohort._read import format_of

    if args.count < 0:
        raise _InputError("N must be 0 or more")
    fmt = format_of(args.out, args.format)
    if fmt == "parquet":
        from all_rules.cohort._read import pyarrow_module

        pyarrow_module()  # the extra to install, before any work
    synth.write(args.out, args.count, args.seed, fmt, args.missing_rate)
    print(f"wrote {args.count:,} synthetic patients to {args.out}", file=sys.stderr)
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    try:
        import fhir.resources  # noqa: F401 - every call maps FHIR

        from all_rules.cds._serve import serve
        from all_rules.cds._service import ServiceSettings
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
    serve(settings, args.host, args.port)
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


def _ruleset_exit(args: argparse.Namespace,
                  error: RulesetValidationError | RulesetLoadError) -> int:
    """2 when only the overlay given with --overlay is at fault (input to this command, like
    --param); 1 for a broken ruleset. `rules check` reports issues with 1 in any case."""
    overlay = getattr(args, "overlay", None)
    if overlay is None or args.command == "rules":
        return EXIT_ERROR
    files = ({issue.file for issue in error.issues} if isinstance(error, RulesetValidationError)
             else {error.file})
    return EXIT_INVALID_INPUT if files == {str(overlay)} else EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``all-rules`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "assess":
            return _assess(args)
        if args.command == "rules":
            return _rules(args)
        if args.command == "explain":
            from ._explain import explain_command

            return explain_command(args, _read_patient(args.input, args.max_input_bytes),
                                   _guideline(args))
        if args.command == "cohort":
            return _cohort(args)
        if args.command == "diff":
            stopped_by: list[int] = []
            previous = _stop_on_signals(stopped_by)  # SIGTERM, SIGHUP: as Ctrl-C, as cohort
            try:
                code = _diff.run(args, _usable_cores(), _Progress)
            except KeyboardInterrupt:
                print("all-rules: interrupted before any output was written", file=sys.stderr)
                code = 130
            finally:
                _restore_signals(previous)
            return 128 + stopped_by[0] if stopped_by and code == 130 else code
        if args.command == "synth":
            return _synth(args)
        if args.command == "serve":
            return _serve(args)
        return _schema(args)
    except (_InputError, CohortInputError, UnreadableInputError) as error:
        _fail(str(error), EXIT_INVALID_INPUT)
    except InvalidFactsError as error:
        _fail(str(error), EXIT_INVALID_INPUT)
    except InvalidParameterError as error:  # a refused override is input to this command
        _fail(str(error), EXIT_INVALID_INPUT)
    except (RulesetValidationError, RulesetLoadError) as error:
        _fail(str(error), _ruleset_exit(args, error))
    except AllRulesError as error:
        _fail(str(error), EXIT_ERROR)
    except BrokenPipeError:
        # `all-rules … | head`: the reader left; that is not an error of ours.
        sys.stderr.close()
        return EXIT_OK
    except OSError as error:  # the output's folder is missing, the disk is full, …
        where = f"{error.filename}: " if error.filename else ""
        _fail(f"{where}{error.strerror or error}", EXIT_ERROR)


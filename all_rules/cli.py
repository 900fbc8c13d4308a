"""The ``all-rules`` command line.

Exit codes (SPEC §4): 0 success; 2 invalid input (field errors on stderr); 1 anything else
(an invalid ruleset, an engine failure). Results go to stdout, diagnostics to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
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
        ruleset, issues = check(args.path, overlay=args.overlay)
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
        return _schema(args)
    except _InputError as error:
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

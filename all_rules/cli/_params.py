"""Parameter overrides on the command line: ``--param NAME=VALUE`` (inside the parameter's safe
range) and ``--unsafe-param NAME=VALUE`` with the ``--unsafe-reason TEXT`` it needs (outside
it; docs/cli.md, docs/ruleset-format.md)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from all_rules.cohort._records import record_value
from all_rules.engine._input import excerpt
from all_rules.exceptions import InvalidParameterError, RulesetIssue

__all__ = ["add_unsafe_options", "distinct", "parameter", "unsafe_overrides"]


def parameter(text: str) -> tuple[str, float]:
    """``NAME=VALUE``: a name and a plain finite decimal, as in a CSV cell (no nan, inf, 4_0)."""
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {excerpt(text)}")
    try:
        return name.strip(), float(record_value("float", value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{excerpt(name)}: not a finite number: "
                                         f"{excerpt(value)}") from None


def add_unsafe_options(parser: argparse.ArgumentParser, sides: Sequence[str] = ("",)) -> None:
    """``--unsafe-param`` (``--from-unsafe-param``, … for each side: repeatable) and the one
    ``--unsafe-reason TEXT`` they need."""
    for side in sides:
        where = f" on the `{side[:-1]}` side" if side else ""
        parser.add_argument(f"--{side}unsafe-param", metavar="NAME=VALUE", type=parameter,
                            action="append", default=[],
                            help=f"override one parameter outside its safe range{where} "
                                 "(repeatable): needs --unsafe-reason; every assessment "
                                 "shows it")
    parser.add_argument("--unsafe-reason", metavar="TEXT",
                        help="why the --unsafe-param values are used (required with them)")


def _refused(message: str, option: str = "--unsafe-param") -> InvalidParameterError:
    return InvalidParameterError([RulesetIssue(option, None, None, "", message)])


def distinct(pairs: Sequence[tuple[str, float]], option: str = "--param") -> dict[str, float]:
    """The overrides by name; InvalidParameterError (exit 2) for a name given twice, which
    would otherwise keep the last value without a word."""
    values: dict[str, float] = {}
    for name, value in pairs:
        if name in values and values[name] != value:
            raise _refused(f"{name} is given twice ({values[name]:g} and {value:g}); give "
                           "each parameter once", option)
        values[name] = value
    return values


def unsafe_overrides(pairs: Sequence[tuple[str, float]], reason: str | None,
                     any_given: bool | None = None) -> dict[str, dict[str, Any]]:
    """The ``--unsafe-param`` values with their ``--unsafe-reason``, as
    ``Guideline.load(unsafe_overrides=…)`` takes them. InvalidParameterError (exit 2) for
    values without a reason, or a reason without values (``any_given``: whether any side
    has values, for ``diff``)."""
    given = bool(pairs) if any_given is None else any_given
    if given and (reason is None or not reason.strip()):
        raise _refused("--unsafe-param needs --unsafe-reason TEXT (not empty): say why a "
                       "value outside the safe range is used")
    if reason is not None and not given:
        raise _refused("--unsafe-reason is given without --unsafe-param")
    return {name: {"value": value, "reason": reason}
            for name, value in distinct(pairs, "--unsafe-param").items()}

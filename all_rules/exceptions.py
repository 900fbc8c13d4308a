"""One exception hierarchy for everything all-rules raises on purpose.

``AllRulesError`` is the base. Callers who only want to tell bad input from a broken
ruleset from an engine failure catch one of the three branches below it.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

__all__ = [
    "AllRulesError",
    "EvaluationError",
    "FieldError",
    "InvalidFactsError",
    "InvalidParameterError",
    "RulesetError",
    "RulesetIssue",
    "RulesetLoadError",
    "RulesetValidationError",
    "UnreadableInputError",
]


class AllRulesError(Exception):
    """Base class of every error all-rules raises deliberately."""


@attrs.frozen
class FieldError:
    """One problem with one input field.

    ``field`` is a dotted path (``plan.doses[0].unit``); ``message`` says what is wrong and,
    where useful, the offending value of that field (and nothing else from the patient).
    """

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidFactsError(AllRulesError, ValueError):
    """Patient facts were refused; ``errors`` names every offending field."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"invalid patient facts ({len(self.errors)} error(s)):\n{lines}")


class UnreadableInputError(AllRulesError, ValueError):
    """Input that cannot be read as data at all: too large, not UTF-8, not (strict) JSON.
    The message names the source and echoes at most a short excerpt of what was wrong."""


@attrs.frozen
class RulesetIssue:
    """One problem found in a ruleset file, with where it is."""

    file: str
    line: int | None
    rule_id: str | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line is not None else "")
        parts = [f"rule {self.rule_id}" if self.rule_id else "", f"at {self.path}" if self.path
                 else ""]
        context = " ".join(part for part in parts if part)
        return f"{where}: {context}: {self.message}" if context else f"{where}: {self.message}"


class RulesetError(AllRulesError):
    """Base class of errors about the rulesets themselves (not about a patient)."""


class RulesetLoadError(RulesetError):
    """A ruleset file or overlay could not be read or parsed at all."""

    def __init__(self, file: str, line: int | None, problem: str) -> None:
        self.file = file
        self.line = line
        self.problem = problem
        where = file + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {problem}")


class RulesetValidationError(RulesetError):
    """The ruleset was read but is not valid; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[RulesetIssue]) -> None:
        self.issues: tuple[RulesetIssue, ...] = tuple(issues)
        lines = "\n".join(f"  {i}" for i in self.issues)
        super().__init__(f"ruleset is invalid ({len(self.issues)} issue(s)):\n{lines}")


class InvalidParameterError(RulesetValidationError, ValueError):
    """A parameter override was refused: an unknown name, a value that is not a finite
    number, outside the parameter's hard limits, or outside its safe range without being
    stated as an unsafe override with a reason (docs/ruleset-format.md). Each issue names the
    parameter, the value and the range. It is bad input, as ``InvalidFactsError`` is (a
    ``ValueError``; the CLI exits 2), and a ``RulesetValidationError`` as before, so existing
    ``except`` clauses keep working."""

    def __init__(self, issues: Sequence[RulesetIssue]) -> None:
        super().__init__(issues)
        lines = "\n".join(f"  {i}" for i in self.issues)
        self.args = (f"parameter override refused ({len(self.issues)} issue(s)):\n{lines}",)


class EvaluationError(AllRulesError, RuntimeError):
    """The rule engine failed; no partial result is ever returned in its place."""

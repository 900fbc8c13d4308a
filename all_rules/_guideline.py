"""A loaded guideline: checked ruleset + compiled engine, and the assessment of one patient."""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ._assemble import Assembler, Selection
from ._conditions import suggest
from ._engine import Engine
from ._prepare import PreparedFacts, prepare
from ._ruleset import Rule, Ruleset, load
from .exceptions import FieldError, InvalidFactsError
from .facts import PatientFacts, Plan
from .output import Assessment, RulesetInfo, _trusted

__all__ = ["Guideline", "assess", "validate_facts"]


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(facts)"


def _field_error(item: Mapping[str, Any]) -> FieldError:
    loc = tuple(item["loc"])
    path = _field_path(loc)
    kind = item["type"]
    value = item.get("input")
    if kind == "extra_forbidden":
        known = Plan.model_fields if loc[:1] == ("plan",) else PatientFacts.model_fields
        return FieldError(path, f"unknown field{suggest(str(loc[-1]), known)}")
    if kind == "missing":
        return FieldError(path, "is required")
    message = str(item["msg"]).removeprefix("Value error, ")
    # The value is echoed only for one field at fault, never for the whole record.
    if loc and kind != "value_error" and not isinstance(value, dict | list | bytes):
        message += f" (got {value!r})"
    return FieldError(path, message)


def field_errors(error: ValidationError) -> list[FieldError]:
    """pydantic's errors as FieldErrors that name the field and the offending value only."""
    return [_field_error(item) for item in error.errors()]


def validate_facts(facts: PatientFacts | Mapping[str, Any]) -> PatientFacts:
    """Check one patient's facts; raise InvalidFactsError naming every offending field."""
    if isinstance(facts, PatientFacts):
        return facts
    if not isinstance(facts, Mapping):
        raise InvalidFactsError([FieldError("(facts)", "must be a JSON object / mapping, got "
                                             f"{type(facts).__name__}")])
    try:
        return PatientFacts.model_validate(dict(facts))
    except ValidationError as error:
        raise InvalidFactsError(field_errors(error)) from None


class Guideline:
    """The ALL guideline, loaded, checked and compiled; ``assess`` is thread-safe."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.engine = Engine(ruleset)
        self.info = _trusted(RulesetInfo, {"name": ruleset.name, "version": ruleset.version,
                                           "digest": ruleset.digest})
        self._assembler = Assembler(ruleset, self.info)

    @classmethod
    def load(cls, directory: str | Path | None = None, *,
             parameters: Mapping[str, float] | None = None,
             overlay: str | Path | None = None) -> Guideline:
        """Load a ruleset directory (default: the shipped guideline), with institution
        parameter overrides given directly and/or as an overlay YAML file."""
        return cls(load(Path(directory) if directory is not None else None, parameters,
                        Path(overlay) if overlay is not None else None))

    @classmethod
    def default(cls) -> Guideline:
        """The shipped guideline with default parameters (loaded once per process)."""
        return _default()

    def close(self) -> None:
        self.engine.close()

    def rule(self, rule_id: str) -> list[Rule]:
        """The rule (and its variants) with this id."""
        return [rule for rule in self.ruleset.rules if rule.spec.id == rule_id]

    def _evaluate(self, facts: PatientFacts | Mapping[str, Any]) -> tuple[PreparedFacts,
                                                                          Selection]:
        prepared = prepare(validate_facts(facts))
        fired = self.engine.evaluate(prepared.values)
        return prepared, self._assembler.select(fired)

    def assess(self, facts: PatientFacts | Mapping[str, Any]) -> Assessment:
        """The guideline's recommendations for one patient.

        Raises InvalidFactsError for bad input and EvaluationError when the engine fails;
        never returns a partial result.
        """
        return self._assembler.model(*self._evaluate(facts))

    def assess_json(self, facts: PatientFacts | Mapping[str, Any]) -> str:
        """``assess(facts).to_json(indent=None)``, written directly: for cohorts, where
        building the models would cost more than the rule engine."""
        return self._assembler.json(*self._evaluate(facts))

    def assess_json_and_selection(self, facts: PatientFacts | Mapping[str, Any]
                                  ) -> tuple[str, Selection]:
        """``assess_json`` and the selection it was written from (for cohort counts)."""
        prepared, selection = self._evaluate(facts)
        return self._assembler.json(prepared, selection), selection

    def assess_ids(self, facts: PatientFacts | Mapping[str, Any]) -> Selection:
        """Only what fires: the risk group, features, missing facts and the items with
        their rules, without wording (for tabular cohort output)."""
        return self._evaluate(facts)[1]


_default_lock = threading.Lock()


@functools.cache
def _default_cached() -> Guideline:
    return Guideline.load()


def _default() -> Guideline:
    with _default_lock:
        return _default_cached()


def assess(facts: PatientFacts | Mapping[str, Any], *,
           guideline: Guideline | None = None) -> Assessment:
    """Assess one patient against the guideline (the shipped one unless ``guideline`` given).

    ``facts`` is a :class:`PatientFacts` or a plain mapping of the fields in docs/facts.md.
    """
    return (guideline or Guideline.default()).assess(facts)


"""A loaded guideline: checked ruleset + compiled engine, and the assessment of one patient."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from all_rules.exceptions import FieldError, InvalidFactsError, RulesetLoadError
from all_rules.facts import PatientFacts, Plan
from all_rules.output import (
    Assessment,
    ParameterOverride,
    RulesetInfo,
    _trusted,
    provide_shipped_guideline,
)
from all_rules.ruleset._conditions import suggest
from all_rules.ruleset._loader import load
from all_rules.ruleset._model import Rule, Ruleset

from ._assemble import Assembler
from ._evaluator import Evaluator
from ._explainer import Explainer
from ._explanation import Explanation, RuleExplanation
from ._input import excerpt
from ._network import Engine
from ._prepare import PreparedFacts, prepare
from ._select import Selection

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
    if len(path) > 100:  # a field name is the sender's text: echoed within bounds too
        path = f"{path[:100]}… ({len(path):,} characters)"
    if kind == "extra_forbidden":
        known = Plan.model_fields if loc[:1] == ("plan",) else PatientFacts.model_fields
        name = str(loc[-1])
        return FieldError(path, f"unknown field{suggest(name, known) if len(name) < 100 else ''}")
    if kind == "missing":
        return FieldError(path, "is required")
    message = str(item["msg"]).removeprefix("Value error, ")
    # The value is echoed only for one field at fault, never for the whole record.
    if loc and kind != "value_error" and not isinstance(value, dict | list | bytes):
        message += f" (got {excerpt(value)})"
    return FieldError(path, message)


def field_errors(error: ValidationError) -> list[FieldError]:
    """pydantic's errors as FieldErrors that name the field and the offending value only."""
    return [_field_error(item) for item in error.errors()]


def validate_facts(facts: PatientFacts | Mapping[str, Any]) -> PatientFacts:
    """Check one patient's facts; raise InvalidFactsError naming every offending field.

    A ``PatientFacts`` is checked again as well: one built without validation
    (``model_construct``) or altered after it (``object.__setattr__``) must not reach the
    engine, whose comparisons are only sound on typed values (docs/engine.md)."""
    if isinstance(facts, PatientFacts):
        facts = facts.model_dump(warnings=False)
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
             overlay: str | Path | None = None, version: str | None = None,
             unsafe_overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Guideline:
        """Load a ruleset directory (default: the shipped guideline), with institution
        parameter overrides given directly and/or as an overlay YAML file.

        ``parameters`` must lie in each parameter's safe range; a value outside it is
        refused (InvalidParameterError, naming the parameter, the value and the range)
        unless given in ``unsafe_overrides`` as ``{name: {"value": x, "reason": "…"}}``,
        which needs a non-empty reason and stays within the hard limits. Every assessment
        lists the overrides in ``parameter_overrides`` (docs/ruleset-format.md).

        ``version`` loads a shipped version instead of a directory (``all-rules rules
        versions`` lists them); UnknownVersionError for one that is not shipped."""
        if version is not None:
            if directory is not None:
                raise ValueError("give a ruleset directory or a version, not both")
            from all_rules.ruleset._versions import version_directory

            directory = version_directory(version)
        return cls(load(Path(directory) if directory is not None else None, parameters,
                        Path(overlay) if overlay is not None else None, unsafe_overrides))

    @classmethod
    def default(cls) -> Guideline:
        """The shipped guideline with default parameters (loaded once per process)."""
        return _default()

    def close(self) -> None:
        self.engine.close()

    def __copy__(self) -> Guideline:
        """A new guideline on the same (immutable) ruleset, with an engine of its own:
        closing either leaves the other working."""
        return Guideline(self.ruleset)

    def __deepcopy__(self, memo: Any) -> Guideline:
        return self.__copy__()

    def __reduce__(self) -> Any:
        """Pickled as its ruleset directory, parameter overrides and digest; unpickled
        (in a worker process, say) by loading that ruleset once per process, refused if
        its files changed since. So ``pool.map(guideline.assess_json, patients)`` works
        with any start method."""
        ruleset = self.ruleset
        return _unpickle, (str(ruleset.directory.resolve()), ruleset.safe_overrides(),
                           ruleset.digest, ruleset.unsafe_overrides())

    @property
    def parameter_overrides(self) -> tuple[ParameterOverride, ...]:
        """The parameters whose local value differs from the shipped one (every assessment
        lists them); empty for the shipped values."""
        return self._assembler.overrides

    def rule(self, rule_id: str) -> list[Rule]:
        """The rule (and its variants) with this id."""
        return [rule for rule in self.ruleset.rules if rule.spec.id == rule_id]

    def _evaluate(self, facts: PatientFacts | Mapping[str, Any]) -> tuple[PreparedFacts,
                                                                          Selection]:
        return self._evaluate_checked(validate_facts(facts))

    def _evaluate_checked(self, facts: PatientFacts) -> tuple[PreparedFacts, Selection]:
        """Evaluate facts this process validated itself a moment ago (the cohort reader
        builds them with ``model_validate_json``); every public method validates first."""
        prepared = prepare(facts)
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

    def explain(self, facts: PatientFacts | Mapping[str, Any], rule_id: str) -> Explanation:
        """Why the rule ``rule_id`` (every variant) fired for this patient, or why not:
        each test of its condition with the patient's value, the resolved threshold and the
        outcome (held / failed / unknown), derived facts traced to the rules that produce
        them, and the risk group's features (docs/explain.md). Raises UnknownRuleError
        (with a did-you-mean) for an id not in the ruleset."""
        prepared = prepare(validate_facts(facts))
        return self._explainer.explain(prepared.values, prepared.patient_id, rule_id)

    def nearest_misses(self, facts: PatientFacts | Mapping[str, Any],
                       limit: int = 5) -> list[RuleExplanation]:
        """The output rules that came closest to firing for this patient, nearest first."""
        prepared = prepare(validate_facts(facts))
        return self._explainer.nearest_misses(prepared.values, limit)

    @functools.cached_property
    def _explainer(self) -> Explainer:
        return Explainer(Evaluator(self.ruleset), self.info)

    def _json_and_selection_checked(self, facts: PatientFacts) -> tuple[str, Selection]:
        """``assess_json_and_selection`` of facts already validated (see
        ``_evaluate_checked``)."""
        prepared, selection = self._evaluate_checked(facts)
        return self._assembler.json(prepared, selection), selection

    def assess_ids(self, facts: PatientFacts | Mapping[str, Any]) -> Selection:
        """Only what fires: the risk group, features, missing facts and the items with
        their rules, without wording (for tabular cohort output)."""
        return self._evaluate(facts)[1]


_default_lock = threading.Lock()
_unpickled: dict[tuple[str, str, str], Guideline] = {}


def _new_lock_after_fork() -> None:
    global _default_lock
    _default_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


def _unpickle(directory: str, overrides: dict[str, float], digest: str,
              unsafe: dict[str, dict[str, Any]] | None = None) -> Guideline:
    """The guideline a pickle names: loaded once per process and digest (and unsafe
    overrides with their reasons), then reused."""
    key = (directory, digest, repr(sorted((unsafe or {}).items())))
    with _default_lock:
        found = _unpickled.get(key)
        if found is None:
            found = Guideline.load(directory, parameters=overrides, unsafe_overrides=unsafe)
            if found.ruleset.digest != digest:
                found.close()
                raise RulesetLoadError(directory, None, "the ruleset changed since this "
                                       f"guideline was pickled ({digest[:19]}…, now "
                                       f"{found.ruleset.digest[:19]}…)")
            _unpickled[key] = found
        return found


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



provide_shipped_guideline(Guideline.default)

"""Assessing many patients in Python: ``assess_many`` (one result per row, in order; a bad row is
a ``RowError``, never a stop), ``table_rows`` (the two flat tables) and ``CohortSummary``."""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from all_rules.engine._guideline import Guideline, validate_facts
from all_rules.engine._select import Selection
from all_rules.exceptions import EvaluationError, FieldError, InvalidFactsError
from all_rules.facts import PatientFacts
from all_rules.output import Assessment, ParameterOverride, RiskGroup
from all_rules.ruleset._parameters import parameter_overrides

from ._records import record_to_facts

__all__ = ["CohortSummary", "RowError", "RowErrorField", "assess_many", "table_rows"]


class RowErrorField(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    field: str
    message: str


class RowError(BaseModel):
    """A row that could not be assessed: its number (1-based), its patient id if it had one,
    and what was wrong. ``kind`` is ``invalid`` (bad input) or ``engine`` (engine failure)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    row: int
    patient_id: str | None
    kind: str
    errors: tuple[RowErrorField, ...]

    @classmethod
    def of(cls, row: int, patient_id: str | None, kind: str,
           errors: Iterable[FieldError]) -> RowError:
        return cls(row=row, patient_id=patient_id, kind=kind,
                   errors=tuple(RowErrorField(field=e.field, message=e.message)
                                for e in errors))

    def to_json(self) -> str:
        return self.model_dump_json()


Result = Assessment | RowError


def _patient_id(facts: Any) -> str | None:
    """The row's patient id, if it has a usable one (for error records)."""
    value = facts.get("patient_id") if isinstance(facts, Mapping) else getattr(
        facts, "patient_id", None)
    return value if isinstance(value, str) else None


def _all_errors(facts: Any, cell_errors: list[FieldError]) -> list[FieldError]:
    """Cell errors plus what validation finds in the other cells: every field at once.
    A row refused as a whole (facts that are not a mapping of the row's other cells: a JSON
    row whose validation already named every error, an unreadable row) stops there, so no
    error is reported that the row does not have."""
    if not isinstance(facts, Mapping) or any(e.field.startswith("(") for e in cell_errors):
        return cell_errors
    try:
        validate_facts(facts)
    except InvalidFactsError as error:
        named = {e.field for e in cell_errors}
        return cell_errors + [e for e in error.errors if e.field not in named]
    return cell_errors


def assess_row(guideline: Guideline, row: int, facts: Any, *,
               cell_errors: list[FieldError] | None = None) -> Result:
    """Assess one row; bad input and engine failures become a RowError, never an exception."""
    patient_id = _patient_id(facts)
    if cell_errors:
        return RowError.of(row, patient_id, "invalid", _all_errors(facts, cell_errors))
    try:
        return guideline.assess(facts)
    except InvalidFactsError as error:
        return RowError.of(row, patient_id, "invalid", error.errors)
    except EvaluationError as error:
        return RowError.of(row, patient_id, "engine", [FieldError("(engine)", str(error))])


PatientRow = tuple[int, str | None, str | None, str | None, str | None, int, str | None,
                   str | None]
RecommendationRow = tuple[int, str | None, str, str, str, str]
PATIENT_COLUMNS = ("row", "patient_id", "risk_group", "features", "missing",
                   "recommendations", "error", "parameter_overrides")


@functools.cache
def overrides_cell(overrides: tuple[ParameterOverride, ...]) -> str | None:
    """The ``parameter_overrides`` cell of every row a guideline assessed: ``name=local``
    joined with ``;``, ``UNSAFE`` after one outside its safe range; None for the shipped
    values (the reasons are in the summary and the JSON)."""
    if not overrides:
        return None
    return ";".join(f"{o.name}={o.local:g}" + (" UNSAFE" if o.unsafe else "")
                    for o in overrides)
RECOMMENDATION_COLUMNS = ("row", "patient_id", "id", "kind", "severity", "phase")


def table_rows(guideline: Guideline, row: int, facts: Any,
               cell_errors: list[FieldError] | None = None
               ) -> tuple[PatientRow, list[RecommendationRow], Selection | RowError]:
    """One row as table rows (patients, recommendations), from the selection alone: tables
    carry ids, not wording, so nothing is rendered."""
    outcome: Selection | RowError
    patient_id = _patient_id(facts)
    if cell_errors:
        outcome = RowError.of(row, patient_id, "invalid", _all_errors(facts, cell_errors))
    else:
        try:
            outcome = guideline.assess_ids(facts)
        except InvalidFactsError as error:
            outcome = RowError.of(row, patient_id, "invalid", error.errors)
        except EvaluationError as error:
            outcome = RowError.of(row, patient_id, "engine",
                                  [FieldError("(engine)", str(error))])
    local = overrides_cell(guideline.parameter_overrides)
    if isinstance(outcome, RowError):
        error_text = "; ".join(f"{e.field}: {e.message}" for e in outcome.errors)
        return (row, patient_id, None, None, None, 0, error_text, local), [], outcome
    recommendations: list[RecommendationRow] = []
    for rule, _ in outcome.items:
        spec = rule.spec
        assert spec.kind is not None
        assert spec.severity is not None
        assert spec.phase is not None
        recommendations.append((row, patient_id, spec.id, spec.kind.value, spec.severity.value,
                                spec.phase.value))
    patient = (row, patient_id, outcome.group, ";".join(outcome.features),
               ";".join(outcome.missing), len(outcome.items), None, local)
    return patient, recommendations, outcome


def assess_many(rows: Iterable[PatientFacts | Mapping[str, Any]], *,
                guideline: Guideline | None = None, flat: bool = False) -> Iterator[Result]:
    """Assess every row, in input order: an Assessment, or a RowError for a bad row.

    ``rows`` may be fact models, nested mappings (docs/facts.md), or, with ``flat=True``, flat
    records with ``plan.*`` columns (as in CSV; see docs/cohorts.md). Lazy: rows are read
    as results are consumed, so a generator of millions of rows runs in constant memory.
    """
    guideline = guideline or Guideline.default()
    for index, row in enumerate(rows, start=1):
        if flat and isinstance(row, Mapping):
            facts, cell_errors = record_to_facts(row)
            yield assess_row(guideline, index, facts, cell_errors=cell_errors)
        else:
            yield assess_row(guideline, index, row)


class CohortSummary:
    """Counts over a cohort: rows, invalid rows, risk groups, and every recommendation id."""

    def __init__(self, rule_ids: Iterable[str] = ()) -> None:
        self.patients = 0
        self.assessed = 0
        self.invalid = 0
        self.engine_errors = 0
        self.risk_groups: Counter[str] = Counter({g.value: 0 for g in RiskGroup})
        self.recommendations: Counter[str] = Counter(dict.fromkeys(rule_ids, 0))
        self.parameter_overrides: list[ParameterOverride] = []
        """The local parameter values every row was assessed with (none: shipped values)."""

    @classmethod
    def for_guideline(cls, guideline: Guideline) -> CohortSummary:
        ids = sorted({r.spec.id for r in guideline.ruleset.rules if r.spec.kind is not None})
        summary = cls(ids)
        summary.parameter_overrides = list(parameter_overrides(guideline.ruleset))
        return summary

    def add(self, result: Result) -> None:
        self.patients += 1
        if isinstance(result, RowError):
            if result.kind == "engine":
                self.engine_errors += 1
            else:
                self.invalid += 1
            return
        self.assessed += 1
        self.risk_groups[result.risk.group.value] += 1
        for item in result.recommendations:
            self.recommendations[item.id] += 1

    def add_outcome(self, outcome: Selection | RowError) -> None:
        if isinstance(outcome, RowError):
            self.add(outcome)
        else:
            self.add_selection(outcome)

    def add_selection(self, selection: Selection) -> None:
        """Count an assessed row from its selection (the cohort fast path)."""
        self.patients += 1
        self.assessed += 1
        self.risk_groups[selection.group] += 1
        for rule, _ in selection.items:
            self.recommendations[rule.spec.id] += 1

    def merge(self, other: CohortSummary) -> None:
        self.patients += other.patients
        self.assessed += other.assessed
        self.invalid += other.invalid
        self.engine_errors += other.engine_errors
        self.risk_groups.update(other.risk_groups)
        self.recommendations.update(other.recommendations)

    def to_dict(self) -> dict[str, Any]:
        """The counts; ``parameter_overrides`` (as in an assessment) when the cohort was
        assessed with local parameter values."""
        data: dict[str, Any] = {
            "patients": self.patients, "assessed": self.assessed, "invalid_rows": self.invalid,
            "engine_errors": self.engine_errors,
            "risk_groups": dict(sorted(self.risk_groups.items())),
            "recommendations": dict(sorted(self.recommendations.items())),
        }
        if self.parameter_overrides:
            data["parameter_overrides"] = [o.model_dump(mode="json")
                                           for o in self.parameter_overrides]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """The summary as a plain-text table."""
        width = max([28, *(len(k) for k in self.recommendations)])
        lines = [f"local parameter: {o.text()}" for o in self.parameter_overrides]
        lines += [f"{'patients':<{width}} {self.patients:>10,}",
                 f"{'assessed':<{width}} {self.assessed:>10,}",
                 f"{'invalid rows':<{width}} {self.invalid:>10,}",
                 f"{'engine errors':<{width}} {self.engine_errors:>10,}", "",
                 "risk group"]
        lines += [f"  {k:<{width - 2}} {v:>10,}" for k, v in sorted(self.risk_groups.items())]
        lines += ["", "recommendation"]
        lines += [f"  {k:<{width - 2}} {v:>10,}" for k, v in sorted(self.recommendations.items())]
        return "\n".join(lines) + "\n"

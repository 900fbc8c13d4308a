"""What changes between two guidelines, patient by patient (``all-rules diff``).

``compare(old, new, rows)`` assesses every row under both guidelines and yields one record
per patient whose assessment changed — risk group, risk features, missing facts, items added,
removed, or changed (kind, severity, phase, wording, evidence, citations, doses), each with
its before and after — and a ``RowError`` for a row that could not be assessed. Unchanged
patients yield nothing. ``DiffSummary`` counts the changes (docs/diff.md).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from all_rules.engine._guideline import Guideline, validate_facts
from all_rules.exceptions import EvaluationError, FieldError, InvalidFactsError
from all_rules.facts import PatientFacts
from all_rules.ruleset._parameters import parameter_overrides

from ._many import RowError, _all_errors, _patient_id
from ._records import record_to_facts, unknown_columns

__all__ = ["CHANGE_KINDS", "ITEM_FIELDS", "DiffSummary", "ItemChange", "PatientChange",
           "compare", "compare_row"]

CHANGE_KINDS = ("risk_group", "features", "missing", "added", "removed", "changed")
"""What can change in one patient's assessment, in the order records list them."""
ITEM_FIELDS = ("kind", "severity", "phase", "text", "reason", "evidence", "citations",
               "doses")
"""The fields of an item compared between the two assessments (``id`` is the key)."""
EXAMPLES = 5
"""Example patients kept per count in the summary (the first ones, in input order)."""


@attrs.frozen
class ItemChange:
    """One item present in both assessments whose listed ``fields`` differ."""

    id: str
    fields: tuple[str, ...]
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    """The changed fields only, as in the assessment JSON (a field absent on one side,
    such as ``doses``, is ``None`` there)."""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "fields": list(self.fields), "before": dict(self.before),
                "after": dict(self.after)}


@attrs.frozen
class PatientChange:
    """How one patient's assessment changed. Items are the assessment JSON's items."""

    row: int
    patient_id: str | None
    risk_group: tuple[str, str]
    """(before, after); equal when the group did not change."""
    features: tuple[tuple[str, ...], tuple[str, ...]]
    """(added, removed) risk features."""
    missing: tuple[tuple[str, ...], tuple[str, ...]]
    """(added, removed) missing facts."""
    added: tuple[Mapping[str, Any], ...]
    removed: tuple[Mapping[str, Any], ...]
    changed: tuple[ItemChange, ...]

    @property
    def changes(self) -> tuple[str, ...]:
        """The kinds of change (``CHANGE_KINDS``) this patient shows."""
        present = {"risk_group": self.risk_group[0] != self.risk_group[1],
                   "features": any(self.features), "missing": any(self.missing),
                   "added": bool(self.added), "removed": bool(self.removed),
                   "changed": bool(self.changed)}
        return tuple(kind for kind in CHANGE_KINDS if present[kind])

    def to_dict(self) -> dict[str, Any]:
        """The JSON Lines record (docs/diff.md)."""
        return {
            "kind": "changed", "row": self.row, "patient_id": self.patient_id,
            "changes": list(self.changes),
            "risk_group": {"before": self.risk_group[0], "after": self.risk_group[1]},
            "features": {"added": list(self.features[0]), "removed": list(self.features[1])},
            "missing": {"added": list(self.missing[0]), "removed": list(self.missing[1])},
            "added": [dict(item) for item in self.added],
            "removed": [dict(item) for item in self.removed],
            "changed": [item.to_dict() for item in self.changed],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


Record = PatientChange | RowError

_RISK = ',"risk":{'


def _outcome(text: str) -> str:
    """The assessment JSON after its ruleset header: what the patient is told. (The header
    names the guideline and always differs; the patient id before it is JSON-escaped, so
    it cannot hold this marker.)"""
    return text[text.index(_RISK):]


def _added_removed(before: Iterable[str], after: Iterable[str]
                   ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    old, new = set(before), set(after)
    return tuple(sorted(new - old)), tuple(sorted(old - new))


def diff_assessments(row: int, patient_id: str | None, before: str, after: str
                     ) -> PatientChange | None:
    """The change between two assessment JSON texts of one patient, or None.

    Only the order of items is not a change (the items and their content are compared)."""
    if _outcome(before) == _outcome(after):
        return None
    old, new = json.loads(before), json.loads(after)
    old_items = {item["id"]: item for item in old["recommendations"]}
    new_items = {item["id"]: item for item in new["recommendations"]}
    changed = []
    for rule_id, item in old_items.items():
        other = new_items.get(rule_id)
        if other is None:
            continue
        fields = tuple(f for f in ITEM_FIELDS if item.get(f) != other.get(f))
        if fields:
            changed.append(ItemChange(rule_id, fields, {f: item.get(f) for f in fields},
                                      {f: other.get(f) for f in fields}))
    change = PatientChange(
        row=row, patient_id=patient_id,
        risk_group=(old["risk"]["group"], new["risk"]["group"]),
        features=_added_removed(old["risk"]["features"], new["risk"]["features"]),
        missing=_added_removed(old["risk"]["missing"], new["risk"]["missing"]),
        added=tuple(item for rule_id, item in new_items.items() if rule_id not in old_items),
        removed=tuple(item for rule_id, item in old_items.items() if rule_id not in new_items),
        changed=tuple(changed))
    return change if change.changes else None


def _engine_error(row: int, patient_id: str | None, side: str,
                  error: EvaluationError) -> RowError:
    return RowError.of(row, patient_id, "engine",
                       [FieldError(f"(engine: {side})", str(error))])


def compare_row(old: Guideline, new: Guideline, row: int, facts: Any,
                cell_errors: list[FieldError] | None = None) -> Record | None:
    """One row under both guidelines: its change, None if unchanged, or a RowError (bad
    input, or an engine failure under either guideline — ``(engine: from)`` /
    ``(engine: to)``). Never raises for a bad row."""
    patient_id = _patient_id(facts)
    if cell_errors:
        return RowError.of(row, patient_id, "invalid", _all_errors(facts, cell_errors))
    try:
        valid = validate_facts(facts)
    except InvalidFactsError as error:
        return RowError.of(row, patient_id, "invalid", error.errors)
    try:
        # Validated once above; each guideline evaluates it without validating it again.
        before = old._json_and_selection_checked(valid)[0]
    except EvaluationError as error:
        return _engine_error(row, valid.patient_id, "from", error)
    try:
        after = new._json_and_selection_checked(valid)[0]
    except EvaluationError as error:
        return _engine_error(row, valid.patient_id, "to", error)
    return diff_assessments(row, valid.patient_id, before, after)


def _frame_records(frame: Any) -> Iterator[dict[str, Any]]:
    problems = unknown_columns(frame.columns)
    if problems:
        raise ValueError("; ".join(problems))
    for record in frame.to_dict("records"):
        yield {str(k): v for k, v in record.items()}


def compare(old: Guideline, new: Guideline,
            rows: Iterable[PatientFacts | Mapping[str, Any]] | Any, *,
            flat: bool = False, first_row: int = 1,
            summary: DiffSummary | None = None) -> Iterator[Record]:
    """Every row under ``old`` and ``new``, in input order: a PatientChange for each patient
    whose assessment changed, a RowError for each row that could not be assessed; nothing
    for an unchanged patient.

    ``rows`` is an iterable of fact models or nested mappings (as ``assess_many``), of flat
    records with ``flat=True``, or a pandas DataFrame with the columns of ``assess_frame``
    (unknown columns refused up front with ValueError). Lazy, like ``assess_many``.
    ``summary``, if given, counts every row as it is compared, unchanged ones included."""
    if hasattr(rows, "columns") and hasattr(rows, "to_dict"):
        rows, flat = _frame_records(rows), True
    for index, row in enumerate(rows, start=first_row):
        if flat and isinstance(row, Mapping):
            facts, cell_errors = record_to_facts(row)
            record = compare_row(old, new, index, facts, cell_errors)
        else:
            record = compare_row(old, new, index, row)
        if summary is not None:
            if record is None:
                summary.add_unchanged()
            else:
                summary.add(record)
        if record is not None:
            yield record


class _Count:
    """A count with the first few examples (patient ids, or ``row N`` without one)."""

    __slots__ = ("count", "examples")

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)

    def merge(self, other: _Count) -> None:
        self.count += other.count
        self.examples.extend(other.examples[:EXAMPLES - len(self.examples)])

    def to_dict(self) -> dict[str, Any]:
        return {"patients": self.count, "examples": list(self.examples)}


class _RuleCount:
    __slots__ = ("added", "changed", "examples", "fields", "removed")

    def __init__(self) -> None:
        self.added = self.removed = self.changed = 0
        self.fields: Counter[str] = Counter()
        self.examples = _Count()

    def merge(self, other: _RuleCount) -> None:
        self.added += other.added
        self.removed += other.removed
        self.changed += other.changed
        self.fields.update(other.fields)
        self.examples.merge(other.examples)

    def to_dict(self) -> dict[str, Any]:
        return {"patients": self.examples.count, "added": self.added, "removed": self.removed,
                "changed": self.changed,
                "fields": {f: self.fields[f] for f in ITEM_FIELDS if self.fields[f]},
                "examples": list(self.examples.examples)}


class DiffSummary:
    """Counts over a compared cohort: patients changed, by kind of change, by risk-group
    transition and by rule id, each with the first few example patients."""

    def __init__(self, old: Mapping[str, Any] | None = None,
                 new: Mapping[str, Any] | None = None) -> None:
        self.old, self.new = dict(old or {}), dict(new or {})
        self.patients = self.assessed = self.invalid = self.engine_errors = 0
        self.changed = _Count()
        self.kinds = {kind: _Count() for kind in CHANGE_KINDS}
        self.transitions: dict[tuple[str, str], _Count] = {}
        self.rules: dict[str, _RuleCount] = {}

    @classmethod
    def for_guidelines(cls, old: Guideline, new: Guideline) -> DiffSummary:
        def info(guideline: Guideline) -> dict[str, Any]:
            ruleset = guideline.ruleset
            return {"name": ruleset.name, "version": ruleset.version,
                    "digest": ruleset.digest, "overrides": dict(sorted(
                        ruleset.overrides.items())),
                    "parameter_overrides": [o.model_dump(mode="json")
                                            for o in parameter_overrides(ruleset)]}
        return cls(info(old), info(new))

    def add_unchanged(self) -> None:
        self.patients += 1
        self.assessed += 1

    def add(self, record: Record) -> None:
        self.patients += 1
        if isinstance(record, RowError):
            if record.kind == "engine":
                self.engine_errors += 1
            else:
                self.invalid += 1
            return
        self.assessed += 1
        example = record.patient_id if record.patient_id is not None else f"row {record.row}"
        self.changed.add(example)
        for kind in record.changes:
            self.kinds[kind].add(example)
        if record.risk_group[0] != record.risk_group[1]:
            self.transitions.setdefault(record.risk_group, _Count()).add(example)
        touched: dict[str, _RuleCount] = {}
        for items, attribute in ((record.added, "added"), (record.removed, "removed")):
            for item in items:
                count = touched.setdefault(item["id"], self.rules.setdefault(item["id"],
                                                                              _RuleCount()))
                setattr(count, attribute, getattr(count, attribute) + 1)
        for change in record.changed:
            count = touched.setdefault(change.id, self.rules.setdefault(change.id,
                                                                        _RuleCount()))
            count.changed += 1
            count.fields.update(change.fields)
        for count in touched.values():
            count.examples.add(example)

    def merge(self, other: DiffSummary) -> None:
        """Add a later part of the cohort (examples stay the first in input order)."""
        self.patients += other.patients
        self.assessed += other.assessed
        self.invalid += other.invalid
        self.engine_errors += other.engine_errors
        self.changed.merge(other.changed)
        for kind, count in other.kinds.items():
            self.kinds[kind].merge(count)
        for key, count in other.transitions.items():
            self.transitions.setdefault(key, _Count()).merge(count)
        for rule_id, rule_count in other.rules.items():
            self.rules.setdefault(rule_id, _RuleCount()).merge(rule_count)

    def to_dict(self) -> dict[str, Any]:
        """The summary JSON (its shape is documented in docs/diff.md)."""
        transitions = sorted(self.transitions.items(), key=lambda kv: (-kv[1].count, kv[0]))
        return {
            "from": self.old, "to": self.new,
            "patients": self.patients, "assessed": self.assessed,
            "invalid_rows": self.invalid, "engine_errors": self.engine_errors,
            "changed": self.changed.to_dict(),
            "unchanged": self.assessed - self.changed.count,
            "changes": {kind: count.to_dict() for kind, count in self.kinds.items()},
            "risk_groups": [{"before": before, "after": after, **count.to_dict()}
                            for (before, after), count in transitions],
            "rules": {rule_id: self.rules[rule_id].to_dict() for rule_id in sorted(self.rules)},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

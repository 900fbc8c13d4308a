"""The ruleset file format, as pydantic models (documented in docs/ruleset-format.md).

Conditions (``when``) are kept raw here and parsed by ``_conditions``, which knows the fact
catalogue; everything else about a rule is checked by these models.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

# The output's vocabulary belongs to the output models; the ruleset format speaks it.
from all_rules.output import PHASE_ORDER as PHASE_ORDER
from all_rules.output import SEVERITY_RANK as SEVERITY_RANK
from all_rules.output import ItemPhase as ItemPhase
from all_rules.output import Kind as Kind
from all_rules.output import RiskGroup as RiskGroup
from all_rules.output import Severity as Severity

RULE_ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"
PARAM_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"

CitationId = StrictInt | str
ValueRef = StrictInt | StrictFloat | str
"""A number, or ``"$name"`` naming a parameter."""


#: Groups a ruleset need not conclude: added after a release was shipped, so that earlier
#: releases (rulesets/releases/) still load. 2026.1.0 had no relapsed_refractory group.
OPTIONAL_GROUPS = frozenset({RiskGroup.RELAPSED_REFRACTORY})


class Basis(StrEnum):
    """How a rule stands to the source summary (docs/clinical-policy.md)."""

    SOURCE = "source"
    """The rule encodes what the source states."""
    INTERPRETATION = "interpretation"
    """A reading of an ambiguous or incomplete source statement, backed by a named source."""
    EXTENSION = "extension"
    """Content the source does not contain, backed by a named external source."""


STATEMENT_ID_PATTERN = r"^S[1-9][0-9]*$"


class Concludes(StrEnum):
    RECOMMENDATION = "recommendation"
    RISK_FEATURE = "risk_feature"
    RISK_GROUP = "risk_group"
    MISSING_FACT = "missing_fact"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DoseSpec(_Model):
    """A dose the output computes from the patient's BSA."""

    drug: str
    per_m2: ValueRef
    per_m2_max: ValueRef | None = None
    unit: Literal["mg", "IU"]
    cap: ValueRef | None = None
    schedule: str
    decimals: int = Field(default=2, ge=0, le=4)


class RuleSpec(_Model):
    """One rule of a ruleset file."""

    id: str = Field(pattern=RULE_ID_PATTERN)
    variant: str | None = Field(default=None, pattern=PARAM_NAME_PATTERN)
    title: str = Field(min_length=3)
    concludes: Concludes = Concludes.RECOMMENDATION
    group: RiskGroup | None = None
    fact: str | None = None
    kind: Kind | None = None
    severity: Severity | None = None
    phase: ItemPhase | None = None
    when: Any
    text: str | None = None
    reason: str | None = None
    citations: list[CitationId] = Field(default_factory=list)
    doses: list[DoseSpec] = Field(default_factory=list)
    interpretation: str | None = None
    sources: list[str] = Field(default_factory=list)
    """Ids of the statements (rulesets/statements.yaml) this rule encodes."""
    basis: Basis = Basis.SOURCE
    """``interpretation`` and ``extension`` need ``interpretation`` text and a named external
    citation; ``all-rules rules check`` enforces it (docs/clinical-policy.md)."""

    @model_validator(mode="after")
    def _fields_fit_conclusion(self) -> RuleSpec:
        item_fields = ("kind", "severity", "phase", "text", "reason")
        produces_item = self.concludes in (Concludes.RECOMMENDATION, Concludes.RISK_FEATURE)
        if produces_item:
            missing = [name for name in item_fields if getattr(self, name) is None]
            if missing:
                raise ValueError(f"a {self.concludes.value} rule needs {', '.join(missing)}")
            if not self.citations:
                raise ValueError(f"a {self.concludes.value} rule needs at least one citation")
        else:
            extra = [name for name in (*item_fields, "doses") if getattr(self, name)]
            if extra:
                raise ValueError(
                    f"a {self.concludes.value} rule produces no output item; "
                    f"remove {', '.join(extra)}"
                )
        if (self.group is not None) != (self.concludes is Concludes.RISK_GROUP):
            raise ValueError("`group` is required for, and only for, a risk_group rule")
        if (self.fact is not None) != (self.concludes is Concludes.MISSING_FACT):
            raise ValueError("`fact` is required for, and only for, a missing_fact rule")
        return self

    @property
    def key(self) -> str:
        """Unique key of the rule: its id, plus ``#variant`` for a variant."""
        return self.id if self.variant is None else f"{self.id}#{self.variant}"


class RuleFile(_Model):
    """One rules file: a description and its rules."""

    description: str = ""
    rules: list[RuleSpec] = Field(min_length=1)


class ParameterSpec(_Model):
    """A named threshold: value, unit, where it comes from, and the range an overlay may set."""

    value: StrictInt | StrictFloat
    unit: str
    source: str
    description: str
    min: StrictInt | StrictFloat | None = None
    max: StrictInt | StrictFloat | None = None
    """Hard limits: a value outside them is refused, even as an unsafe override."""
    safe_min: StrictInt | StrictFloat | None = None
    safe_max: StrictInt | StrictFloat | None = None
    """The safe range: an institution may set a value inside it; outside it, only as an
    unsafe override with a reason (docs/ruleset-format.md). ``rules check`` requires it."""
    safe_range_why: str | None = None
    """Why the safe range is where it is (the source, label or protocols it follows)."""

    @property
    def has_safe_range(self) -> bool:
        return self.safe_min is not None and self.safe_max is not None

    def is_safe(self, value: float) -> bool:
        """Whether ``value`` lies inside the declared safe range (False without one: no
        value but the shipped one is vouched for)."""
        if self.safe_min is None or self.safe_max is None:
            return value == self.value
        return self.safe_min <= value <= self.safe_max

    @model_validator(mode="after")
    def _value_in_range(self) -> ParameterSpec:
        if self.min is not None and self.value < self.min:
            raise ValueError(f"value {self.value} is below min {self.min}")
        if self.max is not None and self.value > self.max:
            raise ValueError(f"value {self.value} is above max {self.max}")
        return self


class CitationSpec(_Model):
    """A reference: the source's number (1–9), or a named external source."""

    id: CitationId
    title: str | None = None
    note: str | None = None


class ExclusiveSpec(_Model):
    """Rule ids of which at most one may appear in one assessment."""

    ids: list[str]
    why: str = Field(min_length=3)


class DecisionPointSpec(_Model):
    """A decision of ALL care, who reaches it, and the rules whose items answer it (policy 7,
    docs/clinical-policy.md): every patient who reaches it gets at least one of them."""

    id: str = Field(pattern=PARAM_NAME_PATTERN)
    title: str = Field(min_length=3)
    reached_when: Any = None
    """A condition in the language of a rule's ``when``; absent: every patient reaches it."""
    answered_by: list[str] = Field(min_length=1)
    """Ids of the rules whose item (or, for a risk-group rule, whose group) answers it."""
    why: str = Field(min_length=3)


class Manifest(_Model):
    """``ruleset.yaml``: the ruleset's identity, citations, parameters and files."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    version: str
    description: str
    source: str
    citations: list[CitationSpec] = Field(min_length=1)
    parameters: dict[str, ParameterSpec]
    conditions: dict[str, Any] = Field(default_factory=dict)
    """Named conditions, used in rules as ``{condition: name}``."""
    files: list[str] = Field(min_length=1)
    exclusive: list[ExclusiveSpec] = Field(default_factory=list)
    """Sets of items that contradict each other (docs/clinical-policy.md, policy 5)."""
    informational_facts: dict[str, str] = Field(default_factory=dict)
    """Facts no rule reads, each with why it is still accepted (policy 6)."""
    decision_points: list[DecisionPointSpec] = Field(default_factory=list)
    """The decisions every patient who reaches them gets an item for (policy 7)."""


class StatementSpec(_Model):
    """One actionable statement of the source summary (rulesets/statements.yaml)."""

    id: str = Field(pattern=STATEMENT_ID_PATTERN)
    section: str
    text: str = Field(min_length=3)
    needs_rule: bool
    why_no_rule: str | None = None

    @model_validator(mode="after")
    def _why_when_no_rule(self) -> StatementSpec:
        if self.needs_rule and self.why_no_rule is not None:
            raise ValueError("`why_no_rule` is only for a statement with `needs_rule: false`")
        if not self.needs_rule and not self.why_no_rule:
            raise ValueError("a statement with `needs_rule: false` needs `why_no_rule`")
        return self


class StatementFile(_Model):
    """``statements.yaml``: the source summary's actionable statements."""

    statements: list[StatementSpec] = Field(min_length=1)


class ItemExpectation(_Model):
    """What a case asserts about one item it fires: the variant shown, its kind and
    severity, phrases its text and reason contain, and the doses computed for the patient."""

    variant: str | None = Field(default=None, pattern=PARAM_NAME_PATTERN)
    """The variant of the rule whose item is shown (rules with variants only)."""
    kind: Kind | None = None
    severity: Severity | None = None
    text: list[str] = Field(default_factory=list)
    """Substrings the item's text contains (a dose, a key phrase), case-sensitive."""
    reason: list[str] = Field(default_factory=list)
    """Substrings the item's reason contains."""
    doses: dict[str, StrictInt | StrictFloat] = Field(default_factory=dict)
    """Drug → the dose computed for this patient (the lower end of a range)."""

    @model_validator(mode="after")
    def _asserts_something(self) -> ItemExpectation:
        if not (self.variant or self.kind or self.severity or self.text or self.reason
                or self.doses):
            raise ValueError("an item assertion needs at least one of variant, kind, "
                             "severity, text, reason, doses")
        if any(not phrase.strip() for phrase in (*self.text, *self.reason)):
            raise ValueError("a text or reason phrase must not be empty")
        return self

    def tests_statement(self, has_variants: bool) -> bool:
        """Whether this asserts the rule's statement: its kind (and variant, for a rule
        with variants) and at least one phrase of its text or reason, or a dose."""
        return (self.kind is not None and (self.variant is not None or not has_variants)
                and bool(self.text or self.reason or self.doses))


class CaseExpectation(_Model):
    ids: list[str]
    """Exactly the ids, among the rules of the file under test, that the case fires."""
    risk_group: RiskGroup
    missing: list[str] | None = None
    items: dict[str, ItemExpectation] = Field(default_factory=dict)
    """Per fired id: what its item says (``ItemExpectation``); each id must be in ``ids``."""

    @model_validator(mode="after")
    def _items_fire(self) -> CaseExpectation:
        stray = sorted(set(self.items) - set(self.ids))
        if stray:
            raise ValueError(f"`items` names ids not in `ids`: {', '.join(stray)}")
        return self


class CaseSpec(_Model):
    """One case of a ``*_test.yaml`` file: facts in, the exact ids of that file out."""

    name: str
    facts: dict[str, Any]
    expect: CaseExpectation
    near_miss: list[str] = Field(default_factory=list)
    parameters: dict[str, StrictInt | StrictFloat] = Field(default_factory=dict)


class CaseFile(_Model):
    """A ``*_test.yaml`` file: ``base`` facts shared by every case, then the cases."""

    base: dict[str, Any] = Field(default_factory=dict)
    cases: list[CaseSpec] = Field(min_length=1)


class UnsafeOverride(_Model):
    """A value outside a parameter's safe range, stated on purpose, with why."""

    value: StrictInt | StrictFloat
    reason: str

    @model_validator(mode="after")
    def _reason_given(self) -> UnsafeOverride:
        if not self.reason.strip():
            raise ValueError("an unsafe override needs a non-empty `reason`")
        return self


class Overlay(_Model):
    """An institution's overrides of parameter values: inside each parameter's safe range
    (``parameters``), or outside it, each with a reason (``unsafe_overrides``)."""

    description: str = ""
    parameters: dict[str, StrictInt | StrictFloat] = Field(default_factory=dict)
    unsafe_overrides: dict[str, UnsafeOverride] = Field(default_factory=dict)

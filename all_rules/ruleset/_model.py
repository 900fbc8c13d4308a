"""A checked ruleset as values: ``Ruleset`` and its ``Rule`` objects, ready to compile.

A ruleset is a directory holding ``ruleset.yaml`` (identity, citations, parameters, the list
of rule files) and the rule files it names; ``_loader`` checks one into these values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ._conditions import Branch, Node
from ._schema import CitationId, CitationSpec, DecisionPointSpec, ParameterSpec, RuleSpec
from ._template import Template

MANIFEST = "ruleset.yaml"
ENGINE_FIELD_LIMIT = 250
"""durable-rules handles about 252 fields per fact; the engine adds three of its own."""


def default_ruleset_dir() -> Path:
    """The shipped guideline: packaged inside a wheel, or the checkout's ``rulesets/``."""
    packaged = Path(__file__).parent.parent / "_rulesets"
    if (packaged / MANIFEST).is_file():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "rulesets"


@attrs.frozen
class Rule:
    """One checked rule, ready to compile."""

    spec: RuleSpec
    file: str
    line: int | None
    condition: Node
    branches: tuple[Branch, ...]
    stage: int
    """0: ungated; n: waits for stage fact n (it negates a derived fact)."""
    text: Template | None
    reason: Template | None
    key: str = attrs.field(init=False)
    """The rule's unique key (id, or id#variant); stored, as it is read per patient."""

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "key", self.spec.key)


@attrs.frozen
class DecisionPoint:
    """A checked decision point (policy 7): who reaches it (``condition``; ``None``: every
    patient) and the rule ids whose items answer it."""

    spec: DecisionPointSpec
    condition: Node | None


@attrs.frozen
class Ruleset:
    """A checked ruleset with its effective parameter values."""

    name: str
    version: str
    description: str
    directory: Path
    rules: tuple[Rule, ...]
    parameters: Mapping[str, ParameterSpec]
    values: Mapping[str, float]
    citations: Mapping[CitationId, CitationSpec]
    files: tuple[str, ...]
    digest: str
    overrides: Mapping[str, float]
    """Parameters whose effective value differs from the shipped one: name → local value."""
    override_reasons: Mapping[str, str] = attrs.field(factory=dict)
    """The reason stated for each override given as an unsafe override."""
    decision_points: tuple[DecisionPoint, ...] = ()
    """The decision points declared in ``ruleset.yaml`` (policy 7, docs/clinical-policy.md)."""

    def unsafe_overrides(self) -> dict[str, dict[str, Any]]:
        """The overrides given as unsafe, as ``load(unsafe_overrides=…)`` takes them."""
        return {name: {"value": self.overrides[name], "reason": reason}
                for name, reason in self.override_reasons.items()}

    def safe_overrides(self) -> dict[str, float]:
        """The other overrides, as ``load(overrides=…)`` takes them."""
        return {name: value for name, value in self.overrides.items()
                if name not in self.override_reasons}

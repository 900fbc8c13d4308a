"""Loading and checking rulesets: every problem found, with file, line, rule id and path.

A ruleset is a directory holding ``ruleset.yaml`` (identity, citations, parameters, the list
of rule files) and the rule files it names; ``*_test.yaml`` files beside them hold cases.
Nothing here executes ruleset content: YAML is safe-loaded and conditions are data.
``check`` reads a ruleset in named steps, each a checker of ``_checks``, with the parameter
values of ``_parameters`` (and, for ``all-rules rules check``, the content policy of
``_policy`` and the safe ranges); ``load`` raises on any issue.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from all_rules.exceptions import InvalidParameterError, RulesetIssue, RulesetValidationError
from all_rules.output import RiskGroup

from . import _checks
from ._conditions import (
    MAX_BRANCHES,
    ConditionParser,
    DerivedTest,
    Node,
    suggest,
    to_dnf,
    walk,
)
from ._factspec import FACTS
from ._issues import Issues, RuleReporter, load_doc, validate
from ._model import (
    ENGINE_FIELD_LIMIT,
    MANIFEST,
    DecisionPoint,
    Rule,
    Ruleset,
    default_ruleset_dir,
)
from ._parameters import LocalValues, local_values, safe_range_issues, unsafe_overrides_of
from ._policy import policy_issues
from ._safe_yaml import Located, PathKey
from ._schema import (
    OPTIONAL_GROUPS,
    CitationId,
    CitationSpec,
    Concludes,
    Manifest,
    Overlay,
    RuleSpec,
)
from ._template import Template

__all__ = ["check", "load"]

_Entry = tuple[RuleSpec, Node, str, Located, PathKey]
"""A rule whose condition parsed: spec, condition, file name, document, path in the file."""


@attrs.define
class _Read:
    """What the rule files gave: every validated spec, the parsed rules, the digest so far."""

    parsed: list[_Entry] = attrs.field(factory=list)
    all_specs: list[RuleSpec] = attrs.field(factory=list)
    digest: Any = attrs.field(factory=hashlib.sha256)


def check(directory: Path | None = None, overrides: Mapping[str, Any] | None = None,
          overlay: Path | None = None, policy: bool = False,
          unsafe_overrides: Mapping[str, Any] | None = None,
          ) -> tuple[Ruleset | None, list[RulesetIssue]]:
    """Load and check a ruleset; returns it (or None) and every issue found.

    ``overrides`` must lie in each parameter's safe range; ``unsafe_overrides``
    (``{name: {"value": x, "reason": "…"}}``) may leave it, within its hard limits
    (``_parameters``). ``policy`` adds the checks of ``all-rules rules check``: the content
    policy (sources, basis, exclusive sets, unread facts: all_rules/ruleset/_policy.py,
    docs/clinical-policy.md) and every parameter's safe range."""
    ruleset, issues, _ = _check(directory, overrides, overlay, policy, unsafe_overrides)
    return ruleset, issues


def _check(directory: Path | None, overrides: Mapping[str, Any] | None,
           overlay: Path | None, policy: bool, unsafe_overrides: Mapping[str, Any] | None,
           ) -> tuple[Ruleset | None, list[RulesetIssue], list[RulesetIssue]]:
    """``check``, and the issues that are the overrides' (not the ruleset's) own."""
    directory = default_ruleset_dir() if directory is None else directory
    issues = Issues()
    manifest_doc = load_doc(directory / MANIFEST, MANIFEST, issues)
    if manifest_doc is None:
        return None, issues.items, []
    manifest: Manifest | None = validate(Manifest, manifest_doc, issues)
    if manifest is None:
        return None, issues.items, []
    _check_parameter_numbers(manifest, manifest_doc, issues)
    citations = _citations(manifest, manifest_doc, issues)
    named = _named_conditions(manifest, manifest_doc, issues)
    read = _read_rule_files(directory, manifest, manifest_doc, citations, named, issues)
    _checks.check_variants(read.parsed, issues)
    _check_group_coverage(read.parsed, manifest_doc, issues)
    rules = _rules(read, issues)
    points = _decision_points(manifest, manifest_doc, named, read.all_specs, issues)
    local_issues = Issues()
    local = _parameter_values(manifest, overrides, overlay, unsafe_overrides, local_issues)
    issues.items.extend(local_issues.items)
    if issues.items:
        return None, issues.items, local_issues.items
    values = local.values
    changed = {k: v for k, v in values.items() if v != float(manifest.parameters[k].value)}
    if changed:
        read.digest.update(("\0overrides\0" + json.dumps(changed, sort_keys=True)).encode())
    ruleset = Ruleset(
        name=manifest.name, version=manifest.version, description=manifest.description,
        directory=directory, rules=tuple(rules), parameters=manifest.parameters, values=values,
        citations=citations, files=tuple(manifest.files),
        digest="sha256:" + read.digest.hexdigest(), overrides=changed,
        override_reasons={k: v for k, v in local.reasons.items() if k in changed},
        decision_points=points,
    )
    if policy:
        found = Issues()
        safe_range_issues(manifest, manifest_doc, MANIFEST, found)
        found.items.extend(policy_issues(ruleset))
        if found.items:
            return None, found.items, []
    return ruleset, [], []


def _check_parameter_numbers(manifest: Manifest, doc: Located, issues: Issues) -> None:
    for name, param in manifest.parameters.items():  # NaN makes every comparison false
        for field in ("value", "min", "max", "safe_min", "safe_max"):
            number = getattr(param, field)
            if number is not None and not math.isfinite(number):
                issues.add(doc, MANIFEST, ("parameters", name, field),
                           f"`{name}` {field} must be a finite number, got {number!r}")


def _citations(manifest: Manifest, doc: Located, issues: Issues
               ) -> dict[CitationId, CitationSpec]:
    citation_ids: dict[CitationId, CitationSpec] = {}
    for index, citation in enumerate(manifest.citations):
        if citation.id in citation_ids:
            issues.add(doc, MANIFEST, ("citations", index, "id"),
                       f"duplicate citation id {citation.id!r}")
        citation_ids[citation.id] = citation
    return citation_ids


def _named_conditions(manifest: Manifest, doc: Located, issues: Issues) -> dict[str, Node]:
    """The manifest's named conditions, parsed once for every rule that refers to them."""
    named: dict[str, Node] = {}

    def report_named(at: PathKey, message: str) -> None:
        issues.add(doc, MANIFEST, at, message)

    for name, raw in manifest.conditions.items():
        node = ConditionParser(manifest.parameters, report_named).parse(raw, ("conditions", name))
        if node is not None:
            named[name] = node
    return named


def _read_rule_files(directory: Path, manifest: Manifest, manifest_doc: Located,
                     citations: Mapping[CitationId, CitationSpec], named: Mapping[str, Node],
                     issues: Issues) -> _Read:
    """Every rule file the manifest names, inside the directory, read and hashed in order."""
    read = _Read()
    read.digest.update((manifest_doc.file + "\0").encode())
    read.digest.update((directory / MANIFEST).read_bytes())
    seen: dict[str, str] = {}
    for file_index, name in enumerate(manifest.files):
        file_path = directory / name
        if not file_path.resolve().is_relative_to(directory.resolve()):
            issues.add(manifest_doc, MANIFEST, ("files", file_index), f"`{name}` is outside "
                       "the ruleset directory (absolute, `..` or a link out); rule files "
                       "must be inside it")
            continue
        if not file_path.is_file():
            issues.add(manifest_doc, MANIFEST, ("files", file_index), f"no such file `{name}`")
            continue
        doc = load_doc(file_path, name, issues)  # bounded (MAX_FILE_BYTES) before it is hashed
        if doc is None:
            continue
        read.digest.update(("\0" + name + "\0").encode())
        read.digest.update(file_path.read_bytes())
        for spec, prefix in _checks.rule_docs(doc, issues):
            read.all_specs.append(spec)
            where = f"{name}:{doc.line_of(prefix)}"
            if spec.key in seen:
                issues.add(doc, name, (*prefix, "id"), f"duplicate rule `{spec.key}` "
                           f"(first at {seen[spec.key]})", spec.id, ("id",))
                continue
            seen[spec.key] = where
            condition = _check_rule(spec, doc, prefix, manifest, citations, named, issues)
            if condition is not None:
                read.parsed.append((spec, condition, name, doc, prefix))
    return read


def _check_rule(spec: RuleSpec, doc: Located, prefix: PathKey, manifest: Manifest,
                citations: Mapping[CitationId, CitationSpec], named: Mapping[str, Node],
                issues: Issues) -> Node | None:
    """One rule: its condition parsed, its citations, wording, doses and fact checked."""
    add = RuleReporter(issues, doc, prefix, spec.id)
    parser = ConditionParser(manifest.parameters, add.absolute, named)
    condition = parser.parse(spec.when, (*prefix, "when"))
    for index, cited in enumerate(spec.citations):
        if cited not in citations:
            add(("citations", index), f"citation {cited!r} is not in ruleset.yaml"
                f"{suggest(str(cited), [str(c) for c in citations])}")
    _checks.check_templates(spec, add, manifest.parameters)
    _checks.check_doses(spec, add, manifest.parameters)
    if spec.fact is not None and spec.fact not in FACTS:
        add(("fact",), f"unknown fact `{spec.fact}`{suggest(spec.fact, FACTS)}")
    return condition


def _decision_points(manifest: Manifest, doc: Located, named: Mapping[str, Node],
                     specs: list[RuleSpec], issues: Issues) -> tuple[DecisionPoint, ...]:
    """The declared decision points (policy 7): unique ids, a ``reached_when`` that parses
    (known facts, parameters, named conditions, derived facts some rule concludes) and
    ``answered_by`` ids of known rules."""
    known = {spec.id for spec in specs}
    producers = {spec.id for spec in specs if spec.concludes is not Concludes.RECOMMENDATION}
    points: list[DecisionPoint] = []
    seen: set[str] = set()
    for index, point in enumerate(manifest.decision_points):
        at: PathKey = ("decision_points", index)

        def report(path: PathKey, message: str) -> None:
            issues.add(doc, MANIFEST, path, message)

        if point.id in seen:
            report((*at, "id"), f"duplicate decision point `{point.id}`")
        seen.add(point.id)
        condition = None
        if point.reached_when is not None:
            parser = ConditionParser(manifest.parameters, report, named)
            condition = parser.parse(point.reached_when, (*at, "reached_when"))
            for leaf in walk(condition) if condition is not None else ():
                if isinstance(leaf, DerivedTest) and leaf.name is not None \
                        and leaf.name not in producers:
                    report(leaf.path, f"no rule derives `{leaf.name}`"
                           f"{suggest(leaf.name, producers)}")
        for position, rule_id in enumerate(point.answered_by):
            if rule_id not in known:
                report((*at, "answered_by", position),
                       f"unknown rule `{rule_id}`{suggest(rule_id, known)}")
        points.append(DecisionPoint(point, condition))
    return tuple(points)


def _check_group_coverage(parsed: list[_Entry], manifest_doc: Located, issues: Issues) -> None:
    groups = {spec.group for spec, *_ in parsed if spec.group is not None}
    # Coverage is judged only on a ruleset that loaded whole; otherwise it is noise.
    for group in RiskGroup if not issues.items else ():
        if group not in groups and group not in OPTIONAL_GROUPS:
            issues.add(manifest_doc, MANIFEST, ("files",), f"no rule concludes risk group "
                       f"`{group.value}`; every evaluation must end in exactly one group")
    if len(FACTS) + 3 > ENGINE_FIELD_LIMIT:  # pragma: no cover - a property of the code
        issues.add(manifest_doc, MANIFEST, (), "more facts than the engine can hold in one fact")


def _rules(read: _Read, issues: Issues) -> list[Rule]:
    """The checked rules: stages for negated derived facts, branches, templates."""
    parsed = read.parsed

    def report(spec: RuleSpec, path: PathKey, message: str) -> None:
        entry = next(p for p in parsed if p[0] is spec)
        doc, prefix = entry[3], entry[4]
        tail = tuple(path[len(prefix):]) if path[:len(prefix)] == prefix else tuple(path)
        issues.add(doc, doc.file, (*prefix, *tail), message, spec.id, tail)

    stages = _checks.stages([(s, c, f) for s, c, f, _, _ in parsed], read.all_specs, report)
    rules: list[Rule] = []
    for spec, condition, name, doc, prefix in parsed:
        branches = to_dnf(condition)
        if len(branches) > MAX_BRANCHES:
            report(spec, (*prefix, "when"), f"condition expands to {len(branches)} branches "
                   f"(limit {MAX_BRANCHES}); split the rule")
        for branch in branches:
            problem = _checks.unreachable(branch)
            if problem:
                report(spec, (*prefix, "when"), problem)
        rules.append(Rule(spec, name, doc.line_of(prefix), condition, tuple(branches),
                          stages.get(spec.key, 0),
                          Template(spec.text) if spec.text else None,
                          Template(spec.reason) if spec.reason else None))
    return rules


def _parameter_values(manifest: Manifest, overrides: Mapping[str, Any] | None,
                      overlay: Path | None, unsafe_overrides: Mapping[str, Any] | None,
                      issues: Issues) -> LocalValues:
    """The effective parameter values: shipped, then the overlay file, then direct overrides
    (each level's ``parameters`` and ``unsafe_overrides``)."""
    params = manifest.parameters
    local = LocalValues({name: float(p.value) for name, p in params.items()})
    if overlay is not None:
        overlay_doc = load_doc(overlay, str(overlay), issues)
        if overlay_doc is not None:
            model = validate(Overlay, overlay_doc, issues)
            if model is not None:
                local = local_values(params, local, model.parameters, model.unsafe_overrides,
                                     str(overlay), overlay_doc, issues)
    unsafe = unsafe_overrides_of(unsafe_overrides, issues)
    return local_values(params, local, dict(overrides or {}), unsafe, "parameters", None,
                        issues)


def load(directory: Path | None = None, overrides: Mapping[str, Any] | None = None,
         overlay: Path | None = None, unsafe_overrides: Mapping[str, Any] | None = None,
         ) -> Ruleset:
    """Load a ruleset or raise RulesetValidationError listing every issue;
    InvalidParameterError (a RulesetValidationError) when only the overrides are at fault
    (an unknown name, a value outside the hard limits or, not stated unsafe, outside the
    safe range, an unreadable overlay)."""
    ruleset, issues, local = _check(directory, overrides, overlay, False, unsafe_overrides)
    if ruleset is None:
        if local and len(local) == len(issues):
            raise InvalidParameterError(issues)
        raise RulesetValidationError(issues)
    return ruleset

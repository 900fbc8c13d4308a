"""Loading and checking rulesets: every problem found, with file, line, rule id and path.

A ruleset is a directory holding ``ruleset.yaml`` (identity, citations, parameters, the list
of rule files) and the rule files it names; ``*_test.yaml`` files beside them hold cases.
Nothing here executes ruleset content: YAML is safe-loaded and conditions are data.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
from pydantic import BaseModel, ValidationError

from all_rules.exceptions import RulesetIssue, RulesetLoadError, RulesetValidationError
from all_rules.facts import Drug

from ._conditions import (
    MAX_BRANCHES,
    Branch,
    ConditionParser,
    DerivedTest,
    FactTest,
    Node,
    suggest,
    to_dnf,
    walk,
)
from ._factspec import FACTS
from ._safe_yaml import Located, PathKey, load_file
from ._schema import (
    OPTIONAL_GROUPS,
    CitationId,
    CitationSpec,
    Concludes,
    Manifest,
    Overlay,
    ParameterSpec,
    RiskGroup,
    RuleSpec,
)
from ._template import SPECIALS, Template

MANIFEST = "ruleset.yaml"
ENGINE_FIELD_LIMIT = 250
"""durable-rules handles about 252 fields per fact; the engine adds three of its own."""


def default_ruleset_dir() -> Path:
    """The shipped guideline: packaged inside a wheel, or the checkout's ``rulesets/``."""
    packaged = Path(__file__).parent.parent / "_rulesets"
    if (packaged / MANIFEST).is_file():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "rulesets"


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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


class _Issues:
    def __init__(self) -> None:
        self.items: list[RulesetIssue] = []

    def add(self, doc: Located | None, file: str, path: PathKey, message: str,
            rule_id: str | None = None, rule_path: PathKey | None = None) -> None:
        line = doc.line_of(path) if doc is not None else None
        shown = format_path(rule_path if rule_path is not None else path)
        self.items.append(RulesetIssue(file, line, rule_id, shown, message))

    def pydantic(self, doc: Located, error: ValidationError, prefix: PathKey = (),
                 rule_id: str | None = None) -> None:
        for item in error.errors():
            loc = tuple(part for part in item["loc"] if not str(part).startswith("function-"))
            message = str(item["msg"]).removeprefix("Value error, ")
            self.add(doc, doc.file, (*prefix, *loc), message, rule_id,
                     rule_path=loc if rule_id else None)


def _validate(model: type[BaseModel], doc: Located, issues: _Issues) -> Any:
    try:
        return model.model_validate(doc.data)
    except ValidationError as error:
        issues.pydantic(doc, error)
        return None


def _load(path: Path, name: str, issues: _Issues) -> Located | None:
    try:
        return load_file(path, name)
    except RulesetLoadError as error:
        issues.items.append(RulesetIssue(error.file, error.line, None, "", error.problem))
        return None


class _RuleReporter:
    """Reports issues of one rule: paths relative to the rule, lines from the file."""

    def __init__(self, issues: _Issues, doc: Located, prefix: PathKey, rule_id: str) -> None:
        self.issues, self.doc, self.prefix, self.rule_id = issues, doc, prefix, rule_id

    def __call__(self, rule_path: PathKey, message: str) -> None:
        self.issues.add(self.doc, self.doc.file, (*self.prefix, *rule_path), message,
                        self.rule_id, rule_path)

    def absolute(self, path: PathKey, message: str) -> None:
        self(path[len(self.prefix):], message)


def _rule_docs(doc: Located, issues: _Issues) -> list[tuple[RuleSpec, PathKey]]:
    """Validate rules one by one so that one bad rule does not hide the others."""
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        issues.add(doc, doc.file, (), "a rules file is a mapping with a `rules` list")
        return []
    unknown = set(data) - {"rules", "description"}
    for key in sorted(unknown):
        issues.add(doc, doc.file, (key,), f"unknown top-level key `{key}`")
    specs: list[tuple[RuleSpec, PathKey]] = []
    for index, raw in enumerate(data["rules"]):
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        try:
            specs.append((RuleSpec.model_validate(raw), ("rules", index)))
        except ValidationError as error:
            issues.pydantic(doc, error, ("rules", index), str(rule_id) if rule_id else None)
    if not data["rules"]:
        issues.add(doc, doc.file, ("rules",), "no rules")
    return specs


def _check_templates(spec: RuleSpec, add: Any, params: Mapping[str, Any]) -> None:
    for field in ("text", "reason"):
        source = getattr(spec, field)
        if source is None:
            continue
        template = Template(source)
        for problem in template.problems():
            add((field,), problem)
        for name in template.names():
            if name.startswith("$"):
                if name[1:] not in params:
                    add((field,), f"unknown parameter `{name[1:]}`{suggest(name[1:], params)}")
            elif name not in FACTS and name not in SPECIALS:
                add((field,), f"unknown placeholder `{name}`{suggest(name, [*FACTS, *SPECIALS])}")


def _check_doses(spec: RuleSpec, add: Any, params: Mapping[str, Any]) -> None:
    for index, dose in enumerate(spec.doses):
        if dose.drug not in {d.value for d in Drug}:
            add(("doses", index, "drug"), f"unknown drug `{dose.drug}`")
        for field in ("per_m2", "per_m2_max", "cap"):
            value = getattr(dose, field)
            if isinstance(value, str):
                name = value.removeprefix("$")
                if not value.startswith("$") or name not in params:
                    add(("doses", index, field), f"unknown parameter `{name}`"
                        f"{suggest(name, params)}")


def _stages(rules: list[tuple[RuleSpec, Node, str]], all_specs: list[RuleSpec],
            report: Any) -> dict[str, int]:
    """The stage of each rule: 0 (ungated) unless it negates a derived fact.

    durable decides a negation when a fact arrives, so a rule that tests the *absence* of a
    derived fact waits for a stage fact asserted after every producer of that fact has
    finished. Positive tests need no gate: the rule fires when the derived fact arrives.
    ``finish`` is the last stage in which a rule can fire: its own, or its producers' latest.

    Producers are taken from every rule that validated, even one whose condition did not
    parse, so that one bad condition is reported once and not again by each reader."""
    producers: dict[str, list[str]] = {}
    by_kind: dict[str, list[str]] = {}
    for spec in all_specs:
        if spec.concludes is not Concludes.RECOMMENDATION:
            producers.setdefault(spec.id, []).append(spec.key)
            by_kind.setdefault(spec.concludes.value, []).append(spec.key)
    keys = {s.key for s, _, _ in rules}
    needs: dict[str, tuple[set[str], set[str]]] = {}
    for spec, condition, _ in rules:
        positive: set[str] = set()
        negative: set[str] = set()
        for leaf in walk(condition):
            if not isinstance(leaf, DerivedTest):
                continue
            if leaf.name is not None:
                if leaf.name not in producers:
                    report(spec, leaf.path, f"no rule derives `{leaf.name}`"
                           f"{suggest(leaf.name, producers)}")
                found = set(producers.get(leaf.name, []))
            else:
                found = set(by_kind.get(leaf.kind or "", []))
            (positive if leaf.present else negative).update(found & keys)
        needs[spec.key] = (positive, negative)
    stage: dict[str, int] = {}
    finish: dict[str, int] = {}
    visiting: set[str] = set()
    specs = {spec.key: spec for spec, _, _ in rules}

    def visit(key: str) -> int:
        if key in finish:
            return finish[key]
        if key in visiting:
            report(specs[key], ("when",), "derived facts form a cycle through this rule")
            return 0
        visiting.add(key)
        positive, negative = needs[key]
        own = 1 + max(visit(dep) for dep in negative) if negative else 0
        done = max([own, *(visit(dep) for dep in positive)])
        visiting.discard(key)
        stage[key], finish[key] = own, done
        return done

    for key in needs:
        visit(key)
    return stage


def _unreachable(branch: Branch) -> str | None:
    unknown = {t.fact for t in branch if isinstance(t, FactTest) and t.op == "known"
               and t.value is False}
    tested = {t.fact for t in branch if isinstance(t, FactTest) and t.op != "known"}
    both = sorted(unknown & tested)
    if both:
        return f"`{both[0]}` is required unknown and compared in the same branch: never matches"
    return None


def effective_values(manifest_params: Mapping[str, ParameterSpec],
                     overrides: Mapping[str, Any], source: str,
                     doc: Located | None, issues: _Issues) -> dict[str, float]:
    values = {name: float(p.value) for name, p in manifest_params.items()}
    for name, value in overrides.items():
        param = manifest_params.get(name)
        path: PathKey = ("parameters", name)
        if param is None:
            issues.add(doc, source, path,
                       f"unknown parameter `{name}`{suggest(name, manifest_params)}")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value):
            issues.add(doc, source, path, f"`{name}` takes a finite number ({param.unit}), "
                                          f"got {value!r}")
            continue
        if (param.min is not None and value < param.min) or (
                param.max is not None and value > param.max):
            issues.add(doc, source, path, f"`{name}` = {value} is outside the allowed range "
                                          f"{param.min}–{param.max} {param.unit}")
            continue
        values[name] = float(value)
    return values


def check(directory: Path | None = None, overrides: Mapping[str, Any] | None = None,
          overlay: Path | None = None, policy: bool = False,
          ) -> tuple[Ruleset | None, list[RulesetIssue]]:
    """Load and check a ruleset; returns it (or None) and every issue found.

    ``policy`` adds the content-policy checks of ``all-rules rules check`` (sources,
    basis, exclusive sets, unread facts: all_rules/ruleset/_policy.py, docs/clinical-policy.md)."""
    directory = default_ruleset_dir() if directory is None else directory
    issues = _Issues()
    manifest_doc = _load(directory / MANIFEST, MANIFEST, issues)
    if manifest_doc is None:
        return None, issues.items
    manifest: Manifest | None = _validate(Manifest, manifest_doc, issues)
    if manifest is None:
        return None, issues.items

    for name, param in manifest.parameters.items():  # NaN makes every comparison false
        for field in ("value", "min", "max"):
            number = getattr(param, field)
            if number is not None and not math.isfinite(number):
                issues.add(manifest_doc, MANIFEST, ("parameters", name, field),
                           f"`{name}` {field} must be a finite number, got {number!r}")

    citation_ids: dict[CitationId, CitationSpec] = {}
    for index, citation in enumerate(manifest.citations):
        if citation.id in citation_ids:
            issues.add(manifest_doc, MANIFEST, ("citations", index, "id"),
                       f"duplicate citation id {citation.id!r}")
        citation_ids[citation.id] = citation

    named: dict[str, Node] = {}
    for name, raw in manifest.conditions.items():
        path: PathKey = ("conditions", name)

        def report_named(at: PathKey, message: str) -> None:
            issues.add(manifest_doc, MANIFEST, at, message)

        node = ConditionParser(manifest.parameters, report_named).parse(raw, path)
        if node is not None:
            named[name] = node

    parsed: list[tuple[RuleSpec, Node, str, Located, PathKey]] = []
    all_specs: list[RuleSpec] = []
    seen: dict[str, str] = {}
    digest = hashlib.sha256()
    digest.update((manifest_doc.file + "\0").encode())
    digest.update((directory / MANIFEST).read_bytes())
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
        doc = _load(file_path, name, issues)  # bounded (MAX_FILE_BYTES) before it is hashed
        if doc is None:
            continue
        digest.update(("\0" + name + "\0").encode())
        digest.update(file_path.read_bytes())
        for spec, prefix in _rule_docs(doc, issues):
            all_specs.append(spec)
            where = f"{name}:{doc.line_of(prefix)}"
            if spec.key in seen:
                issues.add(doc, name, (*prefix, "id"), f"duplicate rule `{spec.key}` "
                           f"(first at {seen[spec.key]})", spec.id, ("id",))
                continue
            seen[spec.key] = where

            add = _RuleReporter(issues, doc, prefix, spec.id)
            parser = ConditionParser(manifest.parameters, add.absolute, named)
            condition = parser.parse(spec.when, (*prefix, "when"))
            for index, cited in enumerate(spec.citations):
                if cited not in citation_ids:
                    add(("citations", index), f"citation {cited!r} is not in ruleset.yaml"
                        f"{suggest(str(cited), [str(c) for c in citation_ids])}")
            _check_templates(spec, add, manifest.parameters)
            _check_doses(spec, add, manifest.parameters)
            if spec.fact is not None and spec.fact not in FACTS:
                add(("fact",), f"unknown fact `{spec.fact}`{suggest(spec.fact, FACTS)}")
            if condition is not None:
                parsed.append((spec, condition, name, doc, prefix))

    _check_variants(parsed, issues)
    groups = {spec.group for spec, *_ in parsed if spec.group is not None}
    # Coverage is judged only on a ruleset that loaded whole; otherwise it is noise.
    for group in RiskGroup if not issues.items else ():
        if group not in groups and group not in OPTIONAL_GROUPS:
            issues.add(manifest_doc, MANIFEST, ("files",), f"no rule concludes risk group "
                       f"`{group.value}`; every evaluation must end in exactly one group")
    if len(FACTS) + 3 > ENGINE_FIELD_LIMIT:  # pragma: no cover - a property of the code
        issues.add(manifest_doc, MANIFEST, (), "more facts than the engine can hold in one fact")

    def report(spec: RuleSpec, path: PathKey, message: str) -> None:
        entry = next(p for p in parsed if p[0] is spec)
        doc, prefix = entry[3], entry[4]
        tail = tuple(path[len(prefix):]) if path[:len(prefix)] == prefix else tuple(path)
        issues.add(doc, doc.file, (*prefix, *tail), message, spec.id, tail)

    stages = _stages([(s, c, f) for s, c, f, _, _ in parsed], all_specs, report)
    rules: list[Rule] = []
    for spec, condition, name, doc, prefix in parsed:
        branches = to_dnf(condition)
        if len(branches) > MAX_BRANCHES:
            report(spec, (*prefix, "when"), f"condition expands to {len(branches)} branches "
                   f"(limit {MAX_BRANCHES}); split the rule")
        for branch in branches:
            problem = _unreachable(branch)
            if problem:
                report(spec, (*prefix, "when"), problem)
        rules.append(Rule(spec, name, doc.line_of(prefix), condition, tuple(branches),
                          stages.get(spec.key, 0),
                          Template(spec.text) if spec.text else None,
                          Template(spec.reason) if spec.reason else None))

    all_overrides: dict[str, Any] = {}
    overlay_doc: Located | None = None
    if overlay is not None:
        overlay_doc = _load(overlay, str(overlay), issues)
        if overlay_doc is not None:
            model = _validate(Overlay, overlay_doc, issues)
            if model is not None:
                all_overrides.update(model.parameters)
    values = effective_values(manifest.parameters, all_overrides, str(overlay), overlay_doc,
                              issues)
    direct = effective_values(manifest.parameters, dict(overrides or {}), "parameters", None,
                              issues)
    values.update({name: direct[name] for name in (overrides or {}) if name in direct})
    if issues.items:
        return None, issues.items
    changed = {k: v for k, v in values.items() if v != float(manifest.parameters[k].value)}
    if changed:
        digest.update(("\0overrides\0" + json.dumps(changed, sort_keys=True)).encode())
    ruleset = Ruleset(
        name=manifest.name, version=manifest.version, description=manifest.description,
        directory=directory, rules=tuple(rules), parameters=manifest.parameters, values=values,
        citations=citation_ids, files=tuple(manifest.files),
        digest="sha256:" + digest.hexdigest(), overrides=changed,
    )
    if policy:
        from ._policy import policy_issues
        found = policy_issues(ruleset)
        if found:
            return None, found
    return ruleset, []


def _check_variants(parsed: list[Any], issues: _Issues) -> None:
    by_id: dict[str, list[Any]] = {}
    for entry in parsed:
        by_id.setdefault(entry[0].id, []).append(entry)
    for rule_id, entries in by_id.items():
        first = entries[0][0]
        for spec, _, _, doc, prefix in entries[1:]:
            for field in ("concludes", "kind", "phase"):
                if getattr(spec, field) != getattr(first, field):
                    issues.add(doc, doc.file, (*prefix, field), f"variants of `{rule_id}` must "
                               f"agree on {field}", rule_id, (field,))


def load(directory: Path | None = None, overrides: Mapping[str, Any] | None = None,
         overlay: Path | None = None) -> Ruleset:
    """Load a ruleset or raise RulesetValidationError listing every issue."""
    ruleset, issues = check(directory, overrides, overlay)
    if ruleset is None:
        raise RulesetValidationError(issues)
    return ruleset

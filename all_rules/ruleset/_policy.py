"""The content policy checks of ``all-rules rules check`` (docs/clinical-policy.md).

Run on a ruleset that already loaded whole. They judge what the rules *say* against the
source statements, not whether the engine can run them:

- every rule names the statements it encodes (``sources``), unless it is an ``extension``;
- a statement that needs a rule has one; every named statement exists;
- an ``interpretation`` or ``extension`` says why (``interpretation`` text) and cites a named
  external source (a citation with a non-numeric id and a title giving the year);
- ``exclusive`` sets name known rules, at least two each;
- every input fact is read by a rule or listed in ``informational_facts`` (policy 6).

The statements live in ``statements.yaml`` beside ``ruleset.yaml``; a ruleset without that
file is not traced to a source, and only the checks that need no statements run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from all_rules.exceptions import RulesetIssue, RulesetLoadError

from ._conditions import FactTest, suggest, walk
from ._factspec import FACTS
from ._issues import Issues, load_doc, validate
from ._safe_yaml import Located, PathKey, load_file
from ._schema import Basis, Manifest, RuleSpec, StatementFile, StatementSpec

STATEMENTS = "statements.yaml"
_YEAR = re.compile(r"\b(19|20)\d\d\b")

# Input facts Python turns into a derived fact (all_rules/engine/_prepare.py): a rule reading the
# derived fact reads them.
_FEEDS: dict[str, tuple[str, ...]] = {
    "height_cm": ("bsa_m2",),
    "weight_kg": ("bsa_m2",),
}
_NO_BSA = {"plan.given", "plan.has_doses"}


def load_statements(directory: Path) -> StatementFile | None:
    """The statements of a ruleset directory, or None when it has no statements file.

    Raises RulesetLoadError or pydantic's ValidationError on a bad file."""
    path = directory / STATEMENTS
    if not path.is_file():
        return None
    return StatementFile.model_validate(load_file(path, STATEMENTS).data)


def named_external(citation_id: object, title: str | None) -> bool:
    """A citation naming an external source: a text id and a title (or id) with its year."""
    if not isinstance(citation_id, str):
        return False
    return title is not None and bool(_YEAR.search(f"{citation_id} {title}"))


def facts_read(ruleset: Any) -> dict[str, list[str]]:
    """Each fact name → the ids of the rules whose conditions (or doses) read it."""
    read: dict[str, list[str]] = {}

    def note(fact: str, rule_id: str) -> None:
        ids = read.setdefault(fact, [])
        if rule_id not in ids:
            ids.append(rule_id)

    for rule in ruleset.rules:
        for leaf in walk(rule.condition):
            if isinstance(leaf, FactTest):
                note(leaf.fact, rule.spec.id)
        if rule.spec.doses:
            note("bsa_m2", rule.spec.id)
    # A derived fact reads the input facts it is computed from: those its description names
    # in backquotes, and the BSA (per m², or mg converted from mg/m²) or the weight (per kg).
    for name in [n for n in read if FACTS[n].derived]:
        spec = FACTS[name]
        inputs = [n for n in re.findall(r"`([a-z_.]+)`", spec.description)
                  if n in FACTS and n != name]
        if name.startswith("plan.") and name not in _NO_BSA:
            inputs.append("weight_kg" if name.endswith("_per_kg") else "bsa_m2")
        for source in inputs:
            for rule_id in list(read[name]):
                note(source, rule_id)
    for source, targets in _FEEDS.items():
        for target in targets:
            for rule_id in list(read.get(target, [])):
                note(source, rule_id)
    return read


def policy_issues(ruleset: Any) -> list[RulesetIssue]:
    """Every content-policy problem of a loaded ruleset, with file, line and rule id."""
    report = Issues()
    directory = ruleset.directory
    try:
        manifest_doc = load_file(directory / "ruleset.yaml", "ruleset.yaml")
        manifest = Manifest.model_validate(manifest_doc.data)
    except (RulesetLoadError, ValidationError):  # pragma: no cover - loaded before
        return []
    statements: dict[str, tuple[StatementSpec, int]] = {}
    statements_doc: Located | None = None
    if (directory / STATEMENTS).is_file():
        statements_doc = load_doc(directory / STATEMENTS, STATEMENTS, report)
        parsed = validate(StatementFile, statements_doc, report) if statements_doc else None
        if parsed is None:
            return report.items
        for index, statement in enumerate(parsed.statements):
            if statement.id in statements:
                report.add(statements_doc, STATEMENTS, ("statements", index, "id"),
                           f"duplicate statement id `{statement.id}`")
            statements[statement.id] = (statement, index)

    _check_rules(ruleset, manifest, statements, report)
    if statements_doc is not None:
        encoded = {s for rule in ruleset.rules for s in rule.spec.sources}
        for statement_id, (statement, index) in statements.items():
            if statement.needs_rule and statement_id not in encoded:
                report.add(statements_doc, STATEMENTS, ("statements", index, "id"),
                           f"statement {statement_id} needs a rule and no rule names it in "
                           "`sources` (or mark it `needs_rule: false` with `why_no_rule`)")
    _check_exclusive(ruleset, manifest, manifest_doc, report)
    _check_facts(ruleset, manifest, manifest_doc, report)
    return report.items


def _check_rules(ruleset: Any, manifest: Manifest,
                 statements: dict[str, tuple[StatementSpec, int]], report: Issues) -> None:
    citations = {c.id: c for c in manifest.citations}
    docs: dict[str, Located] = {}
    for rule in ruleset.rules:
        spec: RuleSpec = rule.spec
        doc = docs.get(rule.file)
        if doc is None:
            doc = docs[rule.file] = load_file(ruleset.directory / rule.file, rule.file)
        prefix = _rule_prefix(doc, rule)

        def add(path: PathKey, message: str, spec: RuleSpec = spec, doc: Located = doc,
                prefix: PathKey = prefix) -> None:
            report.add(doc, doc.file, (*prefix, *path), message, spec.id, path)

        if statements:
            if not spec.sources and spec.basis is not Basis.EXTENSION:
                add(("id",), "no `sources`: name the statement(s) of statements.yaml this rule "
                    "encodes, or mark it `basis: extension` with a named external source")
            for index, statement_id in enumerate(spec.sources):
                if statement_id not in statements:
                    add(("sources", index), f"unknown statement `{statement_id}`"
                        f"{suggest(statement_id, statements)}")
        if spec.basis is Basis.SOURCE:
            continue
        if not (spec.interpretation or "").strip():
            add(("basis",), f"a `basis: {spec.basis.value}` rule needs `interpretation` text "
                "saying, in plain words, why")
        external = [c for c in spec.citations
                    if c in citations and named_external(c, citations[c].title)]
        if not external:
            add(("citations",), f"a `basis: {spec.basis.value}` rule needs a citation naming "
                "an external source (guideline, trial or label, with its year) declared in "
                "ruleset.yaml `citations`")


def _rule_prefix(doc: Located, rule: Any) -> PathKey:
    """The path of this rule inside its file (the variant's own entry)."""
    rules = doc.data.get("rules", []) if isinstance(doc.data, dict) else []
    for index, raw in enumerate(rules):
        if (isinstance(raw, dict) and raw.get("id") == rule.spec.id
                and raw.get("variant") == rule.spec.variant):
            return ("rules", index)
    return ("rules",)  # pragma: no cover - the rule came from this file


def _check_exclusive(ruleset: Any, manifest: Manifest, doc: Located,
                     report: Issues) -> None:
    known = {rule.spec.id for rule in ruleset.rules}
    for index, entry in enumerate(manifest.exclusive):
        where: PathKey = ("exclusive", index, "ids")
        if len(set(entry.ids)) < 2:
            report.add(doc, doc.file, where, "an exclusive set names at least two rule ids")
        seen: set[str] = set()
        for position, rule_id in enumerate(entry.ids):
            if rule_id in seen:
                report.add(doc, doc.file, (*where, position), f"`{rule_id}` is named twice")
            seen.add(rule_id)
            if rule_id not in known:
                report.add(doc, doc.file, (*where, position),
                           f"unknown rule `{rule_id}`{suggest(rule_id, known)}")


def _check_facts(ruleset: Any, manifest: Manifest, doc: Located, report: Issues) -> None:
    read = facts_read(ruleset)
    inputs = [name for name, spec in FACTS.items() if not spec.derived]
    for name in manifest.informational_facts:
        path: PathKey = ("informational_facts", name)
        if name not in FACTS:
            report.add(doc, doc.file, path, f"unknown fact `{name}`{suggest(name, inputs)}")
        elif name in read:
            report.add(doc, doc.file, path, f"`{name}` is read by {', '.join(read[name])}; "
                       "it is not informational")
    for name in inputs:
        if name not in read and name not in manifest.informational_facts:
            report.add(doc if "informational_facts" in doc.data else None, doc.file,
                       ("informational_facts",),
                       f"fact `{name}` is accepted and read by no rule: encode it or list it "
                       "under `informational_facts` with why (policy 6)")

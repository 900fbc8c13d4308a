"""The checkers behind ``check``: one function per concern of a ruleset.

Each reads part of a ruleset and reports what is wrong through ``Issues`` (``_issues``):
rule documents one by one (``rule_docs``), wording templates (``check_templates``), doses
(``check_doses``), variants that must agree (``check_variants``), the stage of every rule that
negates a derived fact (``stages``) and branches that can never match (``unreachable``);
parameter values live in ``_parameters``. ``_loader.check`` runs them in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from all_rules.facts import Drug

from ._conditions import Branch, DerivedTest, FactTest, Node, suggest, walk
from ._factspec import FACTS
from ._issues import Issues
from ._safe_yaml import Located, PathKey
from ._schema import Concludes, RuleSpec
from ._template import SPECIALS, Template


def rule_docs(doc: Located, issues: Issues) -> list[tuple[RuleSpec, PathKey]]:
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


def check_templates(spec: RuleSpec, add: Any, params: Mapping[str, Any]) -> None:
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


def check_doses(spec: RuleSpec, add: Any, params: Mapping[str, Any]) -> None:
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


def stages(rules: list[tuple[RuleSpec, Node, str]], all_specs: list[RuleSpec],
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


def unreachable(branch: Branch) -> str | None:
    unknown = {t.fact for t in branch if isinstance(t, FactTest) and t.op == "known"
               and t.value is False}
    tested = {t.fact for t in branch if isinstance(t, FactTest) and t.op != "known"}
    both = sorted(unknown & tested)
    if both:
        return f"`{both[0]}` is required unknown and compared in the same branch: never matches"
    return None


def check_variants(parsed: list[Any], issues: Issues) -> None:
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

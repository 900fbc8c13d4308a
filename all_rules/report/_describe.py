"""Rules and assessments in words: ``rules show``, the text output, the generated catalogue."""

from __future__ import annotations

from collections.abc import Iterator

from all_rules.engine._format import is_mrd_percent, literal_text, mrd_text, number
from all_rules.engine._wording import evidence_prose
from all_rules.output import Assessment, ItemPhase
from all_rules.ruleset._conditions import (
    AllOf,
    AnyOf,
    DerivedTest,
    FactTest,
    Node,
    ParamRef,
    Tolerance,
    walk,
)
from all_rules.ruleset._factspec import FACTS
from all_rules.ruleset._model import Rule, Ruleset
from all_rules.ruleset._parameters import safe_range_text

_WORDS = {"eq": "is", "ne": "is not", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


def _operand(value: object, ruleset: Ruleset) -> str:
    if isinstance(value, ParamRef):
        param = ruleset.parameters[value.name]
        if is_mrd_percent(value.name):  # both notations, as every MRD level is shown
            return f"{mrd_text(ruleset.values[value.name])} (${value.name})"
        return f"{number(ruleset.values[value.name])} {param.unit} (${value.name})".replace(
            " % ", "% ")
    if isinstance(value, Tolerance):
        word = "+" if value.direction == "percent_above" else "−"
        return f"{_operand(value.base, ruleset)} {word} {_operand(value.percent, ruleset)}"
    return literal_text(value)


def test_words(test: FactTest | DerivedTest, ruleset: Ruleset) -> str:
    """One test as a phrase: ``WBC at diagnosis (wbc_…) > 30 ×10⁹/L ($adult_b_wbc…)``."""
    if isinstance(test, DerivedTest):
        target = test.name or f"any {test.kind.replace('_', ' ') if test.kind else ''}"
        return f"{target} {'was' if test.present else 'was not'} concluded"
    label = f"{FACTS[test.fact].label} ({test.fact})"
    if test.op == "known":
        return f"{label} is {'known' if test.value else 'unknown'}"
    if test.op in ("in", "not_in"):
        items = ", ".join(literal_text(v) for v in test.value)
        return f"{label} is {'one of' if test.op == 'in' else 'none of'} {items}"
    return f"{label} {_WORDS[test.op]} {_operand(test.value, ruleset)}"


def condition_lines(node: Node, ruleset: Ruleset, indent: str = "") -> Iterator[str]:
    """A condition tree as indented lines of words."""
    if isinstance(node, FactTest | DerivedTest):
        yield f"{indent}- {test_words(node, ruleset)}"
        return
    word = "all of" if isinstance(node, AllOf) else "any of"
    assert isinstance(node, AllOf | AnyOf)
    yield f"{indent}- {word}:"
    for child in node.children:
        yield from condition_lines(child, ruleset, indent + "    ")


def rule_params(rule: Rule) -> list[str]:
    """Names of the parameters a rule uses, in order of first use."""
    found: list[str] = []

    def add(value: object) -> None:
        if isinstance(value, ParamRef) and value.name not in found:
            found.append(value.name)
        elif isinstance(value, Tolerance):
            add(value.base)
            add(value.percent)
        elif isinstance(value, str) and value.startswith("$"):
            add(ParamRef(value[1:]))

    for leaf in walk(rule.condition):
        if isinstance(leaf, FactTest):
            add(leaf.value)
    for template in (rule.text, rule.reason):
        for name in template.names() if template is not None else ():
            add(name)
    for dose in rule.spec.doses:
        for value in (dose.per_m2, dose.per_m2_max, dose.cap):
            add(value)
    return found


#: The age facts a rule may read, by basis (docs/clinical-policy.md, "One age basis").
_AT_DIAGNOSIS_AGES = ("diagnosis_age_years", "diagnosis_age_at_most_years",
                      "age_at_diagnosis_years")
_CURRENT_AGES = ("age_years",)


def age_basis(rule: Rule) -> str | None:
    """Which age a rule's conditions read: ``"at diagnosis"``, ``"current"`` or ``"both"``,
    with the facts in brackets; a rule that reads a risk feature or group reads the age at
    diagnosis through it (``"the risk group"`` in brackets); None for a rule that reads
    neither."""
    read: list[str] = []
    through_risk = False
    for leaf in walk(rule.condition):
        if isinstance(leaf, FactTest) and leaf.fact in (*_AT_DIAGNOSIS_AGES, *_CURRENT_AGES):
            if leaf.fact not in read:
                read.append(leaf.fact)
        elif isinstance(leaf, DerivedTest) and (
                (leaf.name or "").startswith(("group.", "risk."))
                or leaf.kind in ("risk_feature", "risk_group")):
            through_risk = True
    diagnosis = through_risk or any(name in _AT_DIAGNOSIS_AGES for name in read)
    current = any(name in _CURRENT_AGES for name in read)
    if not diagnosis and not current:
        return None
    word = "both" if diagnosis and current else "at diagnosis" if diagnosis else "current"
    return f"{word} ({', '.join([*read, *(['the risk group'] if through_risk else [])])})"


def describe_rule(rule: Rule, ruleset: Ruleset) -> list[str]:
    """Everything a reviewer needs about one rule, as lines."""
    spec = rule.spec
    lines = [f"{rule.key} — {spec.title}", f"  file: {rule.file}:{rule.line}"]
    if spec.kind is not None:
        severity = spec.severity.value if spec.severity else ""
        phase = spec.phase.value if spec.phase else ""
        lines.append(f"  kind: {spec.kind.value}, severity: {severity}, phase: {phase}")
    lines.append(f"  concludes: {spec.concludes.value}"
                 + (f" ({spec.group.value})" if spec.group else "")
                 + (f" ({spec.fact})" if spec.fact else ""))
    lines.append("  when:")
    lines.extend(condition_lines(rule.condition, ruleset, "    "))
    if spec.text:
        lines.append(f"  text: {spec.text.strip()}")
    if spec.reason:
        lines.append(f"  reason: {spec.reason.strip()}")
    basis = age_basis(rule)
    if basis is not None:
        lines.append(f"  age basis: {basis}")
    lines.append(f"  basis: {spec.basis.value}; source statements: "
                 f"{', '.join(spec.sources) or 'none'} (docs/traceability.md)")
    if spec.interpretation:
        lines.append(f"  interpretation: {spec.interpretation.strip()}")
    params = rule_params(rule)
    if params:
        lines.append("  parameters:")
        for name in params:
            param = ruleset.parameters[name]
            value = number(ruleset.values[name])
            local = (f" (LOCAL value; shipped {number(param.value)} {param.unit})"
                     if name in ruleset.overrides else "")
            lines.append(f"    {name} = {value} {param.unit}{local} — {param.description} "
                         f"(source: {param.source}; safe range: {safe_range_text(param)})")
    if spec.citations:
        lines.append("  citations:")
        for cited in spec.citations:
            citation = ruleset.citations[cited]
            lines.append(f"    [{cited}] {citation.title or citation.note or ''}")
    return lines


_PHASE_TITLES = {
    ItemPhase.ANY: "All phases",
    ItemPhase.DIAGNOSIS: "Diagnosis",
    ItemPhase.INDUCTION: "Induction",
    ItemPhase.CONSOLIDATION: "Consolidation",
    ItemPhase.MAINTENANCE: "Maintenance",
    ItemPhase.RELAPSED_REFRACTORY: "Relapsed / refractory",
}


def local_parameter_lines(assessment: Assessment) -> list[str]:
    """The parameters this assessment used that differ from the shipped guideline, loudly
    when any is outside its safe range (an unsafe override); nothing when there are none."""
    overrides = assessment.parameter_overrides
    if not overrides:
        return []
    unsafe = sum(o.unsafe for o in overrides)
    head = (f"LOCAL PARAMETERS: {len(overrides)} value(s) differ from the shipped guideline"
            + (f"; {unsafe} OUTSIDE the safe range (unsafe override)" if unsafe else ""))
    return [head, *(f"  - {o.text()}" for o in overrides)]


def assessment_text(assessment: Assessment) -> str:
    """The clinician-readable text output: risk group first, then items grouped by phase."""
    lines: list[str] = []
    who = assessment.patient_id or "(no patient id)"
    info = assessment.ruleset
    lines.append(f"Patient {who} — {info.name} {info.version} ({info.digest[:19]}…)")
    lines.extend(local_parameter_lines(assessment))
    risk = assessment.risk
    lines.append(f"Risk group: {risk.group.value.upper().replace('_', ' ')}")
    lines.append(f"  features: {', '.join(risk.features) or 'none'}")
    lines.append(f"  missing:  {', '.join(risk.missing) or 'none'}")
    current: ItemPhase | None = None
    for item in assessment.recommendations:
        if item.phase != current:
            current = item.phase
            lines.append("")
            lines.append(f"== {_PHASE_TITLES[item.phase]} ==")
        kind = ("scope: not decided by this guideline" if item.kind.value == "scope"
                else item.kind.value)
        lines.append(f"[{item.severity.value.upper()}] {item.id} ({kind})")
        lines.append(f"    {item.text}")
        lines.append(f"    Why: {item.reason}")
        for dose in item.doses or ():
            per = number(dose.per_m2) + (f"–{number(dose.per_m2_max)}" if dose.per_m2_max else "")
            if dose.dose is None:
                amount = "BSA unknown"
            else:
                amount = number(dose.dose) + (f"–{number(dose.dose_max)}" if dose.dose_max
                                              else "") + f" {dose.unit}"
                amount += " (capped)" if dose.capped else ""
            lines.append(f"    Dose: {dose.drug} {per} {dose.per_m2_unit} → {amount}, "
                         f"{dose.schedule}")
        evidence = evidence_prose([(e.fact, e.value, e.test) for e in item.evidence])
        lines.append(f"    Evidence: {evidence or 'none'}")
        lines.append(f"    Cites: {', '.join(f'[{c}]' for c in item.citations)}")
    if not assessment.recommendations:
        lines.append("")
        lines.append("No recommendation applies.")
    return "\n".join(lines) + "\n"


def catalogue_markdown(ruleset: Ruleset) -> str:
    """The rule catalogue as Markdown, generated from the rulesets (docs/catalogue.md)."""
    out = [f"# Rule catalogue — {ruleset.name} {ruleset.version}", "",
           "Generated by `all-rules rules list --format markdown` from `rulesets/`; a test "
           "fails when this page is stale. Parameters are shown with their default values.",
           ""]
    for file in ruleset.files:
        out += [f"## {file}", ""]
        anchored: set[str] = set()
        for rule in (r for r in ruleset.rules if r.file == file):
            spec = rule.spec
            if spec.id not in anchored:  # the CDS cards link to catalogue.md#<rule id>
                anchored.add(spec.id)
                out.append(f'<a id="{spec.id}"></a>')
                out.append("")
            out.append(f"### `{rule.key}` — {spec.title}")
            out.append("")
            if spec.kind is not None and spec.severity is not None and spec.phase is not None:
                out.append(f"*{spec.kind.value}*, severity *{spec.severity.value}*, phase "
                           f"*{spec.phase.value}*; concludes {spec.concludes.value}.")
            else:
                target = spec.group.value if spec.group else spec.fact
                out.append(f"Concludes {spec.concludes.value} `{target}`; no output item.")
            out.append("")
            out.append("When:")
            out.append("")
            out.extend(condition_lines(rule.condition, ruleset))
            out.append("")
            if spec.text:
                out.append(f"Text: {' '.join(spec.text.split())}")
                out.append("")
            basis = age_basis(rule)
            if basis is not None:
                out.append(f"Age basis: {basis}.")
                out.append("")
            statements = ", ".join(spec.sources) or "none"
            out.append(f"Basis: *{spec.basis.value}*; source statements: {statements} "
                       "([traceability](traceability.md)).")
            out.append("")
            if spec.interpretation:
                out.append(f"*Interpretation:* {' '.join(spec.interpretation.split())}")
                out.append("")
            if spec.citations:
                cited = ", ".join(f"[{c}]" for c in spec.citations)
                out.append(f"Citations: {cited}")
                out.append("")
    return "\n".join(out).rstrip() + "\n"

"""The one-patient HTML report (``all-rules assess --format html``) and the explanation page.

Order follows how a clinician reads: the risk group and its features first, then the data
still needed, then the decisions this guideline does not make for the patient (scope items,
"Not decided here"), then the recommendations by phase (severity as a coloured *and* worded label,
with reason, evidence, doses and citations), then "why not": the rules asked about with
``--why-not`` and the rules that came closest to firing, nearest first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from all_rules.engine._explanation import (
    ConditionExplanation,
    Explanation,
    RuleExplanation,
    derived_node_words,
    fact_node_words,
)
from all_rules.engine._wording import evidence_phrase
from all_rules.output import Assessment, ItemPhase, ParameterOverride, Recommendation

from ._html import Section, badge, card, definition_list, escape, render_page, table

_PHASE_TITLES = {
    ItemPhase.ANY: "Any phase", ItemPhase.DIAGNOSIS: "Diagnosis",
    ItemPhase.INDUCTION: "Induction", ItemPhase.CONSOLIDATION: "Consolidation",
    ItemPhase.MAINTENANCE: "Maintenance",
    ItemPhase.RELAPSED_REFRACTORY: "Relapsed / refractory",
}
_GROUP_WORDS = {"standard": "Standard risk", "provisional_standard": "Provisionally standard",
                "indeterminate": "Indeterminate (a deciding fact is unknown)",
                "high": "High risk", "very_high": "Very high risk"}
_OUTCOME_WORDS = {"held": "held", "failed": "failed", "unknown": "unknown"}


def _severity(item: Recommendation) -> str:
    return badge(item.severity.value, f"sev-{item.severity.value}")


def _item_card(item: Recommendation, citations: Mapping[str, str],
               titles: Mapping[str, str], level: int = 3) -> str:
    body = [f"<p>{escape(item.text)}</p>", f"<p><strong>Why:</strong> {escape(item.reason)}</p>"]
    if item.evidence:
        body.append(table(("Finding", "Fact"),
                          ((evidence_phrase(e.fact, e.value, e.test, titles), e.fact)
                           for e in item.evidence), caption="Evidence"))
    if item.doses:
        body.append(table(
            ("Drug", "Per m²", "Dose", "Schedule"),
            ((d.drug, f"{_num(d.per_m2)}{'–' + _num(d.per_m2_max) if d.per_m2_max else ''} "
              f"{d.per_m2_unit}", _dose(d.dose, d.dose_max, d.unit, d.capped), d.schedule)
             for d in item.doses), caption="Doses (from body surface area)"))
    cited = "; ".join(f"[{c}] {citations.get(str(c), '')}".strip() for c in item.citations)
    body.append(f'<p class="meta">Citations: {escape(cited)} · rule <code>'
                f"{escape(item.id)}</code></p>")
    heading = (f"{_severity(item)}{badge(item.kind.value.replace('_', ' '), 'kind')}"
               f"{escape(titles.get(item.id) or _first_sentence(item.text))}")
    return card(heading, "".join(body), css=f"sev-{item.severity.value}", level=level)


def _num(value: float | None) -> str:
    return escape(value) if value is not None else ""


def _dose(dose: float | None, dose_max: float | None, unit: str, capped: bool) -> str:
    if dose is None:
        return "needs body surface area"
    text = f"{_num(dose)}{'–' + _num(dose_max) if dose_max is not None else ''} {unit}"
    return text + (" (capped)" if capped else "")


def _first_sentence(text: str) -> str:
    head = text.split(". ", 1)[0].rstrip(".")
    return head if len(head) <= 90 else head[:87] + "…"


def condition_tree(node: ConditionExplanation) -> str:
    """A ``when`` tree as nested lists, each node with its worded outcome label."""
    label = badge(_OUTCOME_WORDS[node.outcome], f"out-{node.outcome}")
    if node.node in ("all", "any"):
        words = "all of" if node.node == "all" else "any of"
        children = "".join(condition_tree(child) for child in node.children)
        return f"<li>{label}{words}:<ul>{children}</ul></li>"
    if node.node == "fact":
        condition, shown = fact_node_words(node)
        return (f"<li>{label}{escape(condition)} — {escape(shown)} "
                f"<code>{escape(node.fact)}</code></li>")
    producers = "".join(
        f"<li>{badge('fired' if p.fired else _OUTCOME_WORDS[p.outcome], _out_css(p))}"
        f"<code>{escape(p.key)}</code>: {escape(p.summary)}</li>" for p in node.producers)
    inner = f"<ul>{producers}</ul>" if producers else ""
    return (f"<li>{label}{escape(derived_node_words(node))} <code>{escape(node.derived)}</code>"
            f"{inner}</li>")


def _out_css(rule: RuleExplanation) -> str:
    return "out-held" if rule.fired else f"out-{rule.outcome}"


def rule_card(rule: RuleExplanation, level: int = 3) -> str:
    state = "fired" if rule.fired else ("undecided" if rule.outcome == "unknown"
                                        else "did not fire")
    heading = (f"{badge(state, _out_css(rule))}<code>{escape(rule.key)}</code> — "
               f"{escape(rule.title)}")
    body = (f"<p>{escape(rule.summary)}</p>"
            f'<ul class="tree">{condition_tree(rule.condition)}</ul>')
    return card(heading, body, level=level)


def _risk_section(assessment: Assessment, explanation: Explanation | None,
                  features: Sequence[Recommendation]) -> Section:
    group = assessment.risk.group.value
    parts = [f'<p class="risk">Risk group: {escape(_GROUP_WORDS.get(group, group))} '
             f"<code>({escape(group)})</code></p>"]
    if features:
        parts.append("<h3>Features present</h3><ul>" + "".join(
            f"<li><strong>{escape(f.id)}</strong>: {escape(f.reason)}</li>" for f in features)
            + "</ul>")
    else:
        parts.append("<p>No high-risk feature is present.</p>")
    if explanation is not None and explanation.risk.undecided:
        parts.append("<h3>Features undecided</h3>" + table(
            ("Feature", "Unknown facts that decide it", "What would make it present"),
            ((u.id, ", ".join(u.unknown_facts) or "a derived fact",
              u.summary.removeprefix("did not fire; "))
             for u in explanation.risk.undecided)))
    if assessment.risk.missing:
        parts.append("<p><strong>Missing facts that decide the group:</strong> "
                     f"{escape(', '.join(assessment.risk.missing))}</p>")
    return Section("Risk group", "".join(parts), id="risk")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _local_parameters_section(overrides: Sequence[ParameterOverride]) -> Section:
    """Every parameter that differs from the shipped guideline: shipped and local value,
    safe range, and the reason of an unsafe override; first on the page, a warning card."""
    unsafe = [o for o in overrides if o.unsafe]
    rows = [(o.name, f"{_number(o.shipped)} {o.unit}", f"{_number(o.local)} {o.unit}",
             "not declared" if o.safe_min is None or o.safe_max is None else
             f"{_number(o.safe_min)}–{_number(o.safe_max)} {o.unit}",
             "OUTSIDE the safe range (unsafe override)" if o.unsafe else "inside the safe range",
             o.reason or "") for o in overrides]
    heading = (badge("critical" if unsafe else "warning",
                     "sev-critical" if unsafe else "sev-warning")
               + escape(f"This assessment used {len(overrides)} local parameter value(s)"
                        + (f", {len(unsafe)} outside the safe range" if unsafe else "")))
    body = ("<p>The thresholds or doses below differ from the shipped guideline: every "
            "recommendation on this page was made with the local values.</p>"
            + table(("Parameter", "Shipped", "Local", "Safe range", "Status", "Reason given"),
                    rows, caption="Local parameters"))
    return Section("Local parameters", card(
        heading, body, css="sev-critical" if unsafe else "sev-warning"), id="local-parameters")


def _data_and_scope_sections(data_needed: Sequence[Recommendation],
                             scope: Sequence[Recommendation], citations: Mapping[str, str],
                             titles: Mapping[str, str]) -> list[Section]:
    """"Data needed" (always) and "Not decided here" (the scope items, when there are any)."""
    if data_needed:
        body = "".join(_item_card(i, citations, titles) for i in data_needed)
    else:
        body = "<p>No data item is needed.</p>"
    sections = [Section("Data needed", body, id="data-needed",
                        intro="Facts that are unknown where they decide a recommendation.")]
    if scope:
        sections.append(Section(
            "Not decided here", "".join(_item_card(i, citations, titles) for i in scope),
            id="scope", intro="Decisions due for this patient that this guideline does not "
            "make, and where to turn instead (docs/clinical-policy.md, policy 7)."))
    return sections


def patient_page(assessment: Assessment, explanations: Sequence[Explanation],
                 near_misses: Sequence[RuleExplanation],
                 citations: Mapping[str, str] | None = None,
                 risk: Explanation | None = None,
                 titles: Mapping[str, str] | None = None) -> str:
    """The whole one-patient report as one HTML page (``titles``: rule id → title)."""
    citations = citations or {}
    titles = titles or {}
    features = [i for i in assessment.recommendations if i.id in assessment.risk.features]
    data_needed = [i for i in assessment.recommendations if i.kind.value == "data_needed"]
    scope = [i for i in assessment.recommendations if i.kind.value == "scope"]
    others = [i for i in assessment.recommendations
              if i not in features and i not in data_needed and i not in scope]
    risk = risk or (explanations[0] if explanations else None)
    sections = [_local_parameters_section(assessment.parameter_overrides)] \
        if assessment.parameter_overrides else []
    sections.append(_risk_section(assessment, risk, features))
    sections.extend(_data_and_scope_sections(data_needed, scope, citations, titles))
    by_phase: dict[ItemPhase, list[Recommendation]] = {}
    for item in others:
        by_phase.setdefault(item.phase, []).append(item)
    rec = []
    for phase in ItemPhase:
        if phase in by_phase:
            rec.append(f"<h3>{escape(_PHASE_TITLES[phase])}</h3>")
            rec.extend(_item_card(i, citations, titles, level=4) for i in by_phase[phase])
    sections.append(Section("Recommendations", "".join(rec) or "<p>No recommendation.</p>",
                            id="recommendations", intro="By phase; each with its reason, "
                            "evidence and citations."))
    why = []
    if explanations:
        why.append("<h3>Rules asked about</h3>")
        why.extend(rule_card(v, 4) for e in explanations for v in e.variants)
    if near_misses:
        why.append("<h3>Nearest misses</h3>")
        why.extend(rule_card(r, 4) for r in near_misses)
    sections.append(Section("Why not", "".join(why) or "<p>Every rule fired or failed "
                            "clearly.</p>", id="why-not",
                            intro="Rules that did not fire, nearest first: each test with "
                                  "the patient's value and its outcome (held, failed, or "
                                  "unknown — an unknown fact is never counted as failed)."))
    ruleset = assessment.ruleset
    return render_page(
        f"ALL guideline report — patient {assessment.patient_id or '(no id)'}", sections,
        subtitle=f"Ruleset {ruleset.name} {ruleset.version} ({ruleset.digest[:19]}…)",
        footer="Decision support generated by all-rules from the facts given; it does not "
               "replace clinical judgement.")


def explanation_page(explanation: Explanation) -> str:
    """``all-rules explain --format html``: one rule's explanation on a page."""
    sections = [Section("Rule", "".join(rule_card(v) for v in explanation.variants),
                        id="rule"),
                Section("Risk group", f"<p>{escape(explanation.risk.summary)}</p>",
                        id="risk")]
    return render_page(f"Why {'' if explanation.fired else 'not '}{explanation.rule_id}",
                       sections, subtitle=f"Patient {explanation.patient_id or '(no id)'}")


def citation_titles(citations: Mapping[Any, Any]) -> dict[str, str]:
    """Citation id → title (or note) from a ruleset's citation list."""
    return {str(key): str(getattr(spec, "title", None) or getattr(spec, "note", None) or "")
            for key, spec in citations.items()}


__all__ = ["citation_titles", "definition_list", "explanation_page", "patient_page"]

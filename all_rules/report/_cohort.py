"""The cohort HTML report (``all-rules cohort … --report report.html``).

Built from the cohort's summary (the counts ``--summary`` writes), never from the rows: a
report of a million patients costs what a report of ten does. Rules are sorted into what a
researcher looks for by what they are, not by name, so that new rules land in the right place:
risk features (``concludes: risk_feature``), data-needed items (``kind: data_needed``), scope
items (``kind: scope``: decisions the guideline does not make, policy 7), plan
audits (rules that test a ``plan.*`` fact), and the other recommendations and alerts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from all_rules.output import ItemPhase, RiskGroup
from all_rules.ruleset._conditions import FactTest, walk
from all_rules.ruleset._model import Rule, Ruleset
from all_rules.ruleset._schema import Concludes

from ._html import Section, definition_list, escape, render_page, table, write_page
from ._plots import bar_chart, figure, stacked_bar_chart

_GROUP_ORDER = [g.value for g in (RiskGroup.STANDARD, RiskGroup.PROVISIONAL_STANDARD,
                                  RiskGroup.INDETERMINATE, RiskGroup.HIGH,
                                  RiskGroup.VERY_HIGH)]


def category(rule: Rule) -> str:
    """Which part of the report a rule's item belongs to."""
    spec = rule.spec
    if spec.concludes is Concludes.RISK_FEATURE:
        return "feature"
    if spec.kind is not None and spec.kind.value == "data_needed":
        return "data"
    if spec.kind is not None and spec.kind.value == "scope":
        return "scope"
    # The plan audit: its own file, or any rule that reads the treatment plan.
    if Path(rule.file).stem == "audit" or spec.id.startswith("audit.") or any(
            isinstance(leaf, FactTest) and leaf.fact.startswith("plan.")
            for leaf in walk(rule.condition)):
        return "audit"
    return "recommendation"


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.1f} %" if total else "–"


def _rule_section(title: str, anchor: str, intro: str, rules: Sequence[Rule],
                  counts: Mapping[str, int], assessed: int, what: str) -> Section:
    rows = sorted(((counts.get(r.spec.id, 0), r) for r in rules),
                  key=lambda pair: (-pair[0], pair[1].spec.id))
    fired = [(n, r) for n, r in rows if n > 0]
    parts = []
    if fired:
        phases = [p.value for p in ItemPhase if any(r.spec.phase is p for _, r in fired)]
        series = {phase: [float(n) if r.spec.phase and r.spec.phase.value == phase else 0.0
                          for n, r in fired] for phase in phases}
        svg = stacked_bar_chart([r.spec.id for _, r in fired], series,
                                description=f"{title}: patients per rule, by phase",
                                xlabel="patients")
        parts.append(figure(svg, f"{title}: patients with each {what}, coloured and "
                                 "hatched by phase; the number ends each bar."))
    else:
        parts.append(f"<p>No {escape(what)} in this cohort.</p>")
    by_phase = sorted(rows, key=lambda pair: (
        list(ItemPhase).index(pair[1].spec.phase) if pair[1].spec.phase else 99, -pair[0],
        pair[1].spec.id))
    parts.append(table(
        ("Phase", "Rule", "Kind, severity", "Patients", "Share"),
        ((r.spec.phase.value if r.spec.phase else "",
          f"<code>{escape(r.spec.id)}</code><br><small>{escape(r.spec.title)}</small>",
          ", ".join(x.value for x in (r.spec.kind, r.spec.severity) if x is not None),
          n, _share(n, assessed)) for n, r in by_phase),
        caption=f"{title} by phase (every rule, also those that never applied; share of "
                "the patients assessed)", numeric=(3, 4), raw=(1,)))
    return Section(title, "".join(parts), id=anchor, intro=intro)


def _rule_sections(parts: Mapping[str, Sequence[Rule]], counts: Mapping[str, int],
                   assessed: int) -> list[Section]:
    """One section per category of item, in reading order."""
    return [
        _rule_section("Recommendations and alerts", "recommendations",
                      "How often each recommendation or alert applied.",
                      parts["recommendation"], counts, assessed, "recommendation or alert"),
        _rule_section("Data needed", "data-needed",
                      "What is missing in this data set: facts unknown where they decide a "
                      "recommendation.", parts["data"], counts, assessed, "data-needed item"),
        _rule_section("Not decided here", "scope",
                      "Decisions this guideline does not make for these patients: how often "
                      "each scope item (policy 7) sent the decision to the treating protocol "
                      "or a referral.", parts["scope"], counts, assessed, "scope item"),
        _rule_section("Plan audit", "plan-audit",
                      "Concordance of the treatment plans with the guideline: how often each "
                      "plan-audit alert fired.", parts["audit"], counts, assessed,
                      "plan-audit alert"),
        _rule_section("Risk features", "risk-features", "How often each risk feature was "
                      "present.", parts["feature"], counts, assessed, "risk feature"),
    ]


def cohort_page(summary: Mapping[str, Any], ruleset: Ruleset, *, source: str = "") -> str:
    """The cohort report as one HTML page, from a summary (``CohortSummary.to_dict()``)."""
    assessed = int(summary.get("assessed", 0))
    counts: Mapping[str, int] = summary.get("recommendations", {})
    groups: Mapping[str, int] = summary.get("risk_groups", {})
    first: dict[str, Rule] = {}
    for rule in ruleset.rules:
        if rule.spec.kind is not None:
            first.setdefault(rule.spec.id, rule)
    parts: dict[str, list[Rule]] = {"feature": [], "data": [], "scope": [], "audit": [],
                                    "recommendation": []}
    for rule in first.values():
        parts[category(rule)].append(rule)

    overview = definition_list([
        ("Patients (rows read)", f"{int(summary.get('patients', 0)):,}"),
        ("Assessed", f"{assessed:,}"),
        ("Invalid rows", f"{int(summary.get('invalid_rows', 0)):,}"),
        ("Engine errors", f"{int(summary.get('engine_errors', 0)):,}"),
        ("Ruleset", f"{ruleset.name} {ruleset.version}"),
        *((f"Local parameter{' (UNSAFE override)' if o['unsafe'] else ''}",
           f"{o['name']} = {o['local']:g} {o['unit']} (shipped {o['shipped']:g} {o['unit']})"
           + (f"; reason given: {o['reason']}" if o.get("reason") else ""))
          for o in summary.get("parameter_overrides", ())),
    ])
    order = [g for g in _GROUP_ORDER if g in groups] + sorted(set(groups) - set(_GROUP_ORDER))
    group_svg = bar_chart(order, [float(groups[g]) for g in order],
                          description="Patients per risk group")
    group_body = figure(group_svg, "Patients per risk group; the number ends each bar.") + \
        table(("Risk group", "Patients", "Share of assessed"),
              ((g, int(groups[g]), _share(int(groups[g]), assessed)) for g in order),
              caption="Risk groups", numeric=(1, 2))
    sections = [
        Section("Overview", overview, id="overview",
                intro="Counts are the cohort summary's (the same numbers as --summary)."),
        Section("Risk groups", group_body, id="risk-groups"),
        *_rule_sections(parts, counts, assessed),
    ]
    unknown = sorted((rule_id, int(n)) for rule_id, n in counts.items() if rule_id not in first)
    if unknown:
        sections.append(Section(
            "Rules not in this ruleset", table(("Rule", "Patients"), unknown, numeric=(1,)),
            id="unknown-rules", intro="Counted in the summary but absent from the ruleset "
                                      "the report was drawn with (another version?)."))
    title = "ALL guideline cohort report" + (f" — {source}" if source else "")
    return render_page(title, sections,
                       subtitle=f"{assessed:,} patients assessed with {ruleset.name} "
                                f"{ruleset.version} ({ruleset.digest[:19]}…)",
                       footer="Generated by all-rules from the cohort summary.")


def write_cohort_report(path: Path, summary: Mapping[str, Any], ruleset: Ruleset, *,
                        source: str = "") -> None:
    """Write the report next to its final name, then move it in place (never half a page)."""
    write_page(path, cohort_page(summary, ruleset, source=source))


__all__ = ["category", "cohort_page", "write_cohort_report"]

"""The diff HTML report (``all-rules diff … --report report.html``).

Built from the diff summary (``DiffSummary.to_dict()``, the counts ``--summary`` writes) alone,
never from the rows: its size is bounded by the number of kinds of change, of risk-group
transitions and of rule ids, so a diff over a million patients costs what one over ten does.
The page and the plots are the shared ones (``_html``, ``_plots``), as in the cohort report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._html import Section, definition_list, escape, render_page, table, write_page
from ._plots import bar_chart, figure, stacked_bar_chart

__all__ = ["KIND_NAMES", "diff_page", "write_diff_report"]

KIND_NAMES = {"risk_group": "Risk group", "features": "Risk features",
              "missing": "Missing facts", "added": "Items added",
              "removed": "Items removed", "changed": "Items changed"}
"""What each kind of change (``CHANGE_KINDS``) is called on the page."""
RULE_SERIES = ("added", "removed", "changed")
PLOTTED_RULES = 40
"""At most this many rules in the per-rule plot (the most often touched); the table has all."""


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.1f} %" if total else "–"


def _examples(examples: Sequence[str]) -> str:
    return ", ".join(str(e) for e in examples)


def _overrides(info: Mapping[str, Any]) -> str:
    found: Mapping[str, Any] = info.get("overrides") or {}
    unsafe = {o["name"]: o.get("reason") for o in info.get("parameter_overrides", ())
              if o.get("unsafe")}
    return ", ".join((f"{name} = {value:g}" if isinstance(value, int | float) else
                      f"{name} = {value}")
                     + (f" (UNSAFE override: {unsafe[name]})" if name in unsafe else "")
                     for name, value in found.items()) or "none"


def _digest(digest: str) -> str:
    """A digest as code with break opportunities (``<wbr>``), so that it never widens the
    page; copied, it is the digest unchanged."""
    algorithm, _, value = digest.rpartition(":")
    half = (len(value) + 1) // 2
    head = f"{escape(algorithm)}:<wbr>" if algorithm else ""
    return f"<code>{head}{escape(value[:half])}<wbr>{escape(value[half:])}</code>"


def _guidelines(summary: Mapping[str, Any], overlays: Mapping[str, str]) -> str:
    headers = ["Side", "Ruleset", "Version", "Digest", "Parameter overrides"]
    if overlays:
        headers.append("Overlay file")
    rows = []
    for side in ("from", "to"):
        info: Mapping[str, Any] = summary.get(side) or {}
        row = [side, escape(info.get("name", "?")), escape(info.get("version", "?")),
               _digest(str(info.get("digest", "?"))),
               escape(_overrides(info)).replace("_", "_<wbr>")]
        if overlays:
            row.append(escape(overlays.get(side, "none")))
        rows.append(row)
    return table(headers, rows, caption="The two guidelines compared (overrides are the "
                 "parameters an overlay or --param set)", raw=range(len(headers)))


def _kinds_section(summary: Mapping[str, Any], assessed: int) -> Section:
    kinds: Mapping[str, Mapping[str, Any]] = summary.get("changes", {})
    order = [k for k in KIND_NAMES if k in kinds] + sorted(set(kinds) - set(KIND_NAMES))
    names = [KIND_NAMES.get(k, k) for k in order]
    counts = [int(kinds[k].get("patients", 0)) for k in order]
    parts = []
    if any(counts):
        svg = bar_chart(names, [float(n) for n in counts],
                        description="Patients changed, by kind of change")
        parts.append(figure(svg, "Patients whose assessment changed, by kind of change (a "
                                 "patient can count under several); the number ends each "
                                 "bar."))
    else:
        parts.append("<p>No patient's assessment changed.</p>")
    parts.append(table(
        ("Change", "Patients", "Share of assessed", "Example patients"),
        ((name, n, _share(n, assessed), _examples(kinds[k].get("examples", ())))
         for k, name, n in zip(order, names, counts, strict=True)),
        caption="Patients by kind of change (the first patients in input order as examples)",
        numeric=(1, 2)))
    return Section("Changes by kind", "".join(parts), id="kinds",
                   intro="Risk group, risk features, missing facts, and the items added, "
                         "removed or changed (kind, severity, phase, wording, evidence, "
                         "citations or doses).")


def _groups_section(summary: Mapping[str, Any], assessed: int) -> Section:
    transitions: Sequence[Mapping[str, Any]] = summary.get("risk_groups", [])
    if not transitions:
        return Section("Risk-group transitions", "<p>No patient changed risk group.</p>",
                       id="risk-groups")
    labels = [f"{t['before']} → {t['after']}" for t in transitions]
    counts = [int(t.get("patients", 0)) for t in transitions]
    svg = bar_chart(labels, [float(n) for n in counts],
                    description="Patients per risk-group transition")
    body = figure(svg, "Patients per risk-group transition (before → after), most frequent "
                       "first; the number ends each bar.") + table(
        ("Before", "After", "Patients", "Share of assessed", "Example patients"),
        ((t["before"], t["after"], n, _share(n, assessed), _examples(t.get("examples", ())))
         for t, n in zip(transitions, counts, strict=True)),
        caption="Risk-group transitions", numeric=(2, 3))
    return Section("Risk-group transitions", body, id="risk-groups")


def _rules_section(summary: Mapping[str, Any]) -> Section:
    rules: Mapping[str, Mapping[str, Any]] = summary.get("rules", {})
    order = sorted(rules, key=lambda rule_id: (-int(rules[rule_id].get("patients", 0)),
                                                rule_id))
    if not order:
        return Section("Rules", "<p>No item was added, removed or changed.</p>", id="rules")
    shown = order[:PLOTTED_RULES]
    series = {name: [float(rules[r].get(name, 0)) for r in shown] for name in RULE_SERIES}
    svg = stacked_bar_chart(shown, series,
                            description="Patients per rule, by added, removed or changed",
                            xlabel="patients")
    more = (f" The {PLOTTED_RULES} most often touched of {len(order)} rules; the table "
            "lists every one." if len(order) > len(shown) else "")
    parts = [figure(svg, "Patients for whom each rule's item was added, removed or changed, "
                         "coloured and hatched by change; the number ends each bar." + more)]

    def fields(rule: Mapping[str, Any]) -> str:
        found: Mapping[str, int] = rule.get("fields") or {}
        return ", ".join(f"{name} {int(n):,}" for name, n in found.items()) or "–"

    parts.append(table(
        ("Rule", "Patients", "Added", "Removed", "Changed", "Fields changed",
         "Example patients"),
        ((f"<code>{escape(r)}</code>", int(rules[r].get("patients", 0)),
          int(rules[r].get("added", 0)), int(rules[r].get("removed", 0)),
          int(rules[r].get("changed", 0)), fields(rules[r]),
          _examples(rules[r].get("examples", ()))) for r in order),
        caption="Every rule whose item changed for some patient, most patients first",
        numeric=(1, 2, 3, 4), raw=(0,)))
    return Section("Rules", "".join(parts), id="rules",
                   intro="Items are matched by rule id: added (only in the new guideline's "
                         "assessment), removed (only in the old one's) or changed (in both, "
                         "with a field that differs).")


def diff_page(summary: Mapping[str, Any], *, source: str = "",
              overlays: Mapping[str, str] | None = None) -> str:
    """The diff report as one HTML page, from a summary (``DiffSummary.to_dict()``).

    ``overlays`` optionally names the overlay file of a side (``{"to": "ours.yaml"}``); the
    overrides it set are in the summary either way."""
    assessed = int(summary.get("assessed", 0))
    changed = int((summary.get("changed") or {}).get("patients", 0))
    old: Mapping[str, Any] = summary.get("from") or {}
    new: Mapping[str, Any] = summary.get("to") or {}
    overview = _guidelines(summary, overlays or {}) + definition_list([
        ("Patients (rows read)", f"{int(summary.get('patients', 0)):,}"),
        ("Assessed (under both)", f"{assessed:,}"),
        ("Changed", f"{changed:,} ({_share(changed, assessed)} of assessed)"),
        ("Unchanged", f"{int(summary.get('unchanged', assessed - changed)):,}"),
        ("Invalid rows", f"{int(summary.get('invalid_rows', 0)):,}"),
        ("Engine errors", f"{int(summary.get('engine_errors', 0)):,}"),
        ("Example changed patients",
         _examples((summary.get("changed") or {}).get("examples", ())) or "none"),
    ])
    sections = [
        Section("Overview", overview, id="overview",
                intro="Counts are the diff summary's (the same numbers as --summary)."),
        _kinds_section(summary, assessed),
        _groups_section(summary, assessed),
        _rules_section(summary),
    ]

    def who(info: Mapping[str, Any]) -> str:
        return f"{info.get('name', '?')} {info.get('version', '?')}"

    title = "ALL guideline diff report" + (f" — {source}" if source else "")
    return render_page(title, sections,
                       subtitle=f"From {who(old)} to {who(new)}: {changed:,} of {assessed:,} "
                                f"patients assessed changed ({_share(changed, assessed)})",
                       footer="Generated by all-rules from the diff summary.")


def write_diff_report(path: Path, summary: Mapping[str, Any], *, source: str = "",
                      overlays: Mapping[str, str] | None = None) -> None:
    """Write the report next to its final name, then move it in place (never half a page)."""
    write_page(path, diff_page(summary, source=source, overlays=overlays))

"""The CLI's explanation paths: ``all-rules explain`` and ``assess --why-not / --format html``.

Kept apart from ``_main`` so that the command line stays a thin dispatcher.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from all_rules.engine._guideline import Guideline
from all_rules.explain import Explanation, UnknownRuleError
from all_rules.output import Assessment
from all_rules.report._describe import assessment_text

EXIT_OK, EXIT_INVALID_INPUT = 0, 2


def _refuse(error: UnknownRuleError) -> int:
    print(f"all-rules: {error}", file=sys.stderr)
    return EXIT_INVALID_INPUT


def explain_command(args: argparse.Namespace, data: Any, guideline: Guideline) -> int:
    """``all-rules explain PATH RULE_ID``: exit 2 (with a did-you-mean) for an unknown id."""
    try:
        explanation = guideline.explain(data, args.rule_id)
    except UnknownRuleError as error:
        return _refuse(error)
    if args.format == "json":
        sys.stdout.write(explanation.to_json() + "\n")
    elif args.format == "html":
        from all_rules.report._patient import explanation_page

        page: str = explanation_page(explanation)
        sys.stdout.write(page)
    else:
        sys.stdout.write(explanation.text())
    return EXIT_OK


def assess_explained(guideline: Guideline, data: Any, assessment: Assessment,
                     why_not: list[str], fmt: str) -> str:
    """The assessment with the explanations asked for: JSON gains a ``why_not`` list, the
    text an appended section; the HTML page shows them in its "why not" section."""
    try:
        explanations = [guideline.explain(data, rule_id) for rule_id in why_not]
    except UnknownRuleError as error:
        _refuse(error)
        raise SystemExit(EXIT_INVALID_INPUT) from None
    if fmt == "html":
        from all_rules.report._patient import citation_titles, patient_page

        # Any rule's explanation carries the risk group's: take the first rule's.
        risk = guideline.explain(data, guideline.ruleset.rules[0].spec.id)
        page: str = patient_page(assessment, explanations,
                                 guideline.nearest_misses(data, limit=5),
                                 citation_titles(guideline.ruleset.citations), risk,
                                 {r.spec.id: r.spec.title for r in guideline.ruleset.rules})
        return page
    if fmt == "text":
        return assessment_text(assessment) + "".join(
            "\nWhy / why not\n" + e.text() for e in explanations)
    body = assessment.to_dict()
    body["why_not"] = [_plain(e) for e in explanations]
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def _plain(explanation: Explanation) -> dict[str, Any]:
    data: dict[str, Any] = explanation.model_dump(mode="json")
    return data

"""An item's words and evidence: its templates filled in, and the tests that made it fire.

Each test of a rule's condition is worded once at load (a ``Leaf``); per patient, the tests
of the branches that fired become the item's evidence, with the patient's values, and the
rule's text and reason templates are filled from the patient's facts, the guideline's
parameters and that evidence. A template that names only parameters is rendered once.

Evidence has two forms: machine-readable in the item's JSON (fact, value, and the test with
its operator, ``>= 35``), and clinical prose wherever a person reads it — the reason's
``{evidence}``, the text output, the HTML report, CDS cards and explanations
(``evidence_prose``, ``evidence_phrase``, ``condition_phrase``): each fact once with its value
and unit, the thresholds it passed in words (``at least``, ``above``, ``at most``,
``under``, ``not``), yes/no facts as phrases and enum values in words. Rendered texts and
reasons start with a capital (``sentence``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from all_rules.ruleset._conditions import DerivedTest, FactTest
from all_rules.ruleset._factspec import FACTS
from all_rules.ruleset._model import Rule
from all_rules.ruleset._template import Template

from . import _format
from ._prepare import PreparedFacts

_DERIVED_TESTS = ("derived", "not derived", "any derived", "none derived")


@attrs.frozen
class Leaf:
    """One test of one rule branch, with everything about its evidence fixed at load."""

    fact: str
    test: str
    constant: tuple[Any] | None
    """``(value,)`` when the evidence value does not depend on the patient."""


def leaf(test: FactTest | DerivedTest, groups: dict[str, str],
         parameters: Mapping[str, float]) -> Leaf:
    """A test as evidence: the fact it reads, its wording, and its value when fixed.

    ``groups``: the risk group each group rule concludes, by rule id."""
    if isinstance(test, FactTest):
        return Leaf(test.fact, _format.test_text(test, parameters), None)
    value: Any
    if test.name in groups:
        group = groups[test.name]
        fact, value, text = "risk.group", group, f"{'==' if test.present else '!='} {group}"
    elif test.name is not None:
        fact, value = test.name, test.present
        text = "derived" if test.present else "not derived"
    else:
        fact = {"risk_feature": "risk.features", "missing_fact": "risk.missing",
                "risk_group": "risk.group"}[test.kind or ""]
        value = None if test.present else []
        text = "any derived" if test.present else "none derived"
    return Leaf(fact, text, (value,))


def evidence(leaves: list[list[Leaf]], branches: tuple[int, ...],
             values: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """(fact, value, test) of every test of the fired branches, each once, in order."""
    found: list[tuple[str, Any, str]] = []
    seen: set[tuple[str, str]] = set()
    for branch in branches:
        for item in leaves[branch]:
            if (item.fact, item.test) in seen:
                continue
            seen.add((item.fact, item.test))
            value = item.constant[0] if item.constant else values.get(item.fact)
            found.append((item.fact, value, item.test))
    return found


def words(rule: Rule, fixed: tuple[str | None, str | None], parameters: Mapping[str, float],
          prepared: PreparedFacts, evidence: list[tuple[str, Any, str]]) -> tuple[str, str]:
    """The item's text and reason for this patient (``fixed``: see ``fixed_words``)."""

    def lookup(name: str) -> str | None:
        if name.startswith("$"):
            return _format.named_value_text(name[1:], parameters[name[1:]])
        if name == "evidence":
            return evidence_prose(evidence)
        if name == "bsa_source":
            return {"given": "as given", "mosteller": "Mosteller, from height and weight"
                    }.get(prepared.bsa_source or "")
        value = prepared.values.get(name)
        spec = FACTS.get(name)
        if spec is not None and spec.type == "enum" and isinstance(value, str):
            return enum_words(name, value)
        return _format.named_value_text(name, value)

    assert rule.text is not None
    assert rule.reason is not None
    return (fixed[0] if fixed[0] is not None else sentence(rule.text.render(lookup)),
            fixed[1] if fixed[1] is not None else sentence(rule.reason.render(lookup)))


def fixed_words(rule: Rule, parameters: Mapping[str, float]) -> tuple[str | None, str | None]:
    """A rule's text and reason, rendered once where they name only parameters."""

    def parameter(name: str) -> str | None:
        return _format.named_value_text(name[1:], parameters[name[1:]])

    def fixed(template: Template | None) -> str | None:
        if template is None or not all(n.startswith("$") for n in template.names()):
            return None
        return sentence(template.render(parameter))

    return fixed(rule.text), fixed(rule.reason)


def evidence_prose(evidence: list[tuple[str, Any, str]],
                   titles: Mapping[str, str] | None = None) -> str:
    """The evidence of an item in clinical prose, as ``{evidence}`` names it: one phrase per
    fact, in order, with every threshold it passed (``age 20 years, at least 18 years and
    under 65 years; transplant eligible; risk group high``)."""
    heads: dict[str, str] = {}
    clauses: dict[str, list[str]] = {}
    for fact, value, test in _tightest(evidence):
        head, clause = evidence_parts(fact, value, test, titles)
        key = fact if test not in _DERIVED_TESTS else f"{fact} {test}"
        heads.setdefault(key, head)
        found = clauses.setdefault(key, [])
        if clause and clause not in found:
            found.append(clause)
    return "; ".join(heads[key] + (f", {' and '.join(clauses[key])}" if clauses[key] else "")
                     for key in heads)


def _tightest(evidence: list[tuple[str, Any, str]]) -> list[tuple[str, Any, str]]:
    """The evidence without a bound another test of the same fact makes redundant (``at
    least 18 years`` beside ``at least 35 years``)."""
    best: dict[tuple[str, bool], tuple[float, bool]] = {}
    for fact, _, test in evidence:
        bound = _bound(test)
        if bound is not None:
            lower, limit, strict = bound
            current = best.get((fact, lower))
            if current is None or _tighter(lower, (limit, strict), current):
                best[(fact, lower)] = (limit, strict)
    kept = []
    for entry in evidence:
        bound = _bound(entry[2])
        if bound is None or best[(entry[0], bound[0])] == bound[1:]:
            kept.append(entry)
    return kept


def _bound(test: str) -> tuple[bool, float, bool] | None:
    """(is a lower bound, threshold, strict) of an ordering test, else None."""
    op, operands = _format.split_test(test)
    if op not in _format.COMPARISON_WORDS:
        return None
    try:
        return op.startswith(">"), float(operands[0]), len(op) == 1
    except ValueError:
        return None


def _tighter(lower: bool, bound: tuple[float, bool], than: tuple[float, bool]) -> bool:
    if bound[0] != than[0]:
        return bound[0] > than[0] if lower else bound[0] < than[0]
    return bound[1] and not than[1]


def evidence_phrase(fact: str, value: Any, test: str,
                    titles: Mapping[str, str] | None = None) -> str:
    """One piece of evidence in clinical prose: the fact with its value and unit, and the
    threshold it passed where one matters (``WBC at diagnosis 45 ×10⁹/L, above 30 ×10⁹/L``,
    ``CNS status CNS1``, ``transplant eligible``, ``end-of-induction MRD unknown``, ``a
    high-risk feature present``).

    ``test`` is the machine-readable test of the evidence (``> 30``, ``in [CNS1, CNS2]``,
    ``== true``, ``any derived``); ``titles`` (rule id → title) words a test of another
    rule's conclusion, else its id is put in words."""
    head, clause = evidence_parts(fact, value, test, titles)
    return f"{head}, {clause}" if clause else head


def evidence_parts(fact: str, value: Any, test: str,
                   titles: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """Evidence as the fact with its value (``age 40 years``) and the threshold it passed
    (``at least 35 years``; ``None`` where the value says it all)."""
    if test in _DERIVED_TESTS:
        return _derived_phrase(fact, test, titles), None
    op, operands = _format.split_test(test)
    if fact == "risk.group":
        group = enum_words(fact, operands[0] if operands else value)
        return (f"risk group {group}" if op == "==" else f"risk group not {group}"), None
    if op == "unknown":
        return unknown_phrase(fact), None
    shown = fact_words(fact, value)
    spec = FACTS.get(fact)
    if op in ("known", "in", "==") or (op == "!=" and spec is not None and spec.type == "bool"):
        return shown, None
    if op == "!=":
        return shown, f"not {enum_words(fact, operands[0])}"
    if op == "not in":
        return shown, f"not {alternatives([enum_words(fact, o) for o in operands], 'or')}"
    if op in _format.COMPARISON_WORDS:
        return shown, (f"{_format.COMPARISON_WORDS[op]} "
                       f"{_format.threshold_text(fact, operands[0])}")
    return shown, None  # pragma: no cover - every worded test is handled above


def condition_phrase(fact: str, test: str) -> str:
    """A test in words without a patient's value: what the fact must be for the test to
    hold (``age at least 35 years``, ``CNS status CNS1 or CNS2``, ``transplant eligible``)."""
    op, operands = _format.split_test(test)
    spec = FACTS.get(fact)
    label = spec.label if spec else words_of_id(fact)
    if op == "known":
        return f"{label} known"
    if op == "unknown":
        return unknown_phrase(fact)
    if spec is not None and spec.type == "bool" and op in ("==", "!="):
        truth = (operands[0] == "true") == (op == "==")
        return bool_phrase(fact, truth)
    items = [enum_words(fact, o) for o in operands]
    if op in ("==", "in"):
        return f"{label} {alternatives(items, 'or')}"
    if op in ("!=", "not in"):
        return f"{label} not {alternatives(items, 'or')}"
    if op in _format.COMPARISON_WORDS:
        return (f"{label} {_format.COMPARISON_WORDS[op]} "
                f"{_format.threshold_text(fact, operands[0])}")
    return f"{label} {test}"  # pragma: no cover


def derived_condition(name: str | None, kind: str | None, present: bool) -> str:
    """A test of another rule's conclusion in words: ``risk group high``, ``no high-risk
    feature present``, ``slow remission: present`` (``name``: a rule id; ``kind``: a kind
    of conclusion, when no name)."""
    if name is not None and name.startswith("group."):
        group = enum_words("risk.group", name.removeprefix("group."))
        return f"risk group {group}" if present else f"risk group not {group}"
    if name is None:
        fact = {"risk_feature": "risk.features", "missing_fact": "risk.missing"}.get(
            kind or "", "risk.group")
        return _KIND_WORDS[fact][0 if present else 1]
    return f"{words_of_id(name)}: {'present' if present else 'absent'}"


def sentence(text: str) -> str:
    """Text as a sentence: starting with a capital (a template may begin with a value)."""
    return text[0].upper() + text[1:] if text[:1].islower() else text


def alternatives(items: list[str], conjunction: str) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def fact_words(fact: str, value: Any) -> str:
    """A fact with its value in words: a yes/no fact as a phrase (``transplant eligible``,
    ``no TKI available``), an enum value in words, any other value with its unit."""
    spec = FACTS.get(fact)
    if spec is not None and spec.type == "bool" and isinstance(value, bool):
        return bool_phrase(fact, value)
    if spec is not None and spec.type == "enum" and isinstance(value, str):
        return _format.fact_phrase(fact, enum_words(fact, value))
    return _format.fact_phrase(fact, value)


def unknown_phrase(fact: str) -> str:
    """A fact that is not known, in words (``end-of-induction MRD unknown``)."""
    spec = FACTS.get(fact)
    if spec is not None and spec.type == "bool":
        return f"{spec.label}: not known"
    return _format.fact_phrase(fact, None)


def bool_phrase(fact: str, value: bool) -> str:
    """A yes/no fact as a phrase: ``transplant eligible`` / ``not transplant eligible``."""
    if fact in BOOL_WORDS:
        return BOOL_WORDS[fact][0 if value else 1]
    spec = FACTS.get(fact)
    label = spec.label if spec else words_of_id(fact)
    return f"{label}: {'yes' if value else 'no'}"


def enum_words(fact: str, value: Any) -> str:
    """An enum value (or a risk group) as a clinician writes it (``isolated CNS``)."""
    text = _format.literal_text(value) if not isinstance(value, str) else value
    return ENUM_WORDS.get(fact, {}).get(text) or _ANY_ENUM_WORDS.get(text) or text.replace(
        "_", " ")


def words_of_id(rule_id: str) -> str:
    """A rule id in words when no title is at hand: ``risk.slow_remission`` → ``slow
    remission``."""
    tail = rule_id.split(".", 1)[-1]
    return " ".join(_ACRONYMS.get(word, word) for word in tail.split("_"))


def _derived_phrase(fact: str, test: str, titles: Mapping[str, str] | None) -> str:
    present = test in ("derived", "any derived")
    if test in ("any derived", "none derived"):
        return _KIND_WORDS[fact][0 if present else 1]
    title = (titles or {}).get(fact)
    name = _lower_first(title) if title else words_of_id(fact)
    return f"{name}: {'present' if present else 'absent'}"


def _lower_first(text: str) -> str:
    """A title inside a sentence: ``Slow remission`` → ``slow remission``, ``MRD`` kept."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


_KIND_WORDS = {
    "risk.features": ("a high-risk feature present", "no high-risk feature present"),
    "risk.missing": ("a fact that decides the risk group unknown",
                     "every fact that decides the risk group known"),
    "risk.group": ("a risk group concluded", "no risk group concluded"),
}
"""A test of whether any rule of a kind concluded, in words (present, absent)."""

BOOL_WORDS: dict[str, tuple[str, str]] = {
    "testicular_involvement": ("testicular involvement", "no testicular involvement"),
    "kmt2a_rearranged": ("KMT2A rearranged", "KMT2A not rearranged"),
    "hypodiploidy": ("hypodiploid (fewer than 44 chromosomes)", "not hypodiploid"),
    "high_hyperdiploidy": ("high hyperdiploid", "not high hyperdiploid"),
    "etv6_runx1": ("ETV6::RUNX1 present", "ETV6::RUNX1 absent"),
    "iamp21": ("iAMP21 present", "iAMP21 absent"),
    "tcf3_hlf": ("TCF3::HLF present", "TCF3::HLF absent"),
    "ph_like": ("Ph-like ALL", "not Ph-like"),
    "abl1_t315i": ("ABL1 T315I mutation found", "no ABL1 T315I mutation"),
    "down_syndrome": ("Down syndrome", "no Down syndrome"),
    "testicular_involvement_end_of_induction": (
        "testicular involvement at the end of induction",
        "no testicular involvement at the end of induction"),
    "prior_allogeneic_hsct": ("a prior allogeneic HSCT", "no prior allogeneic HSCT"),
    "prior_cranial_irradiation": ("prior cranial irradiation", "no prior cranial irradiation"),
    "cd19_positive": ("CD19 positive", "CD19 negative"),
    "cd22_positive": ("CD22 positive", "CD22 negative"),
    "complete_remission": ("in complete remission", "not in complete remission"),
    "relapse_cns_involved": ("CNS involved at relapse", "CNS not involved at relapse"),
    "transplant_eligible": ("transplant eligible", "not transplant eligible"),
    "substantial_comorbidities": ("substantial comorbidities",
                                  "no substantial comorbidities"),
    "tki_available": ("a TKI available", "no TKI available"),
    "specialized_center": ("treated at a specialized center",
                           "not treated at a specialized center"),
    "plan.intrathecal_in_induction": ("intrathecal therapy planned in induction",
                                      "no intrathecal therapy planned in induction"),
    "plan.cranial_irradiation": ("cranial irradiation planned", "no cranial irradiation planned"),
    "plan.mrd_monitoring": ("MRD monitoring planned", "no MRD monitoring planned"),
    "plan.tki": ("a TKI planned", "no TKI planned"),
    "plan.allogeneic_hsct": ("allogeneic HSCT planned", "no allogeneic HSCT planned"),
    "plan.systemic_therapy": ("systemic therapy planned", "no systemic therapy planned"),
    "plan.given": ("a treatment plan given", "no treatment plan given"),
    "plan.has_doses": ("the plan lists doses", "the plan lists no doses"),
    "inconsistent.remission": ("remission facts contradict each other",
                               "remission facts consistent"),
    "inconsistent.relapse_phase": ("phase relapsed with no relapse recorded",
                                   "phase consistent with the number of relapses"),
    "inconsistent.remission_number": ("remission number contradicts the number of relapses",
                                      "remission number consistent with the number of "
                                      "relapses"),
    "inconsistent.relapse_site": ("a relapse site given with no relapse",
                                  "relapse site consistent with the number of relapses"),
    "inconsistent.age_at_diagnosis": ("age at diagnosis above the current age",
                                      "age at diagnosis consistent with the current age"),
}
"""A yes/no fact as a phrase (true, false); any other reads ``label: yes`` / ``label: no``."""

ENUM_WORDS: dict[str, dict[str, str]] = {
    "relapse_site": {"isolated_cns": "isolated CNS", "isolated_testicular":
                     "isolated testicular"},
    "line_of_therapy": {"first": "first (no relapse)", "relapse": "after a relapse"},
    "plan.regimen": {"source_backbone": "source backbone",
                     "ukall_xii_ecog_2993": "UKALL XII/ECOG 2993", "hyper_cvad": "hyper-CVAD"},
}
"""Enum values in words, where replacing ``_`` by a space is not enough."""

_ANY_ENUM_WORDS = {"very_high": "very high", "provisional_standard": "provisionally standard",
                   "relapsed_refractory": "relapsed or refractory"}

_ACRONYMS = {"mrd": "MRD", "cns": "CNS", "wbc": "WBC", "hsct": "HSCT", "tki": "TKI",
             "kmt2a": "KMT2A", "ph": "Ph", "cr1": "CR1", "cr2": "CR2", "bsa": "BSA",
             "cd19": "CD19", "cd22": "CD22", "nci": "NCI", "b": "B", "t": "T"}

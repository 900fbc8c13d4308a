"""The FHIR code map (``fhir_codes.yaml``): which codes, units and answers mean which fact.

Shared by the FHIR reader and the draft-order reader; imports nothing else of the FHIR side,
so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from all_rules.exceptions import AllRulesError

CODE_MAP = Path(__file__).with_name("fhir_codes.yaml")


class FhirMappingError(AllRulesError, ValueError):
    """The Bundle cannot be read at all; ``problems`` names each resource at fault.

    When the resources could be read before the fault (e.g. a Patient without a full birth
    date), ``has_all_diagnosis``, ``rejected_diagnoses`` and ``incomplete`` say what the
    diagnosis gate saw (as on ``FhirFacts``); otherwise ``has_all_diagnosis`` is None.
    """

    has_all_diagnosis: bool | None = None
    rejected_diagnoses: tuple[Unmapped, ...] = ()
    incomplete: bool = False

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"cannot map the FHIR Bundle to facts ({len(problems)} problem(s)):\n"
                         f"{lines}")


@attrs.frozen
class Unmapped:
    """A resource (or part of one) that was not used, and why; ``fact`` when it concerns one."""

    resource: str
    reason: str
    fact: str | None = None


def key(system: Any, code: Any) -> tuple[str, str]:
    return (str(system or ""), str(code or ""))


def _documents(extra: str | Path | None) -> list[Mapping[str, Any]]:
    documents = [yaml.safe_load(CODE_MAP.read_text(encoding="utf-8"))]
    if extra is not None:
        documents.append(yaml.safe_load(Path(extra).read_text(encoding="utf-8")) or {})
    return documents


@attrs.frozen
class CodeMap:
    """Codes → facts, units → factors, and the answers read as positive or negative."""

    observations: Mapping[tuple[str, str], tuple[str, str]]
    """(system, code) → (fact, kind: quantity | coded)."""
    coded_values: Mapping[str, Mapping[tuple[str, str], str]]
    """fact → (system, code) of a result value → the fact's value."""
    conditions: Mapping[tuple[str, str], Mapping[str, Any]]
    """(system, code) of an ALL diagnosis → the facts it carries."""
    units: Mapping[str, Mapping[str, float]]
    unit_strings: Mapping[str, str] = attrs.field(factory=dict)
    """a non-UCUM unit string (HL7 v2) → its UCUM code."""
    qualitative: Mapping[tuple[str, str], bool] = attrs.field(factory=dict)
    """(system, code) of an answer or interpretation → positive (True) / negative (False)."""
    qualitative_text: Mapping[str, bool] = attrs.field(factory=dict)
    log_units: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)
    """fact → a logarithmic unit → how it reads: ``log10`` (log10 of the fraction of cells)
    or ``reduction`` (a log reduction: the fraction is 10 to its negative)."""
    history_conditions: Mapping[tuple[str, str], str] = attrs.field(factory=dict)
    """(system, code) of a Condition other than ALL → the yes/no fact it makes true."""
    history_procedures: Mapping[tuple[str, str], str] = attrs.field(factory=dict)
    """(system, code) of a completed Procedure → the yes/no fact it makes true."""

    @classmethod
    def load(cls, extra: str | Path | None = None) -> CodeMap:
        """The shipped map, plus an institution's file of the same shape."""
        observations: dict[tuple[str, str], tuple[str, str]] = {}
        coded: dict[str, dict[tuple[str, str], str]] = {}
        conditions: dict[tuple[str, str], dict[str, Any]] = {}
        units: dict[str, dict[str, float]] = {}
        strings: dict[str, str] = {}
        answers: dict[tuple[str, str], bool] = {}
        texts: dict[str, bool] = {}
        logs: dict[str, dict[str, str]] = {}
        history: dict[str, dict[tuple[str, str], str]] = {"history_conditions": {},
                                                          "history_procedures": {}}
        for document in _documents(extra):
            for section, table in history.items():
                table.update({key(c["system"], c["code"]): str(entry["fact"])
                              for entry in document.get(section) or []
                              for c in entry.get("codes") or []})
            for entry in document.get("observations", []):
                for code in entry.get("codes", []):
                    observations[key(code["system"], code["code"])] = (entry["fact"],
                                                                       entry["kind"])
                for value, codes in (entry.get("values") or {}).items():
                    for code in codes:
                        coded.setdefault(entry["fact"], {})[key(code["system"],
                                                                code["code"])] = str(value)
            for entry in document.get("conditions", []):
                code = entry["code"]
                conditions[key(code["system"], code["code"])] = dict(entry.get("facts") or {})
            for fact, table in (document.get("units") or {}).items():
                units.setdefault(fact, {}).update({str(u): float(f) for u, f in table.items()})
            for fact, table in (document.get("log_units") or {}).items():
                logs.setdefault(fact, {}).update({str(u): _log_kind(k) for u, k in
                                                  table.items()})
            strings.update({str(k): str(v) for k, v in
                            (document.get("unit_strings") or {}).items()})
            qualitative = document.get("qualitative") or {}
            for polarity, flag in (("positive", True), ("negative", False)):
                answers.update({key(c["system"], c["code"]): flag
                                for c in qualitative.get(polarity) or []})
                texts.update({str(t).strip().lower(): flag
                              for t in (qualitative.get("text") or {}).get(polarity) or []})
        return cls(observations, coded, conditions, units, strings, answers, texts, logs,
                   history["history_conditions"], history["history_procedures"])

    def ucum(self, fact: str, code: str | None, unit: str | None) -> tuple[str, float] | None:
        """(the UCUM unit, its factor to the fact's unit), or None when not convertible."""
        table = self.units.get(fact, {})
        found = self._unit_in(table, code, unit)
        return None if found is None else (found, table[found])

    def log_unit(self, fact: str, code: str | None, unit: str | None) -> tuple[str, str] | None:
        """(the logarithmic unit, ``log10`` or ``reduction``), or None when it is not one."""
        table = self.log_units.get(fact, {})
        found = self._unit_in(table, code, unit)
        return None if found is None else (found, table[found])

    def _unit_in(self, table: Mapping[str, Any], code: str | None,
                 unit: str | None) -> str | None:
        """The key of ``table`` the unit means (as written, or through ``unit_strings``)."""
        for candidate in ([code] if code else [unit]):  # a UCUM code wins over its display
            if not candidate:
                continue
            if candidate in table:
                return candidate
            alias = self.unit_strings.get(candidate) or self.unit_strings.get(
                candidate.replace("μ", "µ"))
            if alias is None:
                lowered = candidate.lower().replace("μ", "µ")
                alias = next((v for k, v in self.unit_strings.items()
                              if k.lower() == lowered), None)
            if alias is not None and alias in table:
                return alias
        return None


def _log_kind(kind: Any) -> str:
    if kind not in ("log10", "reduction"):
        raise ValueError(f"log_units: {kind!r} is neither 'log10' nor 'reduction'")
    return str(kind)


_DEFAULT: list[CodeMap] = []


def default_map() -> CodeMap:
    if not _DEFAULT:
        _DEFAULT.append(CodeMap.load())
    return _DEFAULT[0]

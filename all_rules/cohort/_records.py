"""Flat records (CSV rows, Parquet rows, data-frame rows) to patient facts, and back.

A flat record uses the fact names (docs/facts.md) as columns, ``plan.<field>`` for the plan, and
``plan.doses`` for the planned doses written as ``drug dose unit`` entries separated by
``;`` (``vincristine 1.4 mg/m2; daunorubicin 45 mg``). An empty cell, a null, a NaN, or
the text ``unknown`` for an enum column is unknown.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from all_rules.engine._input import excerpt
from all_rules.exceptions import FieldError
from all_rules.facts import PatientFacts, Plan
from all_rules.ruleset._conditions import suggest

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}
#: Numbers in text cells: ASCII digits only, no ``_`` separators, no ``nan``/``inf``, at
#: most ``NUMBER_CHARS`` characters (Python's own parsers accept ``4_0`` and ``٤٠`` as 40).
NUMBER_CHARS = 40
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_WHOLE = re.compile(r"[+-]?[0-9]+")


def _kinds(model: type[Any], prefix: str) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for name, info in model.model_fields.items():
        text = repr(info.annotation)
        if name in ("plan", "doses"):
            continue
        if "bool" in text:
            kinds[prefix + name] = "bool"
        elif "int" in text and "float" not in text:
            kinds[prefix + name] = "int"
        elif "float" in text:
            kinds[prefix + name] = "float"
        else:
            kinds[prefix + name] = "str"
    return kinds


#: Every column a flat record may have, with the kind of its values.
COLUMNS: dict[str, str] = {**_kinds(PatientFacts, ""), **_kinds(Plan, "plan."),
                           "plan.doses": "doses"}


def unknown_columns(columns: Iterable[str]) -> list[str]:
    """Messages for columns that are not facts (with a did-you-mean)."""
    return [f"unknown column {excerpt(name)}{suggest(name, COLUMNS)}"
            for name in columns if name not in COLUMNS]


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and value.strip() == "":
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def _plain(value: Any) -> Any:
    """numpy and pandas scalars as plain Python values."""
    item = getattr(value, "item", None)
    if item is not None and type(value).__module__.startswith("numpy"):
        return item()
    return value


def parse_doses(text: str) -> list[dict[str, Any]]:
    """``vincristine 1.4 mg/m2; daunorubicin 45 mg`` as dose mappings."""
    doses = []
    for entry in text.split(";"):
        if not entry.strip():
            continue
        parts = entry.split()
        if len(parts) != 3:
            raise ValueError(f"dose {excerpt(entry.strip())} is not `drug dose unit`")
        drug, amount, unit = parts
        try:
            value = record_value("float", amount)
        except ValueError:
            raise ValueError(f"dose amount {excerpt(amount)} is not a number") from None
        doses.append({"drug": drug, "dose": value, "unit": unit})
    return doses


def format_doses(doses: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(f"{d['drug']} {d['dose']:g} {d['unit']}" for d in doses)


def record_value(kind: str, text: str) -> Any:
    """A text cell as a value of ``kind`` (float, int, bool, str), strictly."""
    value = text.strip()
    if kind == "float":
        number = float(value) if len(value) <= NUMBER_CHARS and _DECIMAL.fullmatch(value) \
            else math.nan
        if not math.isfinite(number):
            raise ValueError(f"not a number: {excerpt(text)}")
        return number
    if kind == "int":
        if len(value) > NUMBER_CHARS or not _WHOLE.fullmatch(value):
            raise ValueError(f"not a whole number: {excerpt(text)}")
        return int(value)
    if kind == "bool":
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"not true/false: {excerpt(text)}")
    return value


def record_to_facts(record: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    """One flat record as the nested facts mapping, plus the errors of its cells.

    Cells may be typed values (Parquet, pandas) or text (CSV): text in a number or boolean
    column is parsed strictly (``true``/``false``/``yes``/``no``/``1``/``0`` for booleans).
    Missing markers (empty text, None, NaN, NA) are unknown.
    """
    facts: dict[str, Any] = {}
    plan: dict[str, Any] = {}
    errors: list[FieldError] = []
    for name, raw in record.items():
        value = _plain(raw)
        if _is_missing(value):
            continue
        kind = COLUMNS.get(name)
        if kind is None:
            errors.append(FieldError(name, f"unknown column{suggest(name, COLUMNS)}"))
            continue
        try:
            if kind == "doses":
                value = parse_doses(value) if isinstance(value, str) else list(value)
            elif isinstance(value, str) and kind != "str":
                # CSV cells, and object columns a data-frame library turned into strings.
                value = record_value(kind, value)
            elif kind == "int" and isinstance(value, float) and value.is_integer():
                value = int(value)  # an integer column with gaps arrives as floats
        except ValueError as error:
            errors.append(FieldError(name, str(error)))
            continue
        if name.startswith("plan."):
            plan[name[5:]] = value
        else:
            facts[name] = value
    if plan:
        facts["plan"] = plan
    return facts, errors

"""Plain-text formatting of values, tests and evidence for reasons and the text output."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from all_rules.ruleset._conditions import FactTest
from all_rules.ruleset._factspec import FACTS

from ._compile import resolve

SYMBOLS = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
"""The comparison operators of the condition language, as they are written in words."""


def number(value: float) -> str:
    """A number as a clinician writes it: no trailing ``.0``, no float noise."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def value_text(value: Any) -> str | None:
    """A fact value for prose; ``None`` when unknown."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return number(value)
    return str(value)


def is_mrd_percent(name: str) -> bool:
    """Whether a fact or parameter is an MRD level in percent of cells (``mrd_*_percent``):
    shown to a reader in both notations (:func:`mrd_text`)."""
    return name.startswith("mrd_") and name.endswith("_percent")


def _plain_decimal(value: float, digits: int) -> str:
    """A number with ``digits`` significant digits, never in exponent notation
    (``0.00003``, not ``3e-05``: an exponent is easy to misread in a percent)."""
    text = format(Decimal(f"{value:.{digits}g}").normalize(), "f")
    return "0" if text in ("-0", "0") else text


def cells_text(percent: float) -> str:
    """An MRD level as whole cells: ``1 in 10,000 cells`` for 0.01 %, ``3 in 1,000,000
    cells`` for 0.0003 % (three significant digits, more only just below 100 %)."""
    if percent <= 0:
        return "none detected"
    if percent >= 100:
        return "all cells"
    fraction = Decimal(f"{percent:.3g}") / 100
    if fraction >= 1:  # 99.99 % is not all cells
        fraction = Decimal(f"{percent:.6g}") / 100
    count, per = fraction, 1
    while count < 1 or count != count.to_integral_value():
        count, per = count * 10, per * 10
    return f"{int(count):,} in {per:,} cells"


def mrd_text(percent: float) -> str:
    """An MRD level in both notations, as every reader sees it: ``0.0003 % (3 in 1,000,000
    cells)``, so that a percent cannot be taken for a fraction (or the reverse)."""
    return f"{_plain_decimal(percent, 6)} % ({cells_text(percent)})"


def named_value_text(name: str, value: Any) -> str | None:
    """A fact's or parameter's value for prose, by name: an MRD level in both notations,
    any other value as :func:`value_text` shows it; ``None`` when unknown."""
    if type(value) in (int, float) and is_mrd_percent(name):
        return mrd_text(value)
    return value_text(value)


def literal_text(value: Any) -> str:
    """A test's operand as written in a ruleset: ``true``, ``30``, ``B``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value_text(value) or "null"


def test_text(test: FactTest, values: Mapping[str, float]) -> str:
    """The test a fact passed, as in evidence (``> 30``, ``in [B, T]``, ``unknown``)."""
    if test.op in ("known", "in", "not_in"):
        return resolved_test_text(test, None)
    return resolved_test_text(test, resolve(test.value, values))


def resolved_test_text(test: FactTest, resolved: Any) -> str:
    """The test with its threshold already resolved (``resolved`` is unused for ``known``,
    ``in`` and ``not_in``, whose values are in the test)."""
    if test.op == "known":
        return "known" if test.value else "unknown"
    if test.op in ("in", "not_in"):
        items = ", ".join(literal_text(v) for v in test.value)
        return f"{test.op.replace('_', ' ')} [{items}]"
    return f"{SYMBOLS[test.op]} {literal_text(resolved)}"


def fact_phrase(name: str, value: Any) -> str:
    """``WBC at diagnosis 45 ×10⁹/L``, ``current MRD 0.01 % (1 in 10,000 cells)`` or
    ``lineage unknown``."""
    spec = FACTS.get(name)
    label = spec.label if spec else name
    shown = named_value_text(name, value)
    if shown is None:
        return f"{label} unknown"
    if is_mrd_percent(name):  # its unit is in the value's words
        return f"{label} {shown}"
    unit = f" {spec.unit}" if spec and spec.unit and spec.unit != "%" else (
        "%" if spec and spec.unit == "%" else "")
    return f"{label} {shown}{unit}"


# --- tests in words (reasons and explanations; the JSON ``test`` stays as above) --------------

COMPARISON_WORDS = {">": "above", ">=": "at least", "<": "under", "<=": "at most"}
"""The ordering tests as a clinician says them: the threshold a value passed or must pass."""

_OPERATORS = ("not in", "in", "==", "!=", ">=", "<=", ">", "<")


def split_test(test: str) -> tuple[str, tuple[str, ...]]:
    """A worded test split into its operator and operands: ``>= 35`` → (``>=``, (``35``,)),
    ``in [B, T]`` → (``in``, (``B``, ``T``)), ``known`` → (``known``, ())."""
    for op in _OPERATORS:
        if test.startswith(op + " "):
            rest = test[len(op) + 1:]
            if op in ("in", "not in"):
                inner = rest.removeprefix("[").removesuffix("]")
                return op, tuple(part for part in inner.split(", ") if part)
            return op, (rest,)
    return test, ()


def quantity_text(name: str, value: Any) -> str:
    """A value of the fact ``name`` with its unit and no label (``30 ×10⁹/L``, ``35 years``),
    written as ``fact_phrase`` writes the fact's own value."""
    spec = FACTS.get(name)
    phrase = fact_phrase(name, value)
    label = spec.label if spec else name
    return phrase.removeprefix(f"{label} ")


def threshold_text(name: str, literal: str) -> str:
    """A threshold as written in a worded test (``30``), with the fact's unit."""
    try:
        value: Any = float(literal)
    except ValueError:
        return literal
    text = quantity_text(name, value)
    for unit in ("years", "months", "weeks", "days"):
        if text == f"1 {unit}":
            return f"1 {unit[:-1]}"
    return text

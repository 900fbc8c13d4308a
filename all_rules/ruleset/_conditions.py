"""The condition language of ``when``: parsing, type checks, and disjunctive normal form.

A condition is a tree of ``all`` / ``any`` over two kinds of test:

* a fact test, ``{wbc_at_diagnosis_10e9_per_l: {gt: $adult_b_wbc_10e9_per_l}}``, whose value
  is a literal, a parameter (``$name``) or a tolerance (``{percent_above: [$p, $pct]}``);
* a derived-fact test, ``{derived: risk.ph_positive}`` or ``{not_derived: {kind: risk_feature}}``,
  over what other rules concluded.

An unknown fact satisfies no comparison (``ne`` and ``not_in`` included); only
``{known: false}`` matches it. The tree is expanded to disjunctive normal form so that the
engine tells, by which branch fired, exactly which tests a patient passed.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._factspec import FACTS, FactSpec
from ._schema import Concludes, ParameterSpec

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte")
OPERATORS = (*COMPARISONS, "in", "not_in", "known")
ORDERING = ("gt", "gte", "lt", "lte")
TOLERANCES = ("percent_above", "percent_below")
DERIVED_KINDS = tuple(c.value for c in Concludes if c is not Concludes.RECOMMENDATION)
MAX_BRANCHES = 32
"""A rule whose condition expands to more engine rules than this is refused as unreadable."""

Report = Callable[[tuple[str | int, ...], str], None]


@attrs.frozen
class ParamRef:
    name: str


@attrs.frozen
class Tolerance:
    """``base`` raised (above) or lowered (below) by ``percent`` per cent."""

    direction: str
    base: ParamRef | float
    percent: ParamRef | float


Value = Any  # a literal, ParamRef or Tolerance; a tuple of literals for in / not_in


@attrs.frozen
class FactTest:
    fact: str
    op: str
    value: Value
    path: tuple[str | int, ...] = attrs.field(eq=False)


@attrs.frozen
class DerivedTest:
    present: bool
    name: str | None
    kind: str | None
    path: tuple[str | int, ...] = attrs.field(eq=False)


@attrs.frozen
class AllOf:
    children: tuple[Node, ...]


@attrs.frozen
class AnyOf:
    children: tuple[Node, ...]


Node = FactTest | DerivedTest | AllOf | AnyOf
Literal_ = FactTest | DerivedTest
Branch = tuple[Literal_, ...]


def suggest(name: str, choices: Any) -> str:
    """A did-you-mean suffix for an unknown name, or nothing."""
    names = sorted(str(c) for c in choices)
    # A name given without its unit suffix ("wbc", "age") is a prefix of the real one.
    close = sorted((c for c in names if name and c.startswith(name)), key=len)[:1]
    if not close:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    if not close:
        close = [c for c in names if name and name in c][:1]
    return f"; did you mean `{close[0]}`?" if close else ""


class ConditionParser:
    """Parses raw ``when`` data, reporting every problem through ``report``.

    This class reads the shape of the tree: the ``all`` / ``any`` combinators, named
    conditions, and which kind of leaf each key is. Derived-fact tests are checked here;
    fact tests, whose values must fit the fact and the parameters, go to
    :class:`_FactTestParser`.
    """

    def __init__(self, parameters: Mapping[str, ParameterSpec], report: Report,
                 named: Mapping[str, Node] | None = None) -> None:
        self.parameters = parameters
        self.report = report
        self.named = named or {}
        self._facts = _FactTestParser(parameters, report)

    def parse(self, raw: Any, path: tuple[str | int, ...]) -> Node | None:
        if isinstance(raw, list):
            return self._combine(AllOf, raw, path)
        if not isinstance(raw, dict) or len(raw) != 1:
            self.report(path, "a condition is a mapping with exactly one key: all, any, "
                              "derived, not_derived, condition, or a fact name")
            return None
        ((key, body),) = raw.items()
        key = str(key)
        if key in ("all", "any"):
            return self._combinator(key, body, (*path, key))
        if key in ("derived", "not_derived"):
            return self._derived(key == "derived", body, (*path, key))
        if key == "condition":
            return self._named(body, (*path, key))
        return self._facts.parse(key, body, (*path, key))

    def _combinator(self, key: str, body: Any, path: tuple[str | int, ...]) -> Node | None:
        """``all`` / ``any``: a non-empty list of conditions."""
        if not isinstance(body, list) or not body:
            self.report(path, f"`{key}` takes a non-empty list of conditions")
            return None
        return self._combine(AllOf if key == "all" else AnyOf, body, path)

    def _combine(self, cls: Any, items: list[Any], path: tuple[str | int, ...]) -> Node | None:
        children = [self.parse(item, (*path, index)) for index, item in enumerate(items)]
        if any(child is None for child in children):
            return None
        return cls(tuple(children))  # type: ignore[no-any-return]

    def _named(self, body: Any, path: tuple[str | int, ...]) -> Node | None:
        """``{condition: name}``: a condition defined once and shared by several rules."""
        node = self.named.get(str(body))
        if node is None:
            self.report(path, f"unknown condition `{body}`{suggest(str(body), self.named)}")
        return node

    def _derived(self, present: bool, body: Any, path: tuple[str | int, ...]) -> Node | None:
        if isinstance(body, str):
            return DerivedTest(present, body, None, path)
        if isinstance(body, dict) and set(body) == {"kind"} and body["kind"] in DERIVED_KINDS:
            return DerivedTest(present, None, body["kind"], path)
        self.report(path, "expected a rule id, or {kind: " + " | ".join(DERIVED_KINDS) + "}")
        return None


class _FactTestParser:
    """Parses one fact test, ``{fact: {op: value, ...}}`` or ``{fact: value}``: the fact must
    exist and each operator be known and safe for the fact's type (an ordering on a bool or
    enum fact is refused). The values are :class:`_ValueParser`'s."""

    def __init__(self, parameters: Mapping[str, ParameterSpec], report: Report) -> None:
        self.report = report
        self._values = _ValueParser(parameters, report)

    def parse(self, name: str, body: Any, path: tuple[str | int, ...]) -> Node | None:
        spec = FACTS.get(name)
        if spec is None:
            self.report(path, f"unknown fact `{name}`{suggest(name, FACTS)}")
            return None
        if not isinstance(body, dict):
            body = {"eq": body}
        if not body:
            self.report(path, "empty test")
            return None
        tests: list[Node] = []
        for op, raw_value in body.items():
            test = self._test(spec, str(op), raw_value, (*path, str(op)))
            if test is None:
                return None
            tests.append(test)
        return tests[0] if len(tests) == 1 else AllOf(tuple(tests))

    def _test(self, spec: FactSpec, op: str, raw: Any, path: tuple[str | int, ...]) -> Node | None:
        if op not in OPERATORS:
            self.report(path, f"unknown operator `{op}`{suggest(op, OPERATORS)}")
            return None
        if op == "known":
            if not isinstance(raw, bool):
                self.report(path, "`known` takes true or false")
                return None
            return FactTest(spec.name, op, raw, path)
        if op in ORDERING and spec.type in ("bool", "enum"):
            self.report(path, f"`{op}` on {spec.type} fact `{spec.name}` is unsafe: the engine "
                              "orders any string above any number and treats true as 1; "
                              "use eq / in")
            return None
        if op in ("in", "not_in"):
            return self._membership(spec, op, raw, path)
        value = self._values.value(spec, raw, path)
        if value is _BAD:
            return None
        return FactTest(spec.name, op, value, path)

    def _membership(self, spec: FactSpec, op: str, raw: Any,
                    path: tuple[str | int, ...]) -> Node | None:
        """``in`` / ``not_in``: a non-empty list of literals, each a value of the fact."""
        if not isinstance(raw, list) or not raw:
            self.report(path, f"`{op}` takes a non-empty list")
            return None
        values = [self._values.literal(spec, item, (*path, i)) for i, item in enumerate(raw)]
        if any(v is _BAD for v in values):
            return None
        return FactTest(spec.name, op, tuple(values), path)


class _ValueParser:
    """Parses the value a fact is compared with: a literal of the fact's type, a ``$parameter``
    in the fact's unit, or a tolerance around one. A value that does not fit is reported and
    returned as ``_BAD``, so the whole test is refused."""

    def __init__(self, parameters: Mapping[str, ParameterSpec], report: Report) -> None:
        self.parameters = parameters
        self.report = report

    def value(self, spec: FactSpec, raw: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(raw, str) and raw.startswith("$"):
            return self._param(spec, raw, path)
        if isinstance(raw, dict):
            return self._tolerance(spec, raw, path)
        return self.literal(spec, raw, path)

    def _tolerance(self, spec: FactSpec, raw: dict[Any, Any], path: tuple[str | int, ...]) -> Any:
        """``{percent_above | percent_below: [base, percent]}`` on a numeric fact; the base is
        in the fact's unit, the percent a number or a parameter in %."""
        if len(raw) != 1 or next(iter(raw)) not in TOLERANCES:
            self.report(path, "a value is a literal, `$parameter`, or "
                              "{percent_above | percent_below: [base, percent]}")
            return _BAD
        ((direction, pair),) = raw.items()
        if spec.type not in ("number", "integer"):
            self.report(path, f"`{direction}` needs a numeric fact")
            return _BAD
        if not isinstance(pair, list) or len(pair) != 2:
            self.report((*path, direction), "takes [base, percent]")
            return _BAD
        base = self._numeric(spec, pair[0], (*path, direction, 0), check_unit=True)
        percent = self._numeric(None, pair[1], (*path, direction, 1), check_unit=False)
        if base is _BAD or percent is _BAD:
            return _BAD
        if isinstance(percent, ParamRef) and self.parameters[percent.name].unit != "%":
            self.report((*path, direction, 1), f"parameter `{percent.name}` is not in %")
            return _BAD
        return Tolerance(direction, base, percent)

    def _numeric(self, spec: FactSpec | None, raw: Any, path: tuple[str | int, ...],
                 *, check_unit: bool) -> Any:
        if isinstance(raw, str) and raw.startswith("$"):
            if spec is not None and check_unit:
                return self._param(spec, raw, path)
            name = raw[1:]
            if name not in self.parameters:
                self.report(path, f"unknown parameter `{name}`{suggest(name, self.parameters)}")
                return _BAD
            return ParamRef(name)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            self.report(path, f"expected a number or `$parameter`, got {raw!r}")
            return _BAD
        return float(raw)

    def _param(self, spec: FactSpec, raw: str, path: tuple[str | int, ...]) -> Any:
        name = raw[1:]
        param = self.parameters.get(name)
        if param is None:
            self.report(path, f"unknown parameter `{name}`{suggest(name, self.parameters)}")
            return _BAD
        if spec.type not in ("number", "integer"):
            self.report(path, f"parameter `{name}` is a number; `{spec.name}` is {spec.type}")
            return _BAD
        if spec.unit and param.unit != spec.unit:
            self.report(path, f"parameter `{name}` is in {param.unit!r} but `{spec.name}` is in "
                              f"{spec.unit!r}")
            return _BAD
        return ParamRef(name)

    def literal(self, spec: FactSpec, raw: Any, path: tuple[str | int, ...]) -> Any:
        if raw is None:
            self.report(path, f"comparing `{spec.name}` with null is unsafe (an unknown fact is "
                              "absent, not null); use {known: false}")
            return _BAD
        fits = {
            "bool": isinstance(raw, bool),
            "number": isinstance(raw, int | float) and not isinstance(raw, bool),
            "integer": isinstance(raw, int) and not isinstance(raw, bool),
            "enum": isinstance(raw, str) and raw in spec.values,
        }[spec.type]
        if not fits:
            if spec.type == "enum":
                hint = suggest(str(raw), spec.values) or f"; one of {', '.join(spec.values)}"
                self.report(path, f"{raw!r} is not a value of `{spec.name}`{hint}")
            else:
                self.report(path, f"{raw!r} does not fit `{spec.name}`, a {spec.type} fact")
            return _BAD
        return float(raw) if spec.type == "number" else raw


_BAD = object()


def to_dnf(node: Node) -> list[Branch]:
    """Expand a condition into a disjunction of conjunctions (each a tuple of tests)."""
    if isinstance(node, FactTest | DerivedTest):
        return [(node,)]
    if isinstance(node, AnyOf):
        return [branch for child in node.children for branch in to_dnf(child)]
    products = itertools.product(*(to_dnf(child) for child in node.children))
    return [tuple(itertools.chain.from_iterable(combo)) for combo in products]


def walk(node: Node) -> list[Literal_]:
    """Every test in a condition tree, in order."""
    if isinstance(node, FactTest | DerivedTest):
        return [node]
    return [leaf for child in node.children for leaf in walk(child)]

"""Parameters: their effective values under an institution's overrides, and their safe ranges.

Every parameter has hard limits (``min``/``max``: never crossed) and a safe range
(``safe_min``/``safe_max`` with ``safe_range_why``): a local value inside the safe range is an
ordinary override; one outside it is refused unless stated as an *unsafe override* with a
reason (an overlay's ``unsafe_overrides``, ``Guideline.load(unsafe_overrides=…)``,
``--unsafe-param`` with ``--unsafe-reason``). ``local_values`` computes the values and reports
every refusal; ``safe_range_issues`` is the ``rules check`` test that every parameter
declares a safe range holding its shipped value (docs/ruleset-format.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
from pydantic import TypeAdapter, ValidationError

from all_rules.output import ParameterOverride, _trusted

from ._conditions import suggest
from ._issues import Issues
from ._model import Ruleset
from ._safe_yaml import Located, PathKey
from ._schema import Manifest, ParameterSpec, UnsafeOverride

__all__ = ["LocalValues", "local_values", "number", "parameter_overrides", "safe_range_issues",
           "unsafe_overrides_of"]

UNSAFE = "unsafe_overrides"
"""Where unsafe overrides are given: the overlay key, the API argument."""
_UNSAFE_MAP = TypeAdapter(dict[str, UnsafeOverride])


def number(value: float) -> str:
    """A parameter value as people write it: ``2``, ``2.5``, ``0.001``."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.12f}".rstrip("0")
    return text.rstrip(".") if text.rstrip(".") not in ("0", "-0") else f"{value:.12g}"


def safe_range_text(param: ParameterSpec) -> str:
    """``1.5–2 mg``, or that no safe range is declared."""
    if param.safe_min is None or param.safe_max is None:
        return "none declared (only the shipped value is vouched for)"
    if param.safe_min == param.safe_max:
        return f"{number(param.safe_min)} {param.unit} only"
    return f"{number(param.safe_min)}–{number(param.safe_max)} {param.unit}"


@attrs.define
class LocalValues:
    """The effective values, and the reasons given for unsafe overrides."""

    values: dict[str, float]
    reasons: dict[str, str] = attrs.field(factory=dict)


def unsafe_overrides_of(raw: Mapping[str, Any] | None, issues: Issues
                        ) -> dict[str, UnsafeOverride]:
    """API unsafe overrides (``{name: {"value": x, "reason": "…"}}`` or ``UnsafeOverride``
    values), checked as an overlay's ``unsafe_overrides`` are."""
    if not raw:
        return {}
    plain = {name: item.model_dump() if isinstance(item, UnsafeOverride) else item
             for name, item in raw.items()}
    try:
        return _UNSAFE_MAP.validate_python(plain)
    except ValidationError as error:
        for item in error.errors():
            loc = tuple(item["loc"])
            issues.add(None, UNSAFE, (UNSAFE, *loc),
                       str(item["msg"]).removeprefix("Value error, "))
        return {}


def local_values(params: Mapping[str, ParameterSpec], start: LocalValues,
                 overrides: Mapping[str, Any], unsafe: Mapping[str, UnsafeOverride],
                 source: str, doc: Located | None, issues: Issues) -> LocalValues:
    """``start`` with these overrides applied: ``overrides`` must lie in each parameter's
    safe range, ``unsafe`` ones (each with a reason) only within its hard limits."""
    values, reasons = dict(start.values), dict(start.reasons)
    for name in sorted(set(overrides) & set(unsafe)):
        issues.add(doc, source, (UNSAFE, name), f"`{name}` is given both in `parameters` "
                   "and in `unsafe_overrides`; give it once")
    for name, value in overrides.items():
        param = _accepted(params, name, value, ("parameters", name), source, doc, issues)
        if param is None:
            continue
        if not param.is_safe(float(value)):
            issues.add(doc, source, ("parameters", name), _unsafe_message(name, value, param))
            continue
        values[name] = float(value)
        reasons.pop(name, None)
    for name, override in unsafe.items():
        if name in overrides:
            continue
        param = _accepted(params, name, override.value, (UNSAFE, name, "value"), source, doc,
                          issues)
        if param is not None:
            values[name] = float(override.value)
            reasons[name] = override.reason.strip()
    return LocalValues(values, reasons)


def _accepted(params: Mapping[str, ParameterSpec], name: str, value: Any, path: PathKey,
              source: str, doc: Located | None, issues: Issues) -> ParameterSpec | None:
    """The parameter, when ``value`` is a finite number within its hard limits."""
    param = params.get(name)
    if param is None:
        issues.add(doc, source, path[:2], f"unknown parameter `{name}`{suggest(name, params)}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value):
        issues.add(doc, source, path, f"`{name}` takes a finite number ({param.unit}), "
                                      f"got {value!r}")
        return None
    if (param.min is not None and value < param.min) or (
            param.max is not None and value > param.max):
        issues.add(doc, source, path, f"`{name}` = {number(value)} is outside the allowed "
                                      f"range {number(param.min) if param.min is not None else ''}"
                                      f"–{number(param.max) if param.max is not None else ''} "
                                      f"{param.unit} (a hard limit: refused even as an unsafe "
                                      "override)")
        return None
    return param


def _unsafe_message(name: str, value: float, param: ParameterSpec) -> str:
    why = f" ({param.safe_range_why.strip().rstrip('.')})" if param.safe_range_why else ""
    return (f"`{name}` = {number(value)} {param.unit} is outside its safe range "
            f"{safe_range_text(param)}{why}; to use it anyway, state it as an unsafe "
            "override with a reason (overlay `unsafe_overrides`, `--unsafe-param` with "
            "`--unsafe-reason`, or `unsafe_overrides=` in Python: docs/ruleset-format.md)")


def safe_range_issues(manifest: Manifest, doc: Located, file: str, issues: Issues) -> None:
    """``rules check``: every parameter declares a safe range, with why, that lies within its
    hard limits and holds the shipped value."""
    for name, param in manifest.parameters.items():
        path: PathKey = ("parameters", name)
        if param.safe_min is None or param.safe_max is None:
            issues.add(doc, file, path, f"parameter `{name}` has no safe range: give "
                       "`safe_min`, `safe_max` and `safe_range_why` (docs/ruleset-format.md)")
            continue
        if not param.safe_range_why or not param.safe_range_why.strip():
            issues.add(doc, file, path, f"parameter `{name}` has no `safe_range_why`: say "
                       "why the safe range is where it is")
        bounds = [v for v in (param.safe_min, param.safe_max) if not math.isfinite(v)]
        if bounds:
            issues.add(doc, file, path, f"parameter `{name}`: the safe range must be finite")
            continue
        if param.safe_min > param.safe_max:
            issues.add(doc, file, (*path, "safe_min"), f"parameter `{name}`: safe_min "
                       f"{number(param.safe_min)} is above safe_max {number(param.safe_max)}")
        elif not param.safe_min <= param.value <= param.safe_max:
            issues.add(doc, file, (*path, "value"), f"parameter `{name}`: the shipped value "
                       f"{number(param.value)} is outside its safe range "
                       f"{safe_range_text(param)}")
        if (param.min is not None and param.safe_min < param.min) or (
                param.max is not None and param.safe_max > param.max):
            issues.add(doc, file, path, f"parameter `{name}`: the safe range "
                       f"{safe_range_text(param)} reaches past the hard limits "
                       f"{number(param.min) if param.min is not None else ''}–"
                       f"{number(param.max) if param.max is not None else ''}")


def parameter_overrides(ruleset: Ruleset) -> tuple[ParameterOverride, ...]:
    """Every parameter whose local value differs from the shipped one, in name order, as the
    assessment reports it (``Assessment.parameter_overrides``)."""
    found = []
    for name in sorted(ruleset.overrides):
        param = ruleset.parameters[name]
        local = float(ruleset.overrides[name])
        found.append(_trusted(ParameterOverride, {
            "name": name, "shipped": float(param.value), "local": local, "unit": param.unit,
            "safe_min": None if param.safe_min is None else float(param.safe_min),
            "safe_max": None if param.safe_max is None else float(param.safe_max),
            "unsafe": not param.is_safe(local),
            "reason": ruleset.override_reasons.get(name)}))
    return tuple(found)

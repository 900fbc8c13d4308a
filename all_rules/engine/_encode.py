"""JSON text written by hand, for durable's parser and for the output.

durable's parser rejects exponents such as ``1e-05`` (error 204), so numbers sent to the
engine are written in fixed point where Python would use one; and on the hot path (a fact
per patient, the output's strings) ``json.dumps`` costs more than the text it writes. The
compiler, the evaluation and the assembly all write their JSON with these.
"""

from __future__ import annotations

import json
import math
from typing import Any

from all_rules.exceptions import EvaluationError

#: A str's JSON, as json.dumps(ensure_ascii=False) writes it, without json.dumps' overhead.
json_string: Any = getattr(json.encoder, "c_encode_basestring", None) or \
    json.encoder.py_encode_basestring


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept as it is (the output's spelling)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def fixed_point(value: Any) -> str:
    """JSON of plain data with every float in fixed-point notation."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, float):
        text = f"{value:.12f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {fixed_point(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(fixed_point(item) for item in value) + "]"
    raise TypeError(f"cannot send {type(value).__name__} to the engine")


def engine_value(value: Any) -> str:
    """One fact value as JSON the engine can parse: its parser rejects exponents such as
    ``1e-05`` (error 204), which Python writes for floats below 1e-4 or from 1e16, so such
    numbers are written in fixed point (12 places)."""
    kind = type(value)
    if kind is float:
        if value != 0.0 and not 1e-4 <= abs(value) < 1e16:
            if not math.isfinite(value):
                raise EvaluationError("a non-finite number cannot be sent to the engine")
            return fixed_point(value)
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is str:
        return str(json_string(value))
    raise EvaluationError(f"cannot send a {kind.__name__} to the engine")


def value_json(value: Any) -> str:
    """``dumps(value)``, without json's overhead for the common finite float and None."""
    if type(value) is float:
        return float.__repr__(value)
    return "null" if value is None else dumps(value)

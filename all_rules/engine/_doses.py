"""Doses: a rule's dose lines resolved once per guideline, amounts computed per patient.

A dose is given per m² of body surface area; its parameters (and the JSON around the amounts)
are fixed when the guideline loads, so per patient only the amounts for the patient's BSA,
rounded or capped, are computed and written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from all_rules.ruleset._schema import DoseSpec

from ._encode import dumps, json_string, value_json


@attrs.frozen
class DoseRule:
    """One dose of a rule with its parameters resolved once; per patient only the amounts
    (which depend on the BSA) are computed."""

    drug: str
    per_m2: float
    per_m2_max: float | None
    unit: str
    cap: float | None
    schedule: str
    decimals: int
    head: str
    """The dose's JSON up to ``"dose":``, fixed for the guideline."""
    tail: str
    """The dose's JSON from ``"unit":`` to ``"capped":``, fixed for the guideline."""

    @classmethod
    def of(cls, spec: DoseSpec, values: Mapping[str, float]) -> DoseRule:
        def number(ref: Any) -> float | None:
            if ref is None:
                return None
            return float(values[ref[1:]]) if isinstance(ref, str) else float(ref)

        per_m2 = number(spec.per_m2)
        assert per_m2 is not None
        per_m2_max, cap = number(spec.per_m2_max), number(spec.cap)
        head = (f'{{"drug":{dumps(spec.drug)},"per_m2":{dumps(per_m2)},'
                f'"per_m2_max":{dumps(per_m2_max)},"per_m2_unit":{dumps(spec.unit + "/m2")},'
                '"dose":')
        tail = f'"unit":{dumps(spec.unit)},"cap":{dumps(cap)},"capped":'
        return cls(spec.drug, per_m2, per_m2_max, spec.unit, cap, spec.schedule,
                   spec.decimals, head, tail)

    def amounts(self, bsa: float | None) -> tuple[float | None, float | None, bool]:
        """(dose, dose_max, capped) for this BSA; ``None`` amounts when BSA is unknown."""
        if bsa is None:
            return None, None, False
        cap, capped = self.cap, False
        amounts: list[float | None] = []
        for per in (self.per_m2, self.per_m2_max):
            if per is None:
                amounts.append(None)
                continue
            raw = per * bsa
            if cap is not None and raw > cap:
                capped = True
                amounts.append(cap)
            else:
                amounts.append(round(float(raw), self.decimals))
        return amounts[0], amounts[1], capped

    def as_dict(self, bsa: float | None) -> dict[str, Any]:
        dose, dose_max, capped = self.amounts(bsa)
        return {"drug": self.drug, "per_m2": self.per_m2, "per_m2_max": self.per_m2_max,
                "per_m2_unit": f"{self.unit}/m2", "dose": dose, "dose_max": dose_max,
                "unit": self.unit, "cap": self.cap, "capped": capped,
                "schedule": self.schedule}

    def as_json(self, bsa: float | None) -> str:
        """``dumps(self.as_dict(bsa))``, from the fixed parts."""
        dose, dose_max, capped = self.amounts(bsa)
        return (f'{self.head}{value_json(dose)},"dose_max":{value_json(dose_max)},{self.tail}'
                f'{"true" if capped else "false"},"schedule":{json_string(self.schedule)}}}')


def doses_json(doses: tuple[DoseRule, ...], bsa: float | None) -> str:
    """A rule's doses for this BSA as a JSON array."""
    return "[" + ",".join(d.as_json(bsa) for d in doses) + "]"

"""FHIR R4 in (needs ``all-rules[fhir]``): a patient's Bundle read into ``PatientFacts``.

Owns the code map (``_code_map`` with ``fhir_codes.yaml``: which codes, units and answers
mean which fact), reading resources into dated candidate values (``_read``), choosing each
fact's value by time (``_select``), draft orders read into the current plan (``_orders``) and
the Bundle-level entry points (``_bundle``: ``facts_from_bundle``, ``assess_bundle``). It may
import ``all_rules.engine``, ``all_rules.ruleset`` and the public face; it imports no other
wing and never the command line. The CDS Hooks wing builds on this one through the names
exported here. docs/fhir.md documents the mapping.
"""

from ._bundle import (
    CODE_MAP,
    CodeMap,
    Diagnosis,
    FhirFacts,
    FhirMappingError,
    Source,
    Unmapped,
    Windows,
    assess_bundle,
    facts_from_bundle,
    with_provenance,
)
from ._orders import OrderCodes, plan_from_orders

__all__ = [
    "CODE_MAP",
    "CodeMap",
    "Diagnosis",
    "FhirFacts",
    "FhirMappingError",
    "OrderCodes",
    "Source",
    "Unmapped",
    "Windows",
    "assess_bundle",
    "facts_from_bundle",
    "plan_from_orders",
    "with_provenance",
]

"""What the service is: its configuration, and the two services it offers.

``ServiceSettings`` is what a deployment configures (``all-rules serve --config``): the public
base URL, the trusted issuers and their FHIR servers, and the limits on bodies, fetches and
connections. ``SERVICES`` is what discovery lists, with the prefetch each service asks for.
Both are read by every step of a call, so they stand apart from the steps that use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._fetch import normalized_base

__all__ = ["OPTIONAL_PREFETCH", "PREFETCH", "SERVICES", "ServiceSettings"]

PREFETCH = {"patient": "Patient/{{context.patientId}}",
            "observations": "Observation?patient={{context.patientId}}",
            "conditions": "Condition?patient={{context.patientId}}",
            "procedures": "Procedure?patient={{context.patientId}}"}
OPTIONAL_PREFETCH = frozenset({"procedures"})
"""Prefetch the service fetches when it can, and does without otherwise. A Procedure can only
make a history fact true (a past allogeneic HSCT, cranial irradiation); without the search
those facts stay unknown, never false, so a call that lacks it is answered as before."""
_USAGE = ("Patients with an active acute lymphoblastic leukemia Condition. Needs read access "
          "to the patient's Patient, Observation and Condition resources, and Procedure "
          "resources for the history of allogeneic transplant and cranial irradiation "
          "(prefetch, or a FHIR server configured for the calling EHR).")
SERVICES = {
    "all-rules-patient-view": {
        "hook": "patient-view", "title": "ALL guideline recommendations",
        "description": "Risk group and guideline recommendations for acute lymphoblastic "
                       "leukemia, with reasons, evidence and citations.",
        "prefetch": PREFETCH, "usageRequirements": _USAGE},
    "all-rules-order-sign": {
        "hook": "order-sign", "title": "ALL treatment plan audit",
        "description": "Checks draft ALL orders (doses, TKI, intrathecal therapy, cranial "
                       "irradiation, transplant) against the guideline.",
        "prefetch": PREFETCH, "usageRequirements": _USAGE},
}


class ServiceSettings(BaseModel):
    """Configuration of the service (a YAML file for ``all-rules serve --config``)."""

    model_config = ConfigDict(extra="forbid")
    base_url: str = Field(description="public base URL; each endpoint's URL is the JWT aud")
    issuers: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                               description="trusted iss → its JWK Set")
    insecure: bool = False
    max_body_bytes: int = Field(default=1_000_000, ge=1_000)
    code_map: str | None = None
    docs_url: str = "https://github.com/all-rules/all-rules/blob/main/docs/catalogue.md"
    fhir_servers: dict[str, list[str]] = Field(
        default_factory=dict, description="trusted iss → the FHIR server base URLs the service "
        "may fetch missing prefetch from for it; any other fhirServer gets 412")
    fetch_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_fetch_bytes: int = Field(default=5_000_000, ge=10_000)
    cors_origins: list[str] = Field(default_factory=list,
                                    description="browser origins allowed (CORS)")
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    max_connections: int = Field(default=1000, ge=10)
    max_header_bytes: int = Field(default=16_384, ge=1_024)

    @model_validator(mode="after")
    def _fhir_servers_of_known_issuers(self) -> ServiceSettings:
        unknown = sorted(set(self.fhir_servers) - set(self.issuers))
        if unknown:
            raise ValueError(f"fhir_servers names issuers not in `issuers`: {unknown} "
                             "(their servers would never be used)")
        return self

    @field_validator("fhir_servers")
    @classmethod
    def _bases_are_urls(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for issuer, bases in value.items():
            for base in bases:
                if normalized_base(base) is None:
                    raise ValueError(f"{issuer}: {base!r} is not an http(s) base URL (no "
                                     "query, fragment, credentials or dot segments)")
        return value

    @classmethod
    def load(cls, path: str | Path) -> ServiceSettings:
        return cls.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))

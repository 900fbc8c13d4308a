"""A CDS Hooks service (needs ``all-rules[serve]``): ``patient-view`` and ``order-sign``.

``create_app(settings)`` returns an ASGI application; ``all-rules serve`` runs it with
uvicorn (``_cds_serve``). A call goes through named steps: authenticate the signed JWT
(``_cds_auth``) unless in the loud insecure mode for local trials; read the body within its
size and time limits; parse the request; check the prefetch's shape and that every resource
is ``context.patientId``'s (``_cds_input``); fetch what is missing, only from a FHIR server
configured for the caller (``_cds_fetch``); map the record (``fhir``), whose result is the
ALL diagnosis gate; assess, and say what the mapping reported (``_cds_cards``).
Each call writes one audit line (JSON) with endpoint, service, hook, outcome, status, timing
and ruleset digest — never names, identifiers, values or card text (docs/security.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from all_rules.engine._guideline import Guideline
from all_rules.fhir._bundle import (
    CodeMap,
    FhirFacts,
    FhirMappingError,
    Unmapped,
    facts_from_bundle,
    with_provenance,
)
from all_rules.fhir._orders import OrderCodes, plan_from_orders
from all_rules.output import Assessment, Recommendation

from ._audit import AuditMiddleware, HeaderLimit, IssuedCards
from ._audit import error_response as _error
from ._auth import AuthError, Verifier
from ._cards import (
    CARD_NAMESPACE,
    incomplete_card,
    no_diagnosis_card,
    phase_card,
    phase_specific,
    problem_card,
    reports_card,
)
from ._fetch import FetchError, FetchLimits, fetch_missing, normalized_base, trusted_base
from ._request import (
    SEARCHES,
    UnusableInputError,
    check_draft_orders,
    check_prefetch,
    is_fhir_id,
    is_missing,
)

__all__ = ["ServiceSettings", "create_app"]

log = logging.getLogger("all_rules.cds")
_PREFETCH = {"patient": "Patient/{{context.patientId}}",
             "observations": "Observation?patient={{context.patientId}}",
             "conditions": "Condition?patient={{context.patientId}}"}
_USAGE = ("Patients with an active acute lymphoblastic leukemia Condition. Needs read access "
          "to the patient's Patient, Observation and Condition resources (prefetch, or a FHIR "
          "server configured for the calling EHR).")
SERVICES = {
    "all-rules-patient-view": {
        "hook": "patient-view", "title": "ALL guideline recommendations",
        "description": "Risk group and guideline recommendations for acute lymphoblastic "
                       "leukemia, with reasons, evidence and citations.",
        "prefetch": _PREFETCH, "usageRequirements": _USAGE},
    "all-rules-order-sign": {
        "hook": "order-sign", "title": "ALL treatment plan audit",
        "description": "Checks draft ALL orders (doses, TKI, intrathecal therapy, cranial "
                       "irradiation, transplant) against the guideline.",
        "prefetch": _PREFETCH, "usageRequirements": _USAGE},
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


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")
    hook: str
    hookInstance: uuid.UUID  # noqa: N815 - CDS Hooks field name
    fhirServer: str | None = None  # noqa: N815
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None


_SUMMARY_MAX = 139
"""The specification asks for a summary of fewer than 140 characters."""


def _summary(item: Recommendation) -> str:
    text = item.text
    return text if len(text) <= _SUMMARY_MAX else text[:_SUMMARY_MAX - 1].rstrip() + "…"


def _detail(item: Recommendation) -> str:
    lines = [item.text, "", f"**Why:** {item.reason}", "", "**Evidence:**"]
    for e in item.evidence:
        source = f" — {e.source}" if e.source else ""
        value = "unknown" if e.value is None else json.dumps(e.value, ensure_ascii=False)
        lines.append(f"- `{e.fact}` = {value} ({e.test}){source}")
    lines.append("")
    lines.append("**Citations:** " + ", ".join(f"[{c}]" for c in item.citations))
    return "\n".join(lines)


def cards(assessment: Assessment, hook_instance: str, docs_url: str,
          only_alerts: bool, withhold: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The assessment's items as CDS Hooks cards (order-sign: the plan alerts only), but
    those in ``withhold``."""
    label = f"all-rules {assessment.ruleset.name} {assessment.ruleset.version}"
    result = []
    for item in assessment.recommendations:
        if (only_alerts and item.kind.value != "alert") or item.id in withhold:
            continue
        result.append({
            "uuid": str(uuid.uuid5(CARD_NAMESPACE, f"{hook_instance}:{item.id}")),
            "summary": _summary(item),
            "detail": _detail(item),
            "indicator": item.severity.value,
            "source": {"label": label, "url": docs_url,
                       "topic": {"system": "https://all-rules/rule", "code": item.id}},
            "links": [{"label": f"Rule {item.id}", "url": f"{docs_url}#{item.id}",
                       "type": "absolute"}],
        })
    return result


_FEEDBACK_OUTCOMES = {"accepted", "overridden"}
_ASSESSING_THREADS = 4
"""Worker threads for mapping and assessment. The engine holds the GIL and one lock, so more
threads only add contention, which starves the event loop that reads and verifies requests."""
_MAPPING_FAULTS = (TypeError, ValueError, KeyError, AttributeError, IndexError)


class _RefusedError(Exception):
    """A call answered with an error response (the documented shape)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.response = _error(status, code, message, headers)


class _Service:
    """The endpoints, each a few named steps; state shared by the calls of one app."""

    def __init__(self, settings: ServiceSettings, guideline: Guideline) -> None:
        self.settings = settings
        self.guideline = guideline
        self.verifier = Verifier(settings.issuers)
        self.code_map = CodeMap.load(extra=settings.code_map)
        self.order_codes = OrderCodes.load(extra=settings.code_map)
        self.issued = IssuedCards()
        self.assessing = anyio.CapacityLimiter(_ASSESSING_THREADS)
        self.limits = FetchLimits(timeout_seconds=settings.fetch_timeout_seconds,
                                  max_bytes=settings.max_fetch_bytes)

    # -- steps ---------------------------------------------------------------------------
    def authenticate(self, request: Request) -> str | None:
        """The caller's issuer (None in insecure mode); refuses with 401."""
        if self.settings.insecure:
            return None
        audience = self.settings.base_url.rstrip("/") + request.url.path
        try:
            claims = self.verifier.verify(request.headers.get("authorization"), audience)
        except AuthError as error:
            challenge = 'Bearer realm="all-rules"'
            if request.headers.get("authorization"):
                challenge += ', error="invalid_token"'
            raise _RefusedError(401, "unauthorized", str(error),
                                {"WWW-Authenticate": challenge}) from None
        return str(claims["iss"])

    async def body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _RefusedError(413, "body_too_large", f"request body over {limit} bytes")
        body = bytearray()
        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                async for chunk in request.stream():
                    body.extend(chunk)
                    if len(body) > limit:
                        raise _RefusedError(413, "body_too_large",
                                            f"request body over {limit} bytes")
        except TimeoutError:
            raise _RefusedError(408, "body_timeout", "request body not received within "
                                f"{self.settings.body_timeout_seconds:g} s") from None
        return bytes(body)

    def parse(self, service_id: str, body: bytes) -> _Request:
        spec = SERVICES[service_id]
        try:
            hook_request = _Request.model_validate_json(body)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: "
                                 f"{e['msg']}" for e in error.errors())
            raise _RefusedError(400, "invalid_request",
                                f"malformed CDS Hooks request: {problems}") from None
        if hook_request.hook != spec["hook"]:
            raise _RefusedError(400, "invalid_request", f"service {service_id} answers hook "
                                f"{spec['hook']!r}, not {hook_request.hook!r}")
        if not is_fhir_id(hook_request.context.get("patientId")):
            raise _RefusedError(400, "invalid_request", "context.patientId is required and must be "
                                "a FHIR id (letters, digits, '-', '.'; at most 64)")
        auth = (hook_request.model_extra or {}).get("fhirAuthorization")
        if auth is not None and not (isinstance(auth, Mapping)
                                     and isinstance(auth.get("access_token"), str)):
            raise _RefusedError(400, "invalid_request", "fhirAuthorization: expected an object "
                                "with a string access_token")
        if auth is not None and hook_request.fhirServer is None:
            raise _RefusedError(400, "invalid_request", "fhirAuthorization is given without "
                                "a fhirServer (the specification requires both)")
        return hook_request

    def resources(self, prefetch: Mapping[str, Any], patient_id: str,
                  fetched: bool = False) -> dict[str, list[Mapping[str, Any]]]:
        try:
            return check_prefetch(prefetch, patient_id)
        except UnusableInputError as error:
            if fetched:
                raise _RefusedError(412, "fhir_server_failed", "the fhirServer's answer cannot be "
                                    f"used: {error}") from None
            raise _RefusedError(400, error.code, f"prefetch refused: {error}") from None

    async def complete(self, hook_request: _Request, issuer: str | None,
                       prefetch: Mapping[str, Any], found: Mapping[str, Any]
                       ) -> dict[str, Any]:
        """The prefetch values (the Patient, the search Bundles as sent), with what is
        missing fetched from a trusted FHIR server (or 412)."""
        missing = [key for key in _PREFETCH if key not in found]
        if not missing:
            return dict(prefetch)
        why = f"required prefetch missing: {', '.join(missing)}"
        if hook_request.fhirServer is None:
            raise _RefusedError(412, "prefetch_missing",
                                f"{why}, and no fhirServer to fetch it from")
        configured = self.settings.fhir_servers.get(issuer or "", []) if issuer else []
        base = trusted_base(hook_request.fhirServer, configured)
        if base is None:
            raise _RefusedError(412, "fhir_server_not_trusted", f"{why}; the fhirServer is not "
                                "configured for this client, so nothing is fetched from it")
        auth = (hook_request.model_extra or {}).get("fhirAuthorization") or {}
        patient_id = str(hook_request.context["patientId"])
        try:
            fetched = await fetch_missing(normalized_base(base) or base, patient_id, missing,
                                          auth.get("access_token"), self.limits)
        except FetchError as error:
            raise _RefusedError(412, "fhir_server_failed",
                                f"could not fetch from fhirServer: {error}") from None
        except TimeoutError:
            raise _RefusedError(412, "fhir_server_failed", "could not fetch from fhirServer: "
                                "deadline exceeded") from None
        self.resources(fetched, patient_id, fetched=True)
        return {**prefetch, **fetched}

    @staticmethod
    def record(values: Mapping[str, Any]) -> dict[str, Any]:
        """The Bundle the mapping reads: the Patient and each search Bundle as a whole, so
        the mapping sees their unfollowed ``next`` links and OperationOutcomes."""
        entries: list[dict[str, Any]] = [{"resource": values["patient"]}]
        for key in SEARCHES:
            search = values.get(key)
            if isinstance(search, Mapping):  # checked: a Bundle of the patient's resources
                entries.append({"resource": {**search, "id": search.get("id") or key}})
        return {"resourceType": "Bundle", "type": "collection", "entry": entries}

    def closed_gate(self, hook_instance: str, only_alerts: bool, rejected: tuple[Unmapped, ...],
                    mapped: FhirFacts | None, ordered: bool) -> list[dict[str, Any]]:
        """The answer for a record without an active ALL diagnosis: nothing; one info card
        (patient-view) when its ALL Conditions are all inactive or unconfirmed; a warning
        when the record may be incomplete (patient-view, or order-sign with ALL orders)."""
        docs = self.settings.docs_url
        if mapped is not None and mapped.incomplete and (ordered or not only_alerts):
            return [incomplete_card(hook_instance, mapped.unmapped, docs, diagnosed=False)]
        if rejected and not only_alerts:
            return [no_diagnosis_card(hook_instance, rejected, docs)]
        return []

    def assess(self, service_id: str, hook_request: _Request, values: Mapping[str, Any],
               audit: dict[str, Any]) -> list[dict[str, Any]]:
        """The cards for a checked request (runs in a worker thread)."""
        hook_instance = str(hook_request.hookInstance)
        only_alerts = hook_request.hook == "order-sign"
        extra: dict[str, Any] = {}
        provenance_extra: dict[str, str] = {}
        problems: list[str] = []
        if only_alerts:
            draft = hook_request.context.get("draftOrders")
            try:
                plan, provenance_extra, _, problems = plan_from_orders(
                    draft if isinstance(draft, Mapping) else {}, self.order_codes)
            except _MAPPING_FAULTS as error:
                raise _RefusedError(400, "invalid_request", "context.draftOrders could not be read "
                                    f"({type(error).__name__})") from None
            if not problems:
                extra["plan"] = plan
        try:
            mapped = facts_from_bundle(self.record(values),
                                       assessment_date=dt.datetime.now(dt.UTC).date(),
                                       code_map=self.code_map, extra=extra)
        except FhirMappingError as error:
            if error.has_all_diagnosis is False and not error.incomplete:
                audit["outcome"] = "no_active_all_diagnosis"
                return self.closed_gate(hook_instance, only_alerts, error.rejected_diagnoses,
                                        None, False)
            audit["outcome"] = "unmappable"
            return [problem_card(hook_instance, error.problems, self.settings.docs_url)]
        except _MAPPING_FAULTS as error:
            raise _RefusedError(400, "invalid_request", "the prefetch could not be read "
                                f"({type(error).__name__})") from None
        if not mapped.has_all_diagnosis:
            audit["outcome"] = "no_active_all_diagnosis"
            return self.closed_gate(hook_instance, only_alerts, mapped.rejected_diagnoses,
                                    mapped, bool(problems or extra.get("plan")))
        if problems:
            audit["outcome"] = "unmappable"
            return [problem_card(hook_instance, problems, self.settings.docs_url)]
        assessment = self.guideline.assess(mapped.facts)
        assessment = with_provenance(assessment, {**mapped.provenance, **provenance_extra})
        audit.update(outcome="cards", fired=assessment.ids())
        withheld: list[str] = []
        if "phase" in mapped.undetermined:  # the facts hold the default phase, not the record's
            withheld = [i.id for i in assessment.recommendations if phase_specific(i)
                        and (not only_alerts or i.kind.value == "alert")]
        audit.update(withheld=withheld, incomplete=mapped.incomplete)
        return self.notes(hook_instance, mapped, only_alerts, withheld) + \
            cards(assessment, hook_instance, self.settings.docs_url, only_alerts,
                  withhold=frozenset(withheld))

    def notes(self, hook_instance: str, mapped: FhirFacts, only_alerts: bool,
              withheld: list[str]) -> list[dict[str, Any]]:
        """The warnings on the record that come before the guideline's cards: incomplete
        record, phase undetermined (both hooks), values not used (patient-view)."""
        docs = self.settings.docs_url
        found: list[dict[str, Any]] = []
        if mapped.incomplete:
            found.append(incomplete_card(hook_instance, mapped.unmapped, docs, diagnosed=True))
        phase = "phase" in mapped.undetermined
        if phase:
            found.append(phase_card(hook_instance, mapped.unmapped, withheld, docs))
        if not only_alerts:
            reports = reports_card(hook_instance, mapped.unmapped, mapped.undetermined, docs,
                                   skip=frozenset({"phase"}) if phase else frozenset())
            if reports is not None:
                found.append(reports)
        return found

    # -- endpoints -----------------------------------------------------------------------
    def respond(self, payload: Any) -> JSONResponse:
        response = JSONResponse(payload)
        if self.settings.insecure:
            response.headers["X-All-Rules-Insecure"] = "requests are not authenticated"
        return response

    async def discovery(self, request: Request) -> Response:
        self.authenticate(request)
        return self.respond({"services": [{"id": key, **value}
                                          for key, value in SERVICES.items()]})

    def known_service(self, request: Request, audit: dict[str, Any]) -> str:
        service_id = str(request.path_params["service_id"])
        if service_id not in SERVICES:
            raise _RefusedError(404, "unknown_service", "no such service")
        audit.update(service=service_id, hook=SERVICES[service_id]["hook"])
        return service_id

    async def service(self, request: Request) -> Response:
        audit: dict[str, Any] = {}
        request.state.audit = audit
        service_id = self.known_service(request, audit)
        issuer = self.authenticate(request)
        hook_request = self.parse(service_id, await self.body(request))
        audit["hookInstance"] = str(hook_request.hookInstance)
        patient_id = str(hook_request.context["patientId"])
        prefetch = {key: value for key, value in (hook_request.prefetch or {}).items()
                    if not is_missing(value)}
        checked = self.resources(prefetch, patient_id)
        if hook_request.hook == "order-sign":
            try:
                check_draft_orders(hook_request.context.get("draftOrders"), patient_id)
            except UnusableInputError as error:
                raise _RefusedError(400, error.code, f"draft orders refused: {error}") from None
        values = await self.complete(hook_request, issuer, prefetch, checked)
        result = await anyio.to_thread.run_sync(self.assess, service_id, hook_request, values,
                                                audit, limiter=self.assessing)
        self.issued.add(service_id, result)
        audit["cards"] = len(result)
        return self.respond({"cards": result})

    async def feedback(self, request: Request) -> Response:
        audit: dict[str, Any] = {}
        request.state.audit = audit
        service_id = self.known_service(request, audit)
        self.authenticate(request)
        body = await self.body(request)
        try:
            data = json.loads(body)
        except ValueError:
            raise _RefusedError(400, "invalid_request", "feedback is not JSON") from None
        items = data.get("feedback") if isinstance(data, Mapping) else None
        if not isinstance(items, list) or not items:
            raise _RefusedError(400, "invalid_request",
                                "feedback must be a JSON object with a non-empty `feedback` list")
        lines = [self.feedback_item(service_id, index, item) for index, item in enumerate(items)]
        for line in lines:
            log.info(json.dumps(line))
        audit.update(outcome="recorded", items=len(lines))
        return self.respond({})

    def feedback_item(self, service_id: str, index: int, item: object) -> dict[str, Any]:
        """The log line for one feedback entry; refuses (400) an entry that is malformed or
        names a card this service did not issue. Comments and free text are never kept."""
        where = f"feedback[{index}]"
        if not isinstance(item, Mapping):
            raise _RefusedError(400, "invalid_request", f"{where}: expected an object")
        card, outcome = item.get("card"), item.get("outcome")
        if not isinstance(card, str) or self.issued.issued_by(card) != service_id:
            raise _RefusedError(400, "unknown_card",
                                f"{where}.card: not a card this service issued")
        if outcome not in _FEEDBACK_OUTCOMES:
            raise _RefusedError(400, "invalid_request", f"{where}.outcome: expected one of "
                                f"{sorted(_FEEDBACK_OUTCOMES)}")
        stamp = item.get("outcomeTimestamp")
        try:
            dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            raise _RefusedError(400, "invalid_request", f"{where}.outcomeTimestamp: expected an "
                                "ISO 8601 date-time") from None
        override = item.get("overrideReason")
        reason = override.get("reason") if isinstance(override, Mapping) else None
        code = reason.get("code") if isinstance(reason, Mapping) else None
        if override is not None and not isinstance(override, Mapping):
            raise _RefusedError(400, "invalid_request",
                                f"{where}.overrideReason: expected an object")
        return {"event": "feedback", "service": service_id, "card": card, "outcome": outcome,
                "overrideReason": code if isinstance(code, str) and len(code) <= 64 else None}


def _endpoint(handler: Callable[[Request], Awaitable[Response]]
              ) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except _RefusedError as refusal:
            request.state.audit = {**getattr(request.state, "audit", {}),
                                   "outcome": refusal.code}
            return refusal.response
    return run


async def _http_error(request: Request, error: Exception) -> Response:
    status = error.status_code if isinstance(error, HTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    return _error(status, code, code.replace("_", " "))


def create_app(settings: ServiceSettings, guideline: Guideline | None = None) -> Starlette:
    """The ASGI application of the CDS Hooks service."""
    guideline = guideline or Guideline.default()
    service = _Service(settings, guideline)
    if settings.insecure:
        log.warning("INSECURE MODE: requests are NOT authenticated and nothing is fetched "
                    "from any FHIR server. For local trials only; never expose this service.")
    origins = ["*"] if settings.insecure else list(settings.cors_origins)
    middleware = [Middleware(AuditMiddleware, digest=guideline.ruleset.digest, log=log),
                  Middleware(HeaderLimit, max_bytes=settings.max_header_bytes)]
    if origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=origins,
                                     allow_methods=["GET", "POST"],
                                     allow_headers=["Authorization", "Content-Type"],
                                     expose_headers=["WWW-Authenticate"], max_age=600))
    routes = [Route("/cds-services", _endpoint(service.discovery), methods=["GET"]),
              Route("/cds-services/{service_id}", _endpoint(service.service),
                    methods=["POST"]),
              Route("/cds-services/{service_id}/feedback", _endpoint(service.feedback),
                    methods=["POST"])]
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={HTTPException: _http_error})

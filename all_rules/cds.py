"""A CDS Hooks service (needs ``all-rules[serve]``): ``patient-view`` and ``order-sign``.

``create_app(settings)`` returns an ASGI application; ``all-rules serve`` runs it with
uvicorn. Every request carries a signed JWT that is verified as the CDS Hooks specification
requires (``_cds_auth``), unless the service was started in the loud, explicit insecure mode
meant for local trials. Logs carry the hook instance, service, ruleset digest and fired rule
ids — never names, identifiers or birth dates.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._cds_auth import AuthError, Verifier
from ._guideline import Guideline
from ._orders import OrderCodes, plan_from_orders
from .fhir import CodeMap, FhirMappingError, facts_from_bundle, with_provenance
from .output import Assessment, Recommendation

__all__ = ["ServiceSettings", "create_app"]

log = logging.getLogger("all_rules.cds")
_PREFETCH = {"patient": "Patient/{{context.patientId}}",
             "observations": "Observation?patient={{context.patientId}}",
             "conditions": "Condition?patient={{context.patientId}}"}
SERVICES = {
    "all-rules-patient-view": {
        "hook": "patient-view", "title": "ALL guideline recommendations",
        "description": "Risk group and guideline recommendations for acute lymphoblastic "
                       "leukemia, with reasons, evidence and citations.",
        "prefetch": _PREFETCH},
    "all-rules-order-sign": {
        "hook": "order-sign", "title": "ALL treatment plan audit",
        "description": "Checks draft ALL orders (doses, TKI, intrathecal therapy, cranial "
                       "irradiation, transplant) against the guideline.",
        "prefetch": _PREFETCH},
}
_CARD_NAMESPACE = uuid.UUID("6d1c8e0e-4a8f-4b7e-9f43-8a1f0e2d5c11")


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


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _summary(item: Recommendation) -> str:
    text = item.text
    return text if len(text) <= 140 else text[:139].rstrip() + "…"


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
          only_alerts: bool) -> list[dict[str, Any]]:
    """The assessment's items as CDS Hooks cards (order-sign: the plan alerts only)."""
    label = f"all-rules {assessment.ruleset.name} {assessment.ruleset.version}"
    result = []
    for item in assessment.recommendations:
        if only_alerts and item.kind.value != "alert":
            continue
        result.append({
            "uuid": str(uuid.uuid5(_CARD_NAMESPACE, f"{hook_instance}:{item.id}")),
            "summary": _summary(item),
            "detail": _detail(item),
            "indicator": item.severity.value,
            "source": {"label": label, "url": docs_url,
                       "topic": {"system": "https://all-rules/rule", "code": item.id}},
            "links": [{"label": f"Rule {item.id}", "url": f"{docs_url}#{item.id}",
                       "type": "absolute"}],
        })
    return result


def create_app(settings: ServiceSettings, guideline: Guideline | None = None) -> Starlette:
    """The ASGI application of the CDS Hooks service."""
    guideline = guideline or Guideline.default()
    verifier = Verifier(settings.issuers)
    code_map = CodeMap.load(extra=settings.code_map)
    order_codes = OrderCodes.load(extra=settings.code_map)
    if settings.insecure:
        log.warning("INSECURE MODE: requests are NOT authenticated. For local trials only; "
                    "never expose this service to a network.")

    def audience(request: Request) -> str:
        return settings.base_url.rstrip("/") + request.url.path

    async def body_of(request: Request) -> bytes | Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and \
                int(declared) > settings.max_body_bytes:
            return _error(413, f"request body over {settings.max_body_bytes} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body_bytes:
                return _error(413, f"request body over {settings.max_body_bytes} bytes")
        return body

    def authenticate(request: Request) -> Response | None:
        if settings.insecure:
            return None
        try:
            verifier.verify(request.headers.get("authorization"), audience(request))
        except AuthError as error:
            return _error(401, str(error))
        return None

    def respond(payload: Any, status: int = 200) -> JSONResponse:
        response = JSONResponse(payload, status_code=status)
        if settings.insecure:
            response.headers["X-All-Rules-Insecure"] = "requests are not authenticated"
        return response

    async def discovery(request: Request) -> Response:
        denied = authenticate(request)
        if denied is not None:
            return denied
        return respond({"services": [{"id": key, **value} for key, value in
                                     SERVICES.items()]})

    async def admit(request: Request) -> tuple[str, bytes] | Response:
        """The service id and body of an authenticated, size-checked call to a service."""
        service_id = request.path_params["service_id"]
        if service_id not in SERVICES:
            return _error(404, f"no service {service_id!r}")
        denied = authenticate(request)
        if denied is not None:
            return denied
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        return service_id, body

    async def service(request: Request) -> Response:
        admitted = await admit(request)
        if isinstance(admitted, Response):
            return admitted
        service_id, body = admitted
        spec = SERVICES[service_id]
        try:
            hook_request = _Request.model_validate_json(body)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: "
                                 f"{e['msg']}" for e in error.errors())
            return _error(400, f"malformed CDS Hooks request: {problems}")
        if hook_request.hook != spec["hook"]:
            return _error(400, f"service {service_id} answers hook {spec['hook']!r}, "
                               f"not {hook_request.hook!r}")
        if not isinstance(hook_request.context.get("patientId"), str):
            return _error(400, "context.patientId is required")
        prefetch = dict(hook_request.prefetch or {})
        missing = [key for key in _PREFETCH if key not in prefetch]
        if missing and hook_request.fhirServer is None:
            return _error(412, f"required prefetch missing: {', '.join(missing)}, and no "
                               "fhirServer to fetch it from")
        if missing:
            try:
                prefetch.update(await _fetch(hook_request, missing))
            except _FetchError as error:
                return _error(502, f"could not fetch from fhirServer: {error}")
        return await run_in_threadpool(assess_request, service_id, hook_request, prefetch)

    def assess_request(service_id: str, hook_request: _Request,
                       prefetch: Mapping[str, Any]) -> Response:
        hook_instance = str(hook_request.hookInstance)
        entries: list[Any] = []
        if prefetch.get("patient"):
            entries.append({"resource": prefetch["patient"]})
        for key in ("observations", "conditions"):
            found = prefetch.get(key) or {}
            entries.extend(found.get("entry") or [] if isinstance(found, Mapping) else [])
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
        extra: dict[str, Any] = {}
        provenance_extra: dict[str, str] = {}
        only_alerts = hook_request.hook == "order-sign"
        if only_alerts:
            draft = hook_request.context.get("draftOrders")
            if not isinstance(draft, Mapping):
                return _error(400, "order-sign needs context.draftOrders (a Bundle)")
            plan, provenance_extra, _, problems = plan_from_orders(draft, order_codes)
            if problems:
                return respond({"cards": [_problem_card(hook_instance, problems, settings)]})
            extra["plan"] = plan
        try:
            mapped = facts_from_bundle(bundle, assessment_date=dt.datetime.now(dt.UTC).date(),
                                       code_map=code_map, extra=extra)
        except FhirMappingError as error:
            log.info(json.dumps({"event": "hook", "service": service_id,
                                 "hookInstance": hook_instance, "status": "unmappable",
                                 "problems": len(error.problems)}))
            return respond({"cards": [_problem_card(hook_instance, error.problems, settings)]})
        assessment = guideline.assess(mapped.facts)
        assessment = with_provenance(assessment, {**mapped.provenance, **provenance_extra})
        log.info(json.dumps({"event": "hook", "service": service_id,
                             "hookInstance": hook_instance,
                             "digest": assessment.ruleset.digest,
                             "fired": assessment.ids()}))
        return respond({"cards": cards(assessment, hook_instance, settings.docs_url,
                                       only_alerts)})

    async def feedback(request: Request) -> Response:
        admitted = await admit(request)
        if isinstance(admitted, Response):
            return admitted
        service_id, body = admitted
        try:
            data = json.loads(body)
            items = data["feedback"]
            assert isinstance(items, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            return _error(400, "feedback must be a JSON object with a `feedback` list")
        for item in items:
            if not isinstance(item, Mapping) or "card" not in item or "outcome" not in item:
                return _error(400, "each feedback item needs `card` and `outcome`")
            reason = (item.get("overrideReason") or {}).get("reason") or {}
            log.info(json.dumps({"event": "feedback", "service": service_id,
                                 "card": str(item["card"]), "outcome": str(item["outcome"]),
                                 "overrideReason": reason.get("code")}))
        return respond({})

    routes = [Route("/cds-services", discovery, methods=["GET"]),
              Route("/cds-services/{service_id}", service, methods=["POST"]),
              Route("/cds-services/{service_id}/feedback", feedback, methods=["POST"])]
    return Starlette(routes=routes)


class _FetchError(Exception):
    pass


_MAX_PAGES = 20


async def _fetch(hook_request: _Request, keys: list[str]) -> dict[str, Any]:
    """Fetch missing prefetch from the client's FHIR server with its access token."""
    import httpx

    base = str(hook_request.fhirServer).rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise _FetchError("fhirServer must be an http(s) URL")
    patient_id = hook_request.context["patientId"]
    headers = {"Accept": "application/fhir+json"}
    auth = hook_request.model_extra.get("fhirAuthorization") if hook_request.model_extra \
        else None
    if isinstance(auth, Mapping) and auth.get("access_token"):
        headers["Authorization"] = f"Bearer {auth['access_token']}"
    queries = {"patient": f"{base}/Patient/{patient_id}",
               "observations": f"{base}/Observation?patient={patient_id}",
               "conditions": f"{base}/Condition?patient={patient_id}"}
    found: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        for key in keys:
            url: str | None = queries[key]
            entries: list[Any] = []
            for _ in range(_MAX_PAGES):
                if url is None:
                    break
                try:
                    response = await client.get(url, headers=headers)
                except httpx.HTTPError as error:
                    raise _FetchError(f"{key}: {type(error).__name__}") from None
                if response.status_code != 200:
                    raise _FetchError(f"{key}: HTTP {response.status_code}")
                data = response.json()
                if key == "patient":
                    found[key] = data
                    break
                entries.extend(data.get("entry") or [])
                url = next((link.get("url") for link in data.get("link") or []
                            if link.get("relation") == "next"), None)
            if key != "patient":
                found[key] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    return found


def _problem_card(hook_instance: str, problems: list[str],
                  settings: ServiceSettings) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid5(_CARD_NAMESPACE, f"{hook_instance}:(mapping)")),
        "summary": "ALL guideline not assessed: the record could not be read completely",
        "detail": "The patient's record could not be mapped to the guideline's facts, so no "
                  "recommendation is given:\n\n" + "\n".join(f"- {p}" for p in problems),
        "indicator": "warning",
        "source": {"label": "all-rules", "url": settings.docs_url},
    }

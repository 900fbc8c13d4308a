"""The steps of a call that decide whether its request can be used, and what it holds.

Before anything is mapped, a call is checked step by step: the caller is authenticated, the
body is read within its limits, the request is parsed, the prefetch (and draft orders) are
checked, and what is missing is fetched from a FHIR server trusted for the caller. Each step
returns what the next needs or raises :class:`RefusedError`, which the endpoint answers in the
documented error shape and which names the audit line's outcome; nothing after it runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from ._audit import error_response as _error
from ._auth import AuthError, Verifier
from ._fetch import (
    FetchError,
    FetchLimits,
    fetch_missing,
    normalized_base,
    trusted_base,
)
from ._request import UnusableInputError, check_draft_orders, check_prefetch, is_fhir_id, is_missing
from ._settings import OPTIONAL_PREFETCH, PREFETCH, SERVICES, ServiceSettings

__all__ = ["Calls", "HookRequest", "RefusedError"]


class RefusedError(Exception):
    """A call answered with an error response (the documented shape)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.response = _error(status, code, message, headers)


class HookRequest(BaseModel):
    """A CDS Hooks request as parsed (its other fields kept, e.g. ``fhirAuthorization``)."""

    model_config = ConfigDict(extra="allow")
    hook: str
    hookInstance: uuid.UUID  # noqa: N815 - CDS Hooks field name
    fhirServer: str | None = None  # noqa: N815
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None


class Calls:
    """The checking steps of every endpoint's call, and the answer's common form."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.verifier = Verifier(settings.issuers)
        self.limits = FetchLimits(timeout_seconds=settings.fetch_timeout_seconds,
                                  max_bytes=settings.max_fetch_bytes)

    def respond(self, payload: Any) -> JSONResponse:
        response = JSONResponse(payload)
        if self.settings.insecure:
            response.headers["X-All-Rules-Insecure"] = "requests are not authenticated"
        return response

    def known_service(self, request: Request, audit: dict[str, Any]) -> str:
        service_id = str(request.path_params["service_id"])
        if service_id not in SERVICES:
            raise RefusedError(404, "unknown_service", "no such service")
        audit.update(service=service_id, hook=SERVICES[service_id]["hook"])
        return service_id

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
            raise RefusedError(401, "unauthorized", str(error),
                               {"WWW-Authenticate": challenge}) from None
        return str(claims["iss"])

    async def body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RefusedError(413, "body_too_large", f"request body over {limit} bytes")
        body = bytearray()
        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                async for chunk in request.stream():
                    body.extend(chunk)
                    if len(body) > limit:
                        raise RefusedError(413, "body_too_large",
                                           f"request body over {limit} bytes")
        except TimeoutError:
            raise RefusedError(408, "body_timeout", "request body not received within "
                               f"{self.settings.body_timeout_seconds:g} s") from None
        return bytes(body)

    def parse(self, service_id: str, body: bytes) -> HookRequest:
        spec = SERVICES[service_id]
        try:
            hook_request = HookRequest.model_validate_json(body)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: "
                                 f"{e['msg']}" for e in error.errors())
            raise RefusedError(400, "invalid_request",
                               f"malformed CDS Hooks request: {problems}") from None
        if hook_request.hook != spec["hook"]:
            raise RefusedError(400, "invalid_request", f"service {service_id} answers hook "
                               f"{spec['hook']!r}, not {hook_request.hook!r}")
        if not is_fhir_id(hook_request.context.get("patientId")):
            raise RefusedError(400, "invalid_request", "context.patientId is required and must be "
                               "a FHIR id (letters, digits, '-', '.'; at most 64)")
        auth = (hook_request.model_extra or {}).get("fhirAuthorization")
        if auth is not None and not (isinstance(auth, Mapping)
                                     and isinstance(auth.get("access_token"), str)):
            raise RefusedError(400, "invalid_request", "fhirAuthorization: expected an object "
                               "with a string access_token")
        if auth is not None and hook_request.fhirServer is None:
            raise RefusedError(400, "invalid_request", "fhirAuthorization is given without "
                               "a fhirServer (the specification requires both)")
        return hook_request

    def check(self, hook_request: HookRequest
              ) -> tuple[dict[str, Any], dict[str, list[Mapping[str, Any]]]]:
        """The prefetch sent (values the client marked missing left out) and its checked
        resources; the draft orders checked too (order-sign). Refuses with 400."""
        patient_id = str(hook_request.context["patientId"])
        prefetch = {key: value for key, value in (hook_request.prefetch or {}).items()
                    if not is_missing(value)}
        checked = self.resources(prefetch, patient_id)
        if hook_request.hook == "order-sign":
            try:
                check_draft_orders(hook_request.context.get("draftOrders"), patient_id)
            except UnusableInputError as error:
                raise RefusedError(400, error.code, f"draft orders refused: {error}") from None
        return prefetch, checked

    def resources(self, prefetch: Mapping[str, Any], patient_id: str,
                  fetched: bool = False) -> dict[str, list[Mapping[str, Any]]]:
        try:
            return check_prefetch(prefetch, patient_id)
        except UnusableInputError as error:
            if fetched:
                raise RefusedError(412, "fhir_server_failed", "the fhirServer's answer cannot be "
                                   f"used: {error}") from None
            raise RefusedError(400, error.code, f"prefetch refused: {error}") from None

    async def complete(self, hook_request: HookRequest, issuer: str | None,
                       prefetch: Mapping[str, Any], found: Mapping[str, Any]
                       ) -> dict[str, Any]:
        """The prefetch values (the Patient, the search Bundles as sent), with what is
        missing fetched from a trusted FHIR server. Required prefetch that cannot be fetched
        is 412; a missing optional search (``OPTIONAL_PREFETCH``) is fetched only when a
        trusted server is at hand anyway, and otherwise left out (its facts stay unknown)."""
        absent = [key for key in PREFETCH if key not in found]
        missing = [key for key in absent if key not in OPTIONAL_PREFETCH]
        if not absent:
            return dict(prefetch)
        base = self.trusted_server(hook_request, issuer, missing)
        if base is None:
            return dict(prefetch)
        auth = (hook_request.model_extra or {}).get("fhirAuthorization") or {}
        token, patient_id = auth.get("access_token"), str(hook_request.context["patientId"])
        optional = [key for key in absent if key in OPTIONAL_PREFETCH]
        fetched = await _fetch(base, patient_id, missing, optional, token, self.limits)
        self.resources(fetched, patient_id, fetched=True)
        return {**prefetch, **fetched}

    def trusted_server(self, hook_request: HookRequest, issuer: str | None,
                       missing: list[str]) -> str | None:
        """The request's fhirServer when it is configured for the caller; otherwise None
        when nothing required is missing, or 412 naming what is."""
        why = f"required prefetch missing: {', '.join(missing)}"
        if hook_request.fhirServer is None:
            if missing:
                raise RefusedError(412, "prefetch_missing",
                                   f"{why}, and no fhirServer to fetch it from")
            return None
        configured = self.settings.fhir_servers.get(issuer or "", []) if issuer else []
        base = trusted_base(hook_request.fhirServer, configured)
        if base is None:
            if missing:
                raise RefusedError(412, "fhir_server_not_trusted", f"{why}; the fhirServer is "
                                   "not configured for this client, so nothing is fetched "
                                   "from it")
            return None
        return normalized_base(base) or base


async def _fetch(base: str, patient_id: str, missing: list[str], optional: list[str],
                 token: str | None, limits: FetchLimits) -> dict[str, Any]:
    """What is missing, from the trusted server; 412 when a required value cannot be had."""
    try:
        return await fetch_missing(base, patient_id, missing, token, limits, optional)
    except FetchError as error:
        raise RefusedError(412, "fhir_server_failed",
                           f"could not fetch from fhirServer: {error}") from None
    except TimeoutError:
        raise RefusedError(412, "fhir_server_failed", "could not fetch from fhirServer: "
                           "deadline exceeded") from None

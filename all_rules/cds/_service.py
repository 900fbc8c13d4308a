"""A CDS Hooks service (needs ``all-rules[serve]``): ``patient-view`` and ``order-sign``.

``create_app(settings)`` returns an ASGI application; ``all-rules serve`` runs it with
uvicorn (``_serve``). Its settings and the services it offers are in ``_settings``. A call
goes through named steps, each in the module that owns it: check the request (``_calls``):
authenticate the signed JWT (``_auth``) unless in the loud insecure mode for local trials;
read the body within its size and time limits; parse the request; check the prefetch's shape
and that every resource is ``context.patientId``'s (``_request``); fetch what is missing, only
from a FHIR server configured for the caller (``_fetch``). Then, in a worker thread
(``_assess``): map the record (``fhir``), whose result is the ALL diagnosis gate, and assess;
the cards say what the mapping reported and what the guideline advises (``_answer``, with the
service's own cards in ``_cards``). Feedback on issued cards is checked and logged by
``_feedback``. Each call writes one audit line (JSON, ``_audit``) with endpoint, service,
hook, outcome, status, timing and ruleset digest — never names, identifiers, values or card
text (docs/security.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from all_rules.engine._guideline import Guideline

from ._assess import Assessor
from ._audit import AuditMiddleware, HeaderLimit
from ._audit import error_response as _error
from ._calls import Calls, RefusedError
from ._feedback import Feedback
from ._settings import SERVICES, ServiceSettings

__all__ = ["ServiceSettings", "create_app"]

log = logging.getLogger("all_rules.cds")


class _Service:
    """The endpoints of one app: discovery, a hook's call (its steps in order) and feedback."""

    def __init__(self, settings: ServiceSettings, guideline: Guideline) -> None:
        self.calls = Calls(settings)
        self.assessor = Assessor(settings, guideline)
        self.feedback = Feedback(self.calls)

    async def discovery(self, request: Request) -> Response:
        self.calls.authenticate(request)
        return self.calls.respond({"services": [{"id": key, **value}
                                                for key, value in SERVICES.items()]})

    async def service(self, request: Request) -> Response:
        audit: dict[str, Any] = {}
        request.state.audit = audit
        calls = self.calls
        service_id = calls.known_service(request, audit)
        issuer = calls.authenticate(request)
        hook_request = calls.parse(service_id, await calls.body(request))
        audit["hookInstance"] = str(hook_request.hookInstance)
        prefetch, checked = calls.check(hook_request)
        values = await calls.complete(hook_request, issuer, prefetch, checked)
        result = await self.assessor.cards(hook_request, values, audit)
        self.feedback.issued.add(service_id, result)
        audit["cards"] = len(result)
        return calls.respond({"cards": result})


def _endpoint(handler: Callable[[Request], Awaitable[Response]]
              ) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except RefusedError as refusal:
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
              Route("/cds-services/{service_id}/feedback", _endpoint(service.feedback.endpoint),
                    methods=["POST"])]
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={HTTPException: _http_error})

"""The service's audit line, its error shape and its header limit.

Each call writes exactly one audit line, from :class:`AuditMiddleware` only: a JSON object
with the endpoint, service, hook, hook instance, outcome, HTTP status, time taken and ruleset
digest, and on success the fired rule ids and the number of cards. Never names, identifiers,
record values, card text or exception messages (which could echo a request).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["AuditMiddleware", "HeaderLimit", "error_response"]


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """Every error has one shape: ``{"status": 400, "code": "invalid_request", "error": …}``."""
    return JSONResponse({"status": status, "code": code, "error": message},
                        status_code=status, headers=dict(headers or {}))


_Asgi = Callable[[dict[str, Any], Callable[[], Awaitable[Any]],
                  Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]
_ENDPOINTS = {"/cds-services": "discovery"}


class AuditMiddleware:
    """One audit line per call, whatever its outcome (the only place lines are written).

    Handlers add fields through ``request.state.audit``; an unexpected exception becomes a
    500 in the documented error shape and is logged by type and place only (its message
    could carry request content).
    """

    def __init__(self, app: _Asgi, digest: str, log: logging.Logger) -> None:
        self.app = app
        self.digest = digest
        self.log = log

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        status = 0

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            place = error.__traceback__
            while place is not None and place.tb_next is not None:
                place = place.tb_next
            where = (f"{place.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:"
                     f"{place.tb_lineno}") if place is not None else "?"
            state.setdefault("audit", {}).update(outcome="internal_error",
                                                 exception=type(error).__name__, at=where)
            if status == 0:
                response = error_response(500, "internal_error",
                                          "internal error; the audit log has its type")
                await response(scope, receive, sending)  # type: ignore[arg-type]
        path = str(scope.get("path", ""))
        endpoint = _ENDPOINTS.get(path) or ("feedback" if path.endswith("/feedback")
                                            else "service" if path.startswith(
                                                "/cds-services/") else "other")
        line = {"event": "call", "endpoint": endpoint, "method": scope.get("method"),
                "status": status, "ms": round((time.perf_counter() - started) * 1000, 2),
                "digest": self.digest, **state.get("audit", {})}
        line.setdefault("outcome", "ok" if status < 400 else "refused")
        self.log.info(json.dumps(line))


class HeaderLimit:
    """431 for a request whose headers total more than ``max_bytes``.

    uvicorn's ``h11_max_incomplete_event_size`` only bounds headers still incomplete in its
    buffer: headers that arrive whole in one read pass it, whatever their size.
    """

    def __init__(self, app: _Asgi, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] == "http" and \
                sum(len(k) + len(v) + 4 for k, v in scope["headers"]) > self.max_bytes:
            response = error_response(431, "headers_too_large",
                                      f"request headers over {self.max_bytes} bytes")
            await response(scope, receive, send)  # type: ignore[arg-type]
            return
        await self.app(scope, receive, send)

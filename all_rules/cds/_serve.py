"""How ``all-rules serve`` runs the CDS Hooks app: uvicorn with limits against slow clients.

uvicorn limits connections (``limit_concurrency``: 503 beyond it), the size of a request's
headers (``h11_max_incomplete_event_size``) and the idle time between requests on a kept-alive
connection (``timeout_keep_alive``), but it has no timeout for a client that connects and
sends its headers slowly or not at all. :class:`_HeaderTimeoutProtocol` adds one: a
connection that has not completed a request's headers within ``header_timeout_seconds`` of
opening (or of its previous response) is closed. The body has its own read timeout, enforced
in the app (``_calls``: 408). The audit lines of ``all_rules.cds`` go to stderr, one JSON
object per line; uvicorn's access log is off (the audit line replaces it).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ._service import ServiceSettings, create_app

__all__ = ["serve", "server_config"]


class _HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers do not arrive."""

    header_timeout_seconds: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        waiting_for = self.cycle
        self.loop.call_later(self.header_timeout_seconds, self._headers_overdue, waiting_for)

    def _headers_overdue(self, waiting_for: Any) -> None:
        if self.cycle is waiting_for and not self.transport.is_closing():
            self.transport.close()


def server_config(settings: ServiceSettings, host: str, port: int,
                  app: Any = None) -> uvicorn.Config:
    """The uvicorn configuration ``all-rules serve`` uses (the tests start the same one)."""
    protocol = type("HeaderTimeoutProtocol", (_HeaderTimeoutProtocol,),
                    {"header_timeout_seconds": settings.header_timeout_seconds})
    return uvicorn.Config(app if app is not None else create_app(settings), host=host,
                          port=port, http=protocol,
                          limit_concurrency=settings.max_connections,
                          timeout_keep_alive=settings.keep_alive_seconds,
                          h11_max_incomplete_event_size=settings.max_header_bytes,
                          backlog=2048, access_log=False, log_level="info")


def audit_to_stderr() -> None:
    """Write the service's audit lines (logger ``all_rules.cds``) to stderr as they are."""
    logger = logging.getLogger("all_rules.cds")
    if not any(getattr(h, "_all_rules_audit", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._all_rules_audit = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def serve(settings: ServiceSettings, host: str, port: int) -> None:
    """Run the service until interrupted."""
    audit_to_stderr()
    uvicorn.Server(server_config(settings, host, port)).run()

"""Feedback on the cards this service issued: checked, then logged without free text.

A client may tell the service that a card was accepted or overridden. The service remembers
the cards it issued, by service, so feedback naming a card it never gave (or that another of
its services gave) is refused (400) rather than logged. Each entry becomes one log line with
the service, the card, the outcome and the override reason's code; comments and free text are
never kept (they could carry patient data).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ._calls import Calls, RefusedError

__all__ = ["Feedback", "IssuedCards"]

log = logging.getLogger("all_rules.cds")
_FEEDBACK_OUTCOMES = {"accepted", "overridden"}


class IssuedCards:
    """The uuids of the cards this process issued (the latest ``capacity``), by service, so
    feedback naming a card the service never gave is refused."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._cards: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(self, service_id: str, cards: list[dict[str, Any]]) -> None:
        with self._lock:
            for card in cards:
                self._cards[card["uuid"]] = service_id
                self._cards.move_to_end(card["uuid"])
            while len(self._cards) > self._capacity:
                self._cards.popitem(last=False)

    def issued_by(self, card: str) -> str | None:
        with self._lock:
            return self._cards.get(card)


class Feedback:
    """The feedback endpoint, with the registry of the cards the services issued."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.issued = IssuedCards()

    async def endpoint(self, request: Request) -> Response:
        audit: dict[str, Any] = {}
        request.state.audit = audit
        service_id = self.calls.known_service(request, audit)
        self.calls.authenticate(request)
        body = await self.calls.body(request)
        try:
            data = json.loads(body)
        except ValueError:
            raise RefusedError(400, "invalid_request", "feedback is not JSON") from None
        items = data.get("feedback") if isinstance(data, Mapping) else None
        if not isinstance(items, list) or not items:
            raise RefusedError(400, "invalid_request",
                               "feedback must be a JSON object with a non-empty `feedback` list")
        lines = [self.item(service_id, index, item) for index, item in enumerate(items)]
        for line in lines:
            log.info(json.dumps(line))
        audit.update(outcome="recorded", items=len(lines))
        return self.calls.respond({})

    def item(self, service_id: str, index: int, item: object) -> dict[str, Any]:
        """The log line for one feedback entry; refuses (400) an entry that is malformed or
        names a card this service did not issue. Comments and free text are never kept."""
        where = f"feedback[{index}]"
        if not isinstance(item, Mapping):
            raise RefusedError(400, "invalid_request", f"{where}: expected an object")
        card, outcome = item.get("card"), item.get("outcome")
        if not isinstance(card, str) or self.issued.issued_by(card) != service_id:
            raise RefusedError(400, "unknown_card",
                               f"{where}.card: not a card this service issued")
        if outcome not in _FEEDBACK_OUTCOMES:
            raise RefusedError(400, "invalid_request", f"{where}.outcome: expected one of "
                               f"{sorted(_FEEDBACK_OUTCOMES)}")
        stamp = item.get("outcomeTimestamp")
        try:
            dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            raise RefusedError(400, "invalid_request", f"{where}.outcomeTimestamp: expected an "
                               "ISO 8601 date-time") from None
        override = item.get("overrideReason")
        reason = override.get("reason") if isinstance(override, Mapping) else None
        code = reason.get("code") if isinstance(reason, Mapping) else None
        if override is not None and not isinstance(override, Mapping):
            raise RefusedError(400, "invalid_request",
                               f"{where}.overrideReason: expected an object")
        return {"event": "feedback", "service": service_id, "card": card, "outcome": outcome,
                "overrideReason": code if isinstance(code, str) and len(code) <= 64 else None}

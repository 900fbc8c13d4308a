"""Fetching missing prefetch from a FHIR server the service was configured to trust.

A request's ``fhirServer`` is only a claim by the caller. The service fetches from it only
when it equals a base URL configured for the request's authenticated issuer
(``ServiceSettings.fhir_servers``); otherwise nothing is sent anywhere (412). The
``fhirAuthorization`` token goes only to that base; ``link.next`` is followed only when it
stays under it; the patient id is a FHIR id sent as one URL-encoded path segment or query
value. Every fetch has a timeout, an overall deadline and a response size limit, follows no
redirect and ignores proxy environment variables.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import attrs

from ._request import SEARCHES

__all__ = ["FetchError", "FetchLimits", "fetch_missing", "normalized_base", "not_fetched",
           "trusted_base"]


_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")


class FetchError(Exception):
    """The FHIR server could not give what the service needs; the text names no patient."""


@attrs.frozen
class FetchLimits:
    timeout_seconds: float = 5.0
    """Per connect/read/write; the whole fetch of one request gets three times this."""
    max_bytes: int = 5_000_000
    """Per response body."""
    max_pages: int = 20


def normalized_base(url: str) -> str | None:
    """``scheme://host[:port]/path`` lower-cased scheme and host, no trailing slash, no query,
    fragment or credentials; None when the URL is not a plain http(s) base."""
    import httpx

    if _DOT_SEGMENT.search(url.split("?", 1)[0].split("#", 1)[0]):
        return None  # httpx would resolve them; a base that needs them is not trusted
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query or \
            parsed.fragment or parsed.userinfo:
        return None
    path = parsed.raw_path.decode("ascii", "replace").rstrip("/")
    port = f":{parsed.port}" if parsed.port is not None else ""
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{host.lower()}{port}{path}"


def trusted_base(fhir_server: str, configured: Iterable[str]) -> str | None:
    """The configured base that ``fhir_server`` names, or None."""
    wanted = normalized_base(fhir_server)
    if wanted is None:
        return None
    return next((base for base in configured if normalized_base(base) == wanted), None)


def _within(base: str, url: str) -> bool:
    normal = normalized_base(url.split("?", 1)[0])
    return normal is not None and (normal == base or normal.startswith(base + "/"))


async def _get_json(client: Any, url: str, params: Mapping[str, str] | None,
                    headers: Mapping[str, str], limits: FetchLimits, what: str) -> Any:
    import httpx

    try:
        async with client.stream("GET", url, params=params, headers=headers) as response:
            if response.status_code != 200:
                raise FetchError(f"{what}: HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > limits.max_bytes:
                    raise FetchError(f"{what}: response over {limits.max_bytes} bytes")
    except httpx.HTTPError as error:
        raise FetchError(f"{what}: {type(error).__name__}") from None
    try:
        return json.loads(bytes(body))
    except ValueError:
        raise FetchError(f"{what}: not JSON") from None


async def _search(client: Any, base: str, key: str, patient_id: str,
                  headers: Mapping[str, str], limits: FetchLimits) -> Any:
    """The Patient, or one search followed page by page within the base."""
    if key == "patient":
        return await _get_json(client, f"{base}/Patient/{quote(patient_id, safe='')}", None,
                               headers, limits, key)
    url = f"{base}/{SEARCHES[key]}"
    params: Mapping[str, str] | None = {"patient": patient_id}
    entries: list[Any] = []
    cut: list[dict[str, str]] = []
    for _ in range(limits.max_pages):
        page = await _get_json(client, url, params, headers, limits, key)
        if not isinstance(page, Mapping) or not isinstance(page.get("entry") or [], list):
            raise FetchError(f"{key}: the server's answer is not a Bundle")
        entries.extend(page.get("entry") or [])
        links = page.get("link") or []
        following = next((link.get("url") for link in links if isinstance(link, Mapping)
                          and link.get("relation") == "next"), None) \
            if isinstance(links, list) else None
        if following is None:
            break
        if not isinstance(following, str) or not _within(base, following):
            raise FetchError(f"{key}: the next page is not on the configured FHIR server; "
                             "not followed")
        url, params = following, None
    else:  # the page cap: the next page stays unfollowed, and says so
        cut.append({"relation": "next", "url": url})
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries, "link": cut}


def not_fetched(key: str) -> dict[str, Any]:
    """The stand-in for an optional search the server could not give: a search Bundle
    holding a warning OperationOutcome, so the mapping reports the record as incomplete."""
    return {"resourceType": "Bundle", "type": "searchset", "id": key, "entry": [
        {"resource": {"resourceType": "OperationOutcome", "id": f"{key}-not-fetched",
                      "issue": [{"severity": "warning", "code": "incomplete"}]}}]}


async def fetch_missing(base: str, patient_id: str, keys: list[str], access_token: str | None,
                        limits: FetchLimits, optional: Iterable[str] = ()) -> dict[str, Any]:
    """The missing prefetch values, fetched from the trusted ``base``.

    A search is followed page by page (``link.next`` within the base) up to
    ``limits.max_pages``; a search cut there keeps its unfollowed ``next`` link, so the
    mapping reports the record as incomplete. Raises FetchError when a page of a ``keys``
    value cannot be fetched or a ``next`` link leaves the base (TimeoutError past the
    deadline). The ``optional`` values are fetched after them, within the same deadline; one
    the server cannot give (no read access to that resource type, an error, the deadline)
    does not fail the fetch: it becomes ``not_fetched`` (the call was answerable without it).
    """
    import httpx

    headers = {"Accept": "application/fhir+json"}
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    found: dict[str, Any] = {}
    timeout = httpx.Timeout(limits.timeout_seconds)
    deadline = asyncio.get_running_loop().time() + limits.timeout_seconds * 3
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                 trust_env=False) as client:
        async with asyncio.timeout_at(deadline):
            for key in keys:
                found[key] = await _search(client, base, key, patient_id, headers, limits)
        for key in optional:
            try:
                async with asyncio.timeout_at(deadline):
                    found[key] = await _search(client, base, key, patient_id, headers,
                                               limits)
            except (FetchError, TimeoutError):
                found[key] = not_fetched(key)
    return found

"""CDS Hooks client authentication: a signed JWT bearer on every request.

As the CDS Hooks specification requires: the issuer (``iss``) must be on the allow-list;
the key is chosen by ``kid`` from that issuer's configured JWK Set; ``none`` and HMAC
algorithms are refused (only asymmetric signatures); ``aud`` must equal the URL of the
endpoint called; ``exp`` and ``iat`` are checked with a small clock skew; ``jti`` must
not have been seen before (replay).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import attrs
import jwt

ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS256", "PS384",
              "PS512")
"""Asymmetric algorithms only: the spec requires ES384/RS384 support; none/HS* are refused."""


class AuthError(Exception):
    """The request is not authenticated; the message says why (no token content)."""


@attrs.define
class ReplayCache:
    """``jti`` values seen, kept until their token expires."""

    _seen: dict[str, float] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def check_and_add(self, jti: str, expires: float, now: float) -> None:
        with self._lock:
            for key in [k for k, exp in self._seen.items() if exp < now]:
                del self._seen[key]
            if jti in self._seen:
                raise AuthError("token replayed (jti already used)")
            self._seen[jti] = expires


@attrs.define
class Verifier:
    """Verifies CDS Hooks JWTs against configured issuers and their JWK Sets."""

    issuers: Mapping[str, Mapping[str, Any]]
    """iss → its JWK Set (as JSON)."""
    skew_seconds: int = 60
    max_lifetime_seconds: int = 3600
    replay: ReplayCache = attrs.field(factory=ReplayCache)

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("missing bearer token")
        token = authorization.removeprefix("Bearer ").strip()
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise AuthError(f"algorithm {algorithm!r} is not accepted")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or issuer not in self.issuers:
            raise AuthError("issuer is not trusted")
        kid = header.get("kid")
        if not kid:
            raise AuthError("token has no kid")
        try:
            key_set = jwt.PyJWKSet.from_dict(dict(self.issuers[issuer]))
            key = next((k for k in key_set.keys if k.key_id == kid), None)
        except jwt.PyJWTError:
            raise AuthError("issuer key set is unusable") from None
        if key is None:
            raise AuthError("no key with this kid for the issuer")
        try:
            verified: dict[str, Any] = jwt.decode(
                token, key=key.key, algorithms=[algorithm], audience=audience, issuer=issuer,
                leeway=self.skew_seconds,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("audience is not this endpoint") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token issued in the future") from None
        except jwt.PyJWTError as error:
            raise AuthError(f"token rejected: {type(error).__name__}") from None
        now = time.time()
        if float(verified["iat"]) > now + self.skew_seconds:
            raise AuthError("token issued in the future")
        if float(verified["exp"]) - float(verified["iat"]) > self.max_lifetime_seconds:
            raise AuthError("token lifetime is too long")
        self.replay.check_and_add(str(verified["jti"]), float(verified["exp"]), now)
        return verified

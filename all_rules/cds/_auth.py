"""CDS Hooks client authentication: a signed JWT bearer on every request.

As the CDS Hooks specification requires: the issuer (``iss``) must be on the allow-list;
the key is chosen by ``kid`` from that issuer's configured JWK Set; ``none`` and HMAC
algorithms are refused (only asymmetric signatures); ``aud`` must equal the URL of the
endpoint called; ``exp`` and ``iat`` are checked with a small clock skew; ``jti`` must
not have been seen before (replay). The header's ``alg`` must fit the chosen key (its ``kty``,
its curve, and its ``alg`` where the JWK names one); ``exp``/``iat`` must be numbers and
``jti`` a non-empty string. Every refusal is an :class:`AuthError` (401), never a crash.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

import attrs
import jwt

ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS256", "PS384",
              "PS512")
"""Asymmetric algorithms only: the spec requires ES384/RS384 support; none/HS* are refused."""


_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class AuthError(Exception):
    """The request is not authenticated; the message says why (no token content)."""


@attrs.define
class ReplayCache:
    """``jti`` values seen, each kept while its token could still be accepted.

    A token is accepted only up to ``horizon_seconds`` after it arrives (its lifetime is capped
    and its expiry checked with the clock skew), so entries may leave in the order they came:
    a queue, from which each call pops only what may leave. Amortized O(1) per request, and
    never a scan of every stored ``jti``.
    """

    horizon_seconds: float = 3600 + 2 * 60
    _seen: dict[str, tuple[float, float]] = attrs.field(factory=dict)
    """jti → (expiry, the time its entry may leave)."""
    _queue: collections.deque[tuple[float, str]] = attrs.field(factory=collections.deque)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def check_and_add(self, jti: str, expires: float, now: float) -> None:
        """Refuse a ``jti`` seen on a token that has not expired; else remember it until
        ``expires`` (the token's expiry plus the clock skew it is accepted with)."""
        leaves = now + self.horizon_seconds
        if expires > leaves:
            raise AuthError("token lifetime is too long")
        with self._lock:
            while self._queue and self._queue[0][0] < now:
                left, old = self._queue.popleft()
                if self._seen.get(old, (0.0, None))[1] == left:  # not re-added since
                    del self._seen[old]
            known = self._seen.get(jti)
            if known is not None and known[0] >= now:
                raise AuthError("token replayed (jti already used)")
            self._seen[jti] = (expires, leaves)
            self._queue.append((leaves, jti))

    def __len__(self) -> int:
        return len(self._seen)


def _bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    parts = (authorization or "").split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1].strip():
        raise AuthError("missing bearer token")
    return parts[1].strip()


def _check_key_fits(algorithm: str, jwk: Mapping[str, Any]) -> None:
    """The header's algorithm must be one the key can verify (kty, curve, the JWK's alg)."""
    named = jwk.get("alg")
    if named is not None and named != algorithm:
        raise AuthError(f"algorithm {algorithm!r} does not match the key (its alg is "
                        f"{named!r})")
    kty = jwk.get("kty")
    if algorithm.startswith("ES"):
        if kty != "EC" or jwk.get("crv") != _CURVES[algorithm]:
            raise AuthError(f"algorithm {algorithm!r} does not match the key ({kty} "
                            f"{jwk.get('crv', '')})".rstrip())
    elif kty != "RSA":
        raise AuthError(f"algorithm {algorithm!r} does not match the key ({kty})")


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value):
        raise AuthError(f"claim {name!r} must be a number (NumericDate)")
    return float(value)


@attrs.define
class Verifier:
    """Verifies CDS Hooks JWTs against configured issuers and their JWK Sets."""

    issuers: Mapping[str, Mapping[str, Any]]
    """iss → its JWK Set (as JSON)."""
    skew_seconds: int = 60
    max_lifetime_seconds: int = 3600
    replay: ReplayCache = attrs.field(factory=ReplayCache)

    def __attrs_post_init__(self) -> None:
        # A token is accepted at most skew + lifetime + skew after it arrives (issued up to
        # the skew in the future, expiring up to the lifetime later, accepted up to the skew
        # after that): the replay cache must remember its jti that long.
        self.replay.horizon_seconds = self.max_lifetime_seconds + 2 * self.skew_seconds

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise AuthError(f"algorithm {algorithm!r} is not accepted")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or issuer not in self.issuers:
            raise AuthError("issuer is not trusted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token has no kid")
        try:
            key_set = jwt.PyJWKSet.from_dict(dict(self.issuers[issuer]))
            key = next((k for k in key_set.keys if k.key_id == kid), None)
        except jwt.PyJWTError:
            raise AuthError("issuer key set is unusable") from None
        if key is None:
            raise AuthError("no key with this kid for the issuer")
        raw = next((k for k in self.issuers[issuer].get("keys") or []
                    if isinstance(k, Mapping) and k.get("kid") == kid), {})
        _check_key_fits(algorithm, raw)
        for name in ("exp", "iat"):
            _number(claims, name)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti.strip():
            raise AuthError("claim 'jti' must be a non-empty string")
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
        except Exception as error:  # a key/algorithm pairing PyJWT cannot handle
            raise AuthError(f"token rejected: {type(error).__name__}") from None
        now = time.time()
        issued, expires = _number(verified, "iat"), _number(verified, "exp")
        if issued > now + self.skew_seconds:
            raise AuthError("token issued in the future")
        if expires - issued > self.max_lifetime_seconds:
            raise AuthError("token lifetime is too long")
        # Accepted up to the skew after its expiry, so remembered that long.
        self.replay.check_and_add(str(verified["jti"]), expires + self.skew_seconds, now)
        return verified

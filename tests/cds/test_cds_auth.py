"""JWT verification: every bad token is a 401 with a reason, never a 500 or an acceptance."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

jwt = pytest.importorskip("jwt")
pytest.importorskip("starlette")

from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402

from all_rules.cds._auth import AuthError, ReplayCache, Verifier  # noqa: E402

from ..support.cds_service import (  # noqa: E402
    EC_KEY,
    ISSUER,
    JWKS,
    RSA_KEY,
    call,
    free_port,
    hook_request,
    running,
    service,
    token,
)
from ..support.fhir_charts import CDS_ADULT_PH as ADULT_PH  # noqa: E402

AUD = "https://cds.example.org/cds-services/all-rules-patient-view"
RSA_NO_ALG = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_256 = ec.generate_private_key(ec.SECP256R1())


def _keys() -> dict[str, Any]:
    rsa_plain = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_NO_ALG.public_key()))
    ec_plain = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(EC_256.public_key()))
    return {"keys": [*JWKS["keys"], {**rsa_plain, "kid": "rsa-any", "use": "sig"},
                     {**ec_plain, "kid": "ec-256", "use": "sig"}]}


def _verifier() -> Verifier:
    return Verifier({ISSUER: _keys()})


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUD, "iat": now, "exp": now + 60,
              "jti": str(uuid.uuid4())}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(key: Any, alg: str, kid: str, **changes: Any) -> str:
    return str(jwt.encode(_claims(**changes), key, algorithm=alg, headers={"kid": kid}))


@pytest.mark.parametrize(("key", "alg", "kid", "reason"), [
    (RSA_KEY, "RS384", "ec-1", "does not match the key"),     # RS384 naming an EC key
    (RSA_KEY, "PS384", "rsa-1", "does not match the key"),    # PS384 for an RS384 key
    (EC_256, "ES256", "ec-1", "does not match the key"),      # ES256 for an ES384 key
    (EC_KEY, "ES384", "ec-256", "does not match the key"),    # P-384 alg for a P-256 key
    (EC_KEY, "ES384", "rsa-any", "does not match the key"),   # EC alg for an RSA key
])
def test_algorithm_that_does_not_fit_the_key_is_refused(key: Any, alg: str, kid: str,
                                                        reason: str) -> None:
    """The header's alg must fit the key its kid names; otherwise AuthError (401)."""
    with pytest.raises(AuthError, match=reason):
        _verifier().verify(f"Bearer {_signed(key, alg, kid)}", AUD)


def test_rsa_key_without_alg_accepts_pss_and_pkcs1() -> None:
    """A JWK that names no alg verifies any RSA algorithm its key can do."""
    verifier = _verifier()
    for alg in ("RS384", "PS384"):
        assert verifier.verify(f"Bearer {_signed(RSA_NO_ALG, alg, 'rsa-any')}", AUD)["iss"]


@pytest.mark.parametrize(("changes", "reason"), [
    ({"exp": "9999999999"}, "'exp' must be a number"),
    ({"iat": "now"}, "'iat' must be a number"),
    ({"iat": True}, "'iat' must be a number"),
    ({"exp": None}, "'exp' must be a number"),
    ({"jti": ""}, "'jti' must be a non-empty string"),
    ({"jti": "   "}, "'jti' must be a non-empty string"),
    ({"jti": 42}, "'jti' must be a non-empty string"),
])
def test_claims_of_the_wrong_type_are_refused(changes: dict[str, Any], reason: str) -> None:
    """exp and iat are numbers and jti a non-empty string; anything else is a 401."""
    with pytest.raises(AuthError, match=reason):
        _verifier().verify(f"Bearer {_signed(EC_KEY, 'ES384', 'ec-1', **changes)}", AUD)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(scheme: str) -> None:
    assert _verifier().verify(f"{scheme} {_signed(EC_KEY, 'ES384', 'ec-1')}", AUD)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "Token x"])
def test_missing_or_other_scheme_is_refused(header: str | None) -> None:
    with pytest.raises(AuthError, match="missing bearer token"):
        _verifier().verify(header, AUD)


class _NoScan(dict[str, float]):
    """A dict that fails the test if anything iterates over it."""

    def items(self) -> Any:
        raise AssertionError("the replay cache scanned every stored jti")

    def __iter__(self) -> Any:
        raise AssertionError("the replay cache scanned every stored jti")

    def keys(self) -> Any:
        raise AssertionError("the replay cache scanned every stored jti")


def test_replay_cache_expires_without_scanning() -> None:
    """Expired jtis leave the cache (so it does not grow without bound) in the order they came,
    popping only what may leave — never a scan of every stored jti; a jti is refused while its
    token has not expired, and usable again after."""
    cache = ReplayCache(horizon_seconds=1_000.0)
    object.__setattr__(cache, "_seen", _NoScan())
    for index in range(1_000):  # one a second, each valid for 100 s
        cache.check_and_add(f"j{index}", expires=index + 100.0, now=float(index))
    cache.check_and_add("late", expires=1_600.0, now=1_500.0)  # j0..j499 may leave
    assert len(cache) == 501
    cache.check_and_add("j700", expires=1_700.0, now=1_500.0)  # expired at 800: usable again
    with pytest.raises(AuthError, match="replayed"):
        cache.check_and_add("late", expires=1_650.0, now=1_550.0)
    cache.check_and_add("j999", expires=3_000.0, now=2_400.0)  # its entry left at 1,999
    assert len(cache) == 3  # late and j700 (leave at 2,500) and j999; j500..j998 have left


def test_replay_cache_refuses_an_expiry_beyond_its_horizon() -> None:
    """A jti the cache could not remember until its token expires is refused, not forgotten
    early (the queue's order relies on it)."""
    cache = ReplayCache(horizon_seconds=100.0)
    with pytest.raises(AuthError, match="lifetime"):
        cache.check_and_add("long", expires=1_000.0, now=0.0)


def test_a_replay_within_the_clock_skew_after_expiry_is_refused() -> None:
    """PyJWT accepts a token up to the skew after its expiry, so its jti is remembered that
    long: the verifier tells the cache the expiry plus the skew, and sizes its horizon."""
    verifier = Verifier(issuers={}, skew_seconds=60, max_lifetime_seconds=300)
    assert verifier.replay.horizon_seconds == 300 + 2 * 60
    verifier.replay.check_and_add("j", expires=1_000.0 + 60, now=1_000.0)
    with pytest.raises(AuthError, match="replayed"):
        verifier.replay.check_and_add("j", expires=1_000.0 + 60, now=1_030.0)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    with running(service(port), port) as base:
        yield base


def test_401_carries_www_authenticate(server: str) -> None:
    """RFC 6750: a 401 names the Bearer scheme; with a token present, invalid_token."""
    path = "/cds-services/all-rules-patient-view"
    request = hook_request("patient-view", ADULT_PH)
    missing = call(server, path, request, bearer=None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="all-rules"'
    bad = call(server, path, request, bearer=token(server + path, key=RSA_KEY, alg="RS384"))
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    assert bad.json() == {"status": 401, "code": "unauthorized",
                          "error": "algorithm 'RS384' does not match the key (its alg is "
                                   "'ES384')"}


def test_lower_case_bearer_is_accepted_by_the_server(server: str) -> None:
    import httpx

    path = "/cds-services"
    response = httpx.get(server + path,
                         headers={"Authorization": f"bearer {token(server + path)}"})
    assert response.status_code == 200

"""A CDS Hooks service for tests: started on loopback, called with JWTs signed by test keys."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")
jwt = pytest.importorskip("jwt")
uvicorn = pytest.importorskip("uvicorn")

from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402

from all_rules.cds import ServiceSettings, create_app  # noqa: E402

from .fhir_charts import CDS_ADULT_PH as ADULT_PH  # noqa: E402

ISSUER = "https://ehr.example.org"


EC_KEY = ec.generate_private_key(ec.SECP384R1())


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


OTHER_KEY = ec.generate_private_key(ec.SECP384R1())


def _jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else \
        jwt.algorithms.RSAAlgorithm
    data = json.loads(algorithm.to_jwk(key.public_key()))
    return {**data, "kid": kid, "alg": alg, "use": "sig"}


JWKS = {"keys": [_jwk(EC_KEY, "ec-1", "ES384"), _jwk(RSA_KEY, "rsa-1", "RS384")]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running(app: Any, port: int) -> Iterator[str]:
    """An ASGI app served by uvicorn on loopback, for the duration of the block."""
    with serving(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")) as base:
        yield base


@contextlib.contextmanager
def serving(config: Any) -> Iterator[str]:
    """A uvicorn server of this configuration (on loopback) in a thread, for the block."""
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance.started
    try:
        yield f"http://{config.host}:{config.port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


def service(port: int, **settings: Any) -> Any:
    return create_app(ServiceSettings(base_url=f"http://127.0.0.1:{port}",
                                      issuers={ISSUER: JWKS}, **settings))


def token(audience: str, *, key: Any = EC_KEY, kid: str = "ec-1", alg: str = "ES384",
          issuer: str = ISSUER, lifetime: int = 60, issued: float | None = None,
          jti: str | None = None) -> str:
    now = time.time() if issued is None else issued
    claims = {"iss": issuer, "aud": audience, "iat": int(now), "exp": int(now) + lifetime,
              "jti": jti or str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def call(base: str, path: str, body: Any = None, bearer: str | None = "auto",
         method: str = "POST") -> Any:
    url = base + path
    headers = {}
    if bearer == "auto":
        headers["Authorization"] = f"Bearer {token(url)}"
    elif bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    with httpx.Client(timeout=30) as client:
        if method == "GET":
            return client.get(url, headers=headers)
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return client.post(url, content=content,
                           headers={**headers, "Content-Type": "application/json"})


def hook_request(hook: str, bundle: dict[str, Any], **context: Any) -> dict[str, Any]:
    resources = [e["resource"] for e in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")

    def search(kind: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": r} for r in resources if r["resourceType"] == kind]}

    return {"hook": hook, "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": patient["id"], **context},
            "prefetch": {"patient": patient, "observations": search("Observation"),
                         "conditions": search("Condition")}}


class FhirStub:
    """A FHIR server on loopback serving ADULT_PH's resources, recording what it was asked."""

    def __init__(self, bundle: dict[str, Any] = ADULT_PH, **pages: Any) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        self.seen: list[tuple[str, str | None]] = []
        resources = [e["resource"] for e in bundle["entry"]]

        async def read(request: Request) -> JSONResponse:
            self.seen.append((str(request.url), request.headers.get("authorization")))
            kind = request.path_params["kind"]
            if "ident" in request.path_params:
                return JSONResponse(next(r for r in resources if r["resourceType"] == kind))
            page = {"resourceType": "Bundle", "type": "searchset", "entry": [
                {"resource": r} for r in resources if r["resourceType"] == kind]}
            extra = pages.get(kind, {}) if "page" not in request.query_params else {}
            if callable(extra):  # built from this server's own base URL
                extra = extra(str(request.base_url).rstrip("/"))
            return JSONResponse({**page, **extra})

        self.app = Starlette(routes=[Route("/fhir/{kind}/{ident}", read),
                                     Route("/fhir/{kind}", read)])



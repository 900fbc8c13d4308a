"""End-to-end latency of a CDS Hooks patient-view call on loopback.

Run: ``python tests/benchmarks/bench_cds.py [N]`` (default 1,000 calls). Starts the service
as ``all-rules serve`` does (``all_rules.cds._serve.server_config``: its connection, header,
body and keep-alive limits) on 127.0.0.1, sends N patient-view requests (prefetched Bundle of
the adult Ph+ worked example, each with its own ES384-signed JWT, signed before timing) over one
keep-alive connection, and prints p50 / p99 of the round trip; in the same run, the
discovery call (authentication and routing without assessment) as the reference.
Target: p99 <= 50 ms (the specification asks for about 500 ms).

Then the load test against a real ``all-rules serve --config`` process (so that the clients
do not share the server's interpreter): 2 * N patient-view calls from 100 concurrent clients
(one connection each), printing p50 / p99, throughput and any answer that is not 200 (the
load is "held" when there is none).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import _runtime  # tests/benchmarks/_runtime.py, beside this script
import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec

from all_rules.cds import ServiceSettings
from all_rules.cds._serve import server_config

ISSUER = "https://ehr.bench"
KEY = ec.generate_private_key(ec.SECP384R1())
JWK = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key())), "kid": "k",
       "alg": "ES384"}


def _token(audience: str) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "aud": audience, "iat": now, "exp": now + 300,
                       "jti": str(uuid.uuid4())}, KEY, algorithm="ES384", headers={"kid": "k"})


def _request() -> dict[str, Any]:
    today = dt.date.today()
    onset = (today - dt.timedelta(days=3)).isoformat()

    def observation(ident: str, code: str, value: float, unit: str) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": ident, "status": "final",
                "effectiveDateTime": onset,
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "valueQuantity": {"value": value, "unit": unit,
                                  "system": "http://unitsofmeasure.org", "code": unit}}

    observations = [observation("wbc", "6690-2", 45, "10*3/uL"),
                    observation("h", "8302-2", 178, "cm"), observation("w", "29463-7", 82, "kg")]
    for item in observations:
        item["subject"] = {"reference": "Patient/p1"}
    condition = {"resourceType": "Condition", "id": "dx", "onsetDateTime": onset,
                 "subject": {"reference": "Patient/p1"},
                 "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/icd-o-3",
                                      "code": "9812/3"}]}}
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {
                "patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1984-03-02"},
                "observations": {"resourceType": "Bundle", "type": "searchset",
                                 "entry": [{"resource": o} for o in observations]},
                "conditions": {"resourceType": "Bundle", "type": "searchset",
                               "entry": [{"resource": condition}]}}}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _timed(client: httpx.Client, url: str, count: int, body: bytes | None) -> list[float]:
    tokens = [_token(url) for _ in range(count)]
    samples = []
    for bearer in tokens:
        headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
        start = time.perf_counter()
        response = (client.post(url, content=body, headers=headers) if body is not None
                    else client.get(url, headers=headers))
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text
    return samples


def _check(client: httpx.Client, url: str, body: bytes) -> None:
    """The timed call answers the guideline's cards, with no warning about the record."""
    headers = {"Authorization": f"Bearer {_token(url)}", "Content-Type": "application/json"}
    cards = client.post(url, content=body, headers=headers).json()["cards"]
    assert cards, "no cards: the benchmark would time the diagnosis gate only"
    assert all("topic" in c["source"] for c in cards), [c["summary"] for c in cards]


async def _load(url: str, body: bytes, total: int, concurrency: int
                ) -> tuple[list[float], int, float]:
    """Latencies, non-200 answers and wall time of ``total`` calls from ``concurrency``
    clients, each on its own keep-alive connection."""
    tokens = [_token(url) for _ in range(total)]
    samples: list[float] = []
    failures = 0

    async def client(share: list[str]) -> None:
        nonlocal failures
        async with httpx.AsyncClient(timeout=60) as session:
            for bearer in share:
                headers = {"Authorization": f"Bearer {bearer}",
                           "Content-Type": "application/json"}
                start = time.perf_counter()
                response = await session.post(url, content=body, headers=headers)
                samples.append((time.perf_counter() - start) * 1000)
                failures += response.status_code != 200

    started = time.perf_counter()
    await asyncio.gather(*(client(tokens[i::concurrency]) for i in range(concurrency)))
    return samples, failures, time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _load_on_serve(body: bytes, total: int) -> tuple[list[float], int, float]:
    """The load test against ``all-rules serve --config`` in its own process."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "service.yaml"
        config.write_text(json.dumps({"base_url": base, "issuers": {ISSUER: {"keys": [JWK]}}}))
        command = [str(Path(sys.executable).parent / "all-rules"), "serve", "--config",
                   str(config), "--port", str(port)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    httpx.get(f"{base}/cds-services", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            return asyncio.run(_load(f"{base}/cds-services/all-rules-patient-view", body,
                                     total, 100))
        finally:
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = ServiceSettings(base_url=base, issuers={ISSUER: {"keys": [JWK]}})
    config = server_config(settings, "127.0.0.1", port)
    config.log_level = "warning"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    body = json.dumps(_request()).encode()
    try:
        with httpx.Client(timeout=30) as client:
            _check(client, f"{base}/cds-services/all-rules-patient-view", body)
            _timed(client, f"{base}/cds-services/all-rules-patient-view", 50, body)  # warm-up
            hook = _timed(client, f"{base}/cds-services/all-rules-patient-view", count, body)
            discovery = _timed(client, f"{base}/cds-services", count, None)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    load, failures, wall = _load_on_serve(body, 2 * count)
    print(_runtime.describe())
    print(f"CDS Hooks patient-view on loopback, {count:,} calls, one keep-alive connection")
    print(f"{'':34}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for name, samples in (("patient-view (verify, map, assess)", hook),
                          ("discovery (verify only)", discovery)):
        print(f"{name:34}{_percentile(samples, 0.5):9.2f}{_percentile(samples, 0.99):9.2f}"
              f"{statistics.fmean(samples):9.2f}")
    print(f"ratio patient-view / discovery at p50: "
          f"{_percentile(hook, 0.5) / _percentile(discovery, 0.5):.1f}x")
    verdict = "meets" if _percentile(hook, 0.99) <= 50 else "MISSES"
    print(f"target p99 <= 50 ms: {verdict}")
    print(f"load on `all-rules serve`: {2 * count:,} patient-view calls from 100 concurrent "
          "clients: "
          f"p50 {_percentile(load, 0.5):.1f} ms, p99 {_percentile(load, 0.99):.1f} ms, "
          f"{2 * count / wall:.0f} calls/s, {failures} answers other than 200 "
          f"({'held' if failures == 0 else 'NOT held'})")


if __name__ == "__main__":
    main()

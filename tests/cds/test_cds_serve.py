"""``all-rules serve`` itself: limits against slow clients, and the audit lines it writes.

The servers here are started with the configuration ``all-rules serve`` uses
(``all_rules.cds._serve.server_config``), or as a real ``all-rules serve`` process; all
traffic is on loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from all_rules.cds import ServiceSettings  # noqa: E402
from all_rules.cds._serve import server_config  # noqa: E402

from ..support.cds_service import free_port, hook_request  # noqa: E402
from ..support.cds_service import serving as cds_serving  # noqa: E402
from ..support.fhir_charts import CDS_ADULT_PH as ADULT_PH  # noqa: E402

PATH = "/cds-services/all-rules-patient-view"


@contextlib.contextmanager
def serving(**settings: Any) -> Iterator[str]:
    """The service as ``all-rules serve`` runs it (insecure: these tests are about the
    transport, not about tokens)."""
    port = free_port()
    config = server_config(ServiceSettings(base_url=f"http://127.0.0.1:{port}", insecure=True,
                                           **settings), "127.0.0.1", port)
    config.log_level = "warning"
    with cds_serving(config) as base:
        yield base


def _open(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def test_idle_connections_do_not_stop_a_real_request() -> None:
    """300 connections that send nothing or half a header do not stop a real request from
    being answered within 2 s."""
    with serving() as base:
        warm = httpx.post(base + PATH, json=hook_request("patient-view", ADULT_PH), timeout=30)
        assert warm.status_code == 200  # first call loads the FHIR models: not what is timed
        idle = [_open(base) for _ in range(300)]
        try:
            for index, connection in enumerate(idle):
                if index % 2:
                    connection.sendall(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            response = httpx.post(base + PATH, json=hook_request("patient-view", ADULT_PH),
                                  timeout=10)
            elapsed = time.monotonic() - started
        finally:
            for connection in idle:
                connection.close()
    assert response.status_code == 200, response.text
    assert response.json()["cards"]
    assert elapsed < 2.0, f"{elapsed:.2f} s"


def _closed_within(connection: socket.socket, seconds: float) -> bool:
    connection.settimeout(seconds)
    try:
        return connection.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("sent", [b"", b"POST /cds-services HTTP/1.1\r\nHost: x\r\n"])
def test_connections_without_complete_headers_are_closed(sent: bytes) -> None:
    """A client that does not finish its request's headers within header_timeout_seconds is
    disconnected (uvicorn alone would keep it open for ever)."""
    with serving(header_timeout_seconds=0.5) as base:
        connection = _open(base)
        connection.sendall(sent)
        try:
            assert _closed_within(connection, 3.0)
        finally:
            connection.close()


def test_header_timeout_applies_to_each_request_on_a_kept_alive_connection() -> None:
    """After a first answered request, a slow second one is cut off too."""
    with serving(header_timeout_seconds=0.5, keep_alive_seconds=30) as base:
        connection = _open(base)
        try:
            connection.sendall(b"GET /cds-services HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"]}"):  # the whole discovery response
                answer += connection.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK")
            connection.sendall(b"GET /cds-services HTTP/1.1\r\n")
            assert _closed_within(connection, 3.0)
        finally:
            connection.close()


def test_slow_body_gets_408() -> None:
    """A body that does not arrive within body_timeout_seconds is answered 408."""
    with serving(body_timeout_seconds=0.5) as base:
        connection = _open(base)
        try:
            connection.sendall(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Type: application/json\r\nContent-Length: 1000\r\n"
                               b"\r\n{\"hook\":")
            connection.settimeout(5)
            answer = b""
            while not answer.endswith(b"}"):
                answer += connection.recv(65536)
        finally:
            connection.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert b'"code":"body_timeout"' in answer


@pytest.mark.parametrize("trickled", [False, True])
def test_oversized_headers_are_refused(trickled: bool) -> None:
    """Headers over max_header_bytes get a 4xx (431 from the app when they arrive whole;
    uvicorn's own 400 when they are still incomplete past the limit)."""
    request = b"GET /cds-services HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n"
    with serving(max_header_bytes=2048) as base:
        connection = _open(base)
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                if trickled:  # the server answers and closes before the end
                    for start in range(0, len(request), 1024):
                        connection.sendall(request[start:start + 1024])
                        time.sleep(0.01)
                else:
                    connection.sendall(request)
            connection.settimeout(5)
            answer = connection.recv(65536)
        finally:
            connection.close()
    assert answer.startswith(b"HTTP/1.1 4"), answer[:60]
    if not trickled:
        assert answer.startswith(b"HTTP/1.1 431")


def test_audit_lines_are_written_by_a_real_serve_process(tmp_path: Path) -> None:
    """``all-rules serve`` writes one JSON audit line per call to stderr — hook, service,
    outcome, status, timing, ruleset digest — and feedback lines; no patient value, no
    card text, no user comment."""
    port = free_port()
    script = Path(sys.executable).parent / "all-rules"
    errors = (tmp_path / "stderr.txt").open("w")
    process = subprocess.Popen([str(script), "serve", "--insecure", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=errors,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/cds-services", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        request = hook_request("patient-view", ADULT_PH)
        cards = httpx.post(base + PATH, json=request, timeout=30).json()["cards"]
        feedback = {"feedback": [{"card": cards[0]["uuid"], "outcome": "overridden",
                                  "overrideReason": {"reason": {"code": "not-relevant"},
                                                     "userComment": "Jane Doe, bed 4"},
                                  "outcomeTimestamp": "2026-11-27T10:00:00Z"}]}
        assert httpx.post(base + PATH + "/feedback", json=feedback).status_code == 200
        bad = {**hook_request("patient-view", ADULT_PH), "hookInstance": str(uuid.uuid4())}
        bad["prefetch"] = {**bad["prefetch"], "patient": {**bad["prefetch"]["patient"],
                                                           "id": "p2"}}
        assert httpx.post(base + PATH, json=bad).status_code == 400
    finally:
        process.terminate()
        process.wait(timeout=20)
        errors.close()
    text = (tmp_path / "stderr.txt").read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    calls = [line for line in lines if line["event"] == "call"]
    assert [c["endpoint"] for c in calls] == ["discovery", "service", "feedback", "service"]
    hook = calls[1]
    assert hook["hook"] == "patient-view"
    assert hook["service"] == "all-rules-patient-view"
    assert hook["hookInstance"] == request["hookInstance"]
    assert hook["outcome"] == "cards"
    assert hook["status"] == 200
    assert hook["cards"] == len(cards)
    assert hook["digest"].startswith("sha256:")
    assert isinstance(hook["ms"], float)
    assert (calls[3]["status"], calls[3]["outcome"]) == (400, "patient_mismatch")
    (line,) = [line for line in lines if line["event"] == "feedback"]
    assert (line["outcome"], line["overrideReason"]) == ("overridden", "not-relevant")
    for forbidden in ("1984-03-02", "p1", "p2", "Jane", cards[0]["summary"]):
        assert forbidden not in "\n".join(json.dumps(c) for c in lines), forbidden

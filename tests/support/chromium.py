"""Open a page in headless Chromium and report what a user's browser saw.

Drives the system's ``/usr/bin/chromium`` over the DevTools protocol (a websocket on the
loopback interface), with the ``websockets`` client: no browser download, no driver. For one
page it returns the console errors, every request the page made, the rendered text, counts
of chosen elements, and a PNG screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@attrs.frozen
class PageVisit:
    console_errors: tuple[str, ...]
    requests: tuple[str, ...]
    text: str
    counts: dict[str, int]
    screenshot: bytes
    pdf: bytes
    """The page printed by the browser, with the page's own CSS page size."""
    scroll_width: int = 0
    """The page's width as laid out (``scrollWidth``): above the window's, it scrolls
    sideways (something too wide to wrap)."""

    @property
    def external_requests(self) -> tuple[str, ...]:
        """Requests for anything but the page file itself and inline data."""
        return tuple(url for url in self.requests
                     if not url.startswith(("file://", "data:", "about:")))


class _Client:
    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        wanted = self.next_id
        self.socket.send(json.dumps({"id": wanted, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method for e in self.events):
            return
        while time.monotonic() < deadline:
            message = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(message)
            if message.get("method") == method:
                return
        raise TimeoutError(method)


def visit(page: Path, selectors: Sequence[str] = (), width: int = 1000,
          height: int = 1400) -> PageVisit:
    """Load ``page`` (a local file) in a fresh headless Chromium and collect what it saw."""
    binary = chromium_path()
    if binary is None:
        raise RuntimeError("chromium is not installed")
    profile = tempfile.mkdtemp(prefix="all-rules-chromium-")
    try:
        # Its own process group: the browser's helpers (renderer, GPU, utility processes)
        # are stopped with it, so none still writes into the profile when it is removed.
        process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            port = _port(Path(profile), process)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                        timeout=10) as response:
                targets = json.load(response)
            target = next(t for t in targets if t.get("type") == "page")
            from websockets.sync.client import connect

            with connect(target["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024,
                         open_timeout=20) as socket:
                return _load(_Client(socket), page, selectors, width, height)
        finally:
            _stop_group(process)
    finally:
        _remove_profile(Path(profile))


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the browser and every process of its group, and wait until none is left."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)  # is any process of the group left?
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _remove_profile(profile: Path) -> None:
    """Remove the profile; a file a dying helper wrote meanwhile is removed on the next try."""
    deadline = time.monotonic() + 10
    while True:
        try:
            shutil.rmtree(profile)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if marker.is_file():
            lines = marker.read_text().splitlines()
            if lines and lines[0].isdigit():
                return int(lines[0])
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}")
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port")


def _load(client: _Client, page: Path, selectors: Sequence[str], width: int,
          height: int) -> PageVisit:
    for domain in ("Page", "Runtime", "Log", "Network"):
        client.call(f"{domain}.enable")
    client.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                deviceScaleFactor=1, mobile=False)
    client.call("Page.navigate", url=page.resolve().as_uri())
    client.wait_for("Page.loadEventFired")
    text = client.call("Runtime.evaluate", expression="document.body.innerText",
                       returnByValue=True)["result"].get("value", "")
    counts = {}
    for selector in selectors:
        expression = f"document.querySelectorAll({json.dumps(selector)}).length"
        counts[selector] = int(client.call("Runtime.evaluate", expression=expression,
                                           returnByValue=True)["result"]["value"])
    width_seen = int(client.call(
        "Runtime.evaluate", expression="document.documentElement.scrollWidth",
        returnByValue=True)["result"]["value"])
    shot = client.call("Page.captureScreenshot", format="png")
    pdf = client.call("Page.printToPDF", preferCSSPageSize=True, printBackground=True)
    # Drain what arrived meanwhile (a late console error or request).
    client.call("Runtime.evaluate", expression="1")
    errors: list[str] = []
    requests: list[str] = []
    for event in client.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                   for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append(str(params.get("exceptionDetails", {}).get("text", "exception")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(str(params["entry"].get("text", "")))
        elif method == "Network.requestWillBeSent":
            requests.append(str(params.get("request", {}).get("url", "")))
    return PageVisit(tuple(errors), tuple(requests), str(text), counts,
                     base64.b64decode(shot["data"]), base64.b64decode(pdf["data"]),
                     width_seen)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")

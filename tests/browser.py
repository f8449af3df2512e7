"""A real headless browser for tests: Debian's chromium, driven over the DevTools protocol.

The protocol runs over a pipe (``--remote-debugging-pipe``: JSON messages separated by NUL
bytes on file descriptors 3 and 4), so no port, websocket library or driver is needed.
:func:`load_page` opens a file and returns what the tests check: every request the page
made, console messages and uncaught errors, the images' decoded sizes and rendered boxes,
the element ids, whether the page is wider than the window, a PNG screenshot, and the page
printed to PDF.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageLoad:
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    overflows: bool = False
    screenshot: bytes = b""
    pdf: bytes = b""


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.write_fd, self.read_fd = write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout=60)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(timeout=max(0.1, deadline - time.monotonic()))
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("the browser did not answer")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed its pipe")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)


PROBE = """JSON.stringify({
  images: Array.from(document.images).map(img => ({
    complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
    shown_width: img.getBoundingClientRect().width,
    shown_height: img.getBoundingClientRect().height,
    visible: getComputedStyle(img).visibility !== 'hidden'
             && getComputedStyle(img).display !== 'none'})),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  overflows: document.documentElement.scrollWidth > window.innerWidth + 1,
})"""


def load_page(path: Path, width: int = 1280, height: int = 900, mobile: bool = False) -> PageLoad:
    """Open ``path`` in headless chromium at ``width`` x ``height`` CSS pixels."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError("no chromium found")
    to_browser_read, to_browser_write = os.pipe()
    from_browser_read, from_browser_write = os.pipe()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        # the browser reads commands on fd 3 and writes replies on fd 4
        process = subprocess.Popen(
            [
                browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--disable-background-networking",
                "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank",
            ],
            pass_fds=(3, 4),
            preexec_fn=lambda: (os.dup2(to_browser_read, 3), os.dup2(from_browser_write, 4)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        os.close(to_browser_read)
        os.close(from_browser_write)
        pipe = _Pipe(to_browser_write, from_browser_read)
        try:
            return _drive(pipe, path, width, height, mobile)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the browser and its helpers
            process.wait()
            os.close(to_browser_write)
            os.close(from_browser_read)


def _drive(pipe: _Pipe, path: Path, width: int, height: int, mobile: bool) -> PageLoad:
    target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Network", "Runtime", "Log"):
        pipe.send(f"{domain}.enable", session=session)
    pipe.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        session=session,
    )
    pipe.events.clear()
    pipe.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
    pipe.wait_for("Page.loadEventFired")
    probe = pipe.send(
        "Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, session=session
    )
    found = json.loads(probe["result"]["value"])
    shot = pipe.send(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}, session=session
    )
    printed = pipe.send("Page.printToPDF", {"printBackground": False}, session=session)
    load = PageLoad(
        images=found["images"],
        ids=found["ids"],
        overflows=found["overflows"],
        screenshot=base64.b64decode(shot["data"]),
        pdf=base64.b64decode(printed["data"]),
    )
    for event in pipe.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            load.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            load.console_errors.append(str(params.get("args")))
        elif method == "Runtime.exceptionThrown":
            load.console_errors.append(str(params.get("exceptionDetails")))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            load.console_errors.append(params["entry"].get("text", ""))
    return load

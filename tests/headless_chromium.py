"""Load a page in headless Chromium and report what a person would see go wrong: images that did
not load, console errors, uncaught exceptions, failed requests; plus a full-page screenshot
(`inspect_page`). `open_page` drives a single-page app step by step (navigate, wait for what
renders, run JavaScript, screenshot).

Chromium is driven over the DevTools protocol through `--remote-debugging-pipe` (JSON messages
separated by NUL bytes on file descriptors 3 and 4), so only the standard library is needed.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

CHROMIUM = "chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--remote-debugging-pipe"]


@dataclass
class PageReport:
    images: list[dict[str, Any]]  # per <img>: alt, complete, naturalWidth, naturalHeight
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads


def find_or_install_chromium() -> str | None:
    """The chromium binary; installed with apt-get when missing and we may (CI runs as root)."""
    if shutil.which(CHROMIUM):
        return shutil.which(CHROMIUM)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", CHROMIUM], env=env, capture_output=True, timeout=900)
    return shutil.which(CHROMIUM)


class _Pipe:
    """One DevTools connection: numbered commands, events kept until read."""

    def __init__(self, to_browser: int, from_browser: int):
        self.to_browser, self.from_browser = to_browser, from_browser
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float = 60) -> dict[str, Any]:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)
        raise TimeoutError(f"{method}: no reply in {timeout_s} s")

    def wait_for(self, event: str, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.time() + timeout_s
        seen = next((e for e in self.events if e.get("method") == event), None)
        while seen is None and time.time() < deadline:
            message = self._read()
            self.events.append(message)
            seen = message if message.get("method") == event else None
        if seen is None:
            raise TimeoutError(f"{event} did not happen in {timeout_s} s")
        return seen

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise ConnectionError("chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)


class Page:
    """One browser tab: navigate, run JavaScript, wait for what a person would wait to see."""

    def __init__(self, pipe: _Pipe, session: str):
        self.pipe, self.session = pipe, session

    def send(self, method: str, params: dict | None = None, timeout_s: float = 60) -> dict[str, Any]:
        return self.pipe.send(method, params, session=self.session, timeout_s=timeout_s)

    def navigate(self, url: str) -> None:
        self.pipe.events = [e for e in self.pipe.events if e.get("method") != "Page.loadEventFired"]
        self.send("Page.navigate", {"url": url})
        self.pipe.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                               "awaitPromise": True})
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression[:80]}: {reply['exceptionDetails'].get('text')}")
        return reply["result"].get("value")

    def wait_until(self, expression: str, timeout_s: float = 60, poll_s: float = 0.5) -> Any:
        """The first truthy value of `expression`, polled (a single-page app renders late)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(poll_s)
        raise TimeoutError(f"not true after {timeout_s} s: {expression}")

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={
                "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", params)["data"]))

    def errors(self) -> list[str]:
        return _errors(self.pipe.events)


@contextmanager
def open_page(chromium: str, width: int = 1400, height: int = 900) -> Iterator[Page]:
    """A fresh headless Chromium (its own profile) with one tab of width x height pixels."""
    commands_read, commands_write = os.pipe()
    events_read, events_write = os.pipe()

    def use_fds_3_and_4() -> None:  # runs in the child, before exec
        reader, writer = os.dup(commands_read), os.dup(events_write)
        os.dup2(reader, 3)
        os.dup2(writer, 4)

    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}"],
                                   preexec_fn=use_fds_3_and_4, pass_fds=(3, 4),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(commands_read)
        os.close(events_write)
        pipe = _Pipe(commands_write, events_read)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            page = Page(pipe, session)
            for domain in ("Page", "Runtime", "Log", "Network"):
                page.send(f"{domain}.enable")
            page.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            yield page
        finally:
            try:
                pipe.send("Browser.close", timeout_s=10)
            except (ConnectionError, TimeoutError, OSError):
                pass
            browser.wait(timeout=30)
            os.close(commands_write)
            os.close(events_read)


def inspect_page(chromium: str, url: str, screenshot: Path, width: int = 1400) -> PageReport:
    with open_page(chromium, width) as page:
        page.navigate(url)
        images = page.evaluate(
            "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
            "naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight}))")
        page.screenshot(screenshot)
        return PageReport(images, page.errors())


def _errors(events: list[dict[str, Any]]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            errors.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(f"log: {params['entry']['text']} ({params['entry'].get('url', '')})")
        elif method == "Network.loadingFailed":
            errors.append(f"network: {params.get('errorText')} ({params.get('type')})")
    return errors

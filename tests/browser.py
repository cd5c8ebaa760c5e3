"""Open an HTML report in a real headless Chromium (Debian's ``chromium``) over the Chrome DevTools
protocol: collect console errors and uncaught exceptions, measure every image, take a screenshot."""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageCheck:
    console_errors: list[str]
    images: list[dict]  # {"alt", "complete", "width", "height"}
    screenshot: Path


def open_page(html_file: Path, screenshot: Path, timeout: float = 60.0) -> PageCheck:
    """Load ``html_file`` and report what a person would see (and what the console says)."""
    import websocket

    profile = tempfile.mkdtemp(prefix="deploykit-chromium-")
    process = subprocess.Popen(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + timeout
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                raise RuntimeError(f"chromium exited with status {process.returncode}")
            if match := re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line):
                port = int(match[1])
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(p for p in pages if p["type"] == "page")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout)
        ids = itertools.count(1)
        errors: list[str] = []

        def call(method: str, **params):
            message_id = next(ids)
            ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
            while True:
                message = json.loads(ws.recv())
                _collect(message, errors)
                if message.get("id") == message_id:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message.get("result", {})

        for domain in ("Runtime", "Log", "Page"):
            call(f"{domain}.enable")
        call("Page.navigate", url=html_file.resolve().as_uri())
        while True:  # until the load event (events arrive between replies)
            message = json.loads(ws.recv())
            _collect(message, errors)
            if message.get("method") == "Page.loadEventFired":
                break
        images = call(
            "Runtime.evaluate",
            expression="JSON.stringify(Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
            "width: i.naturalWidth, height: i.naturalHeight})))",
            returnByValue=True,
        )["result"]["value"]
        metrics = call("Page.getLayoutMetrics")["cssContentSize"]
        shot = call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": metrics["width"], "height": min(metrics["height"], 6000), "scale": 1},
        )
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        ws.close()
        return PageCheck(errors, json.loads(images), screenshot)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _collect(message: dict, errors: list[str]) -> None:
    method, params = message.get("method"), message.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
    elif method == "Runtime.exceptionThrown":
        errors.append(params["exceptionDetails"].get("text", "exception"))
    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
        errors.append(params["entry"]["text"])

"""Headless Chromium driven over its DevTools protocol, with aiohttp's websocket client.

Just enough of the protocol for a test that acts as a person would: open a page, type
into it, click where an element is, read the DOM, take a screenshot, and collect every
script error or console error the page produced (a Content-Security-Policy violation
shows up there too). The browser listens on 127.0.0.1 only, on a port it picks and
writes to `DevToolsActivePort` in its profile folder.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CdpError(Exception):
    pass


class Page:
    """One page target's session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.errors: list[str] = []  # uncaught exceptions, console errors, CSP reports
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(CdpError(str(data["error"])))
                    else:
                        future.set_result(data.get("result", {}))
                continue
            self._event(data.get("method", ""), data.get("params", {}))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CdpError("DevTools connection closed"))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(f"exception: {details.get('exception', {}).get('description')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(f"console.error: {params.get('args')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")

    async def send(self, method: str, timeout: float = 15.0, **params: Any) -> Any:
        message_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self._ws.send_str(json.dumps({"id": message_id, "method": method, "params": params}))
        async with asyncio.timeout(timeout):
            return await future

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, what: str) -> Any:
        """Poll `expression` until it is truthy; fail with `what` after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        value: Any = None
        while loop.time() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'", 15, f"{url} to load")

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element `selector` names."""
        box = await self.evaluate(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                if (!el) return null;
                el.scrollIntoView({{block: "center"}});
                const r = el.getBoundingClientRect();
                return [r.x + r.width / 2, r.y + r.height / 2];
            }})()"""
        )
        if box is None:
            raise AssertionError(f"nothing matches {selector!r}")
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def type_into(self, selector: str, text: str) -> None:
        await self.click(selector)
        await self.send("Input.insertText", text=text)

    async def screenshot(self, path: Path) -> bytes:
        result = await self.send(
            "Page.captureScreenshot", timeout=30, format="png", captureBeyondViewport=True
        )
        data = base64.b64decode(result["data"])
        await asyncio.to_thread(_write, path, data)
        return data

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def _wait_for_port(profile: Path, proc: asyncio.subprocess.Process) -> int:
    port_file = profile / "DevToolsActivePort"
    async with asyncio.timeout(30):
        while True:
            if proc.returncode is not None:
                raise AssertionError(f"chromium exited with {proc.returncode}")
            if port_file.exists():
                first = port_file.read_text().splitlines()[:1]
                if first and first[0].isdigit():
                    return int(first[0])
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def chromium(
    binary: str, profile: Path, *, width: int = 1400, height: int = 1000
) -> AsyncIterator[Page]:
    """A headless Chromium with one page, ready for `Page` calls; killed afterwards."""
    log = (profile.parent / "chromium.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        binary,
        "--headless=new",
        "--no-sandbox",  # the test may run as root (CI does)
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "about:blank",
        stdout=log,
        stderr=log,
    )
    log.close()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
    page: Page | None = None
    try:
        port = await _wait_for_port(profile, proc)
        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        target = next(t for t in targets if t["type"] == "page")
        ws = await session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=64 << 20)
        page = Page(ws)
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            await page.send(domain)
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        yield page
    finally:
        if page is not None:
            await page.close()
        await session.close()
        if proc.returncode is None:
            proc.kill()
        async with asyncio.timeout(15):
            await proc.wait()

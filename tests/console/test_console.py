"""The console in a real browser, over a real gateway under load.

Router and connector run as processes against the in-loop SMSC simulator (the e2e
harness), messages keep arriving while headless Chromium opens `/console`, is refused
with a wrong key, logs in with the right one, shows the bind as bound and the recent
messages, opens a message's timeline on a click, and draws both charts. The page under
load is saved to artifacts/console.png for people to look at; the assertions are on
the DOM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smsmesh.simulator.server import Simulator
from tests.console.cdp import Page, chromium, find_chromium
from tests.e2e.harness import API_KEY, Gateway, WebhookReceiver

CHROMIUM = find_chromium()
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium not installed (Debian: apt-get install -y chromium)"
    ),
]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    hooks = WebhookReceiver()
    await hooks.start()
    sim = Simulator(
        host="127.0.0.1", port=0, system_id="e2e", password="secret1", receipt_delay=0.05
    )
    await sim.start()
    gw = Gateway(tmp_path / "gw", sim, hooks, tps=100)
    gw.workdir.mkdir()
    try:
        await gw.start()
        yield gw
    finally:
        await gw.stop()
        await sim.stop()
        await hooks.stop()


async def keep_sending(gw: Gateway, sent: list[str], stop: asyncio.Event) -> None:
    """About 25 messages a second until `stop`, to recipients the simulator delivers to."""
    for n in range(2000):  # bounded even if nobody sets `stop`
        if stop.is_set():
            return
        status, body = await gw.send(
            {"to": f"+4915112{n % 1000:06d}", "text": f"load {n}", "client_ref": f"load-{n}"}
        )
        assert status == 202, body
        sent.append(body["id"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.04)


def js(selector: str) -> str:
    return json.dumps(selector)


async def connection_state(page: Page) -> str | None:
    state: str | None = await page.evaluate(
        "document.querySelector('#connections tr[data-connection=\"sim\"]')?.dataset.state ?? null"
    )
    return state


async def test_console_under_load(gateway: Gateway, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    sent: list[str] = []
    stop = asyncio.Event()
    sender = asyncio.create_task(keep_sending(gateway, sent, stop))
    try:
        async with chromium(CHROMIUM, tmp_path / "profile", width=1400, height=1400) as page:
            await page.navigate(f"{gateway.url}/console")
            await page.wait_for("document.body.dataset.state === 'login'", 10, "the login form")
            assert await page.evaluate("document.getElementById('main').hidden") is True

            # A wrong key: refused, back at the login form with the router's reason.
            await page.type_into("#key", "not-the-key")
            await page.click("#login-button")
            error = await page.wait_for(
                "document.getElementById('login-error').textContent", 10, "the refusal"
            )
            assert "refused" in error
            assert await page.evaluate("sessionStorage.length") == 0

            await page.type_into("#key", API_KEY)
            await page.click("#login-button")
            await page.wait_for(
                "document.querySelector('#connections tr[data-connection=\"sim\"]')"
                "?.dataset.state === 'bound'",
                20,
                "the sim connection to show as bound",
            )
            await page.wait_for(
                "document.querySelectorAll('#messages tbody tr[data-status=\"delivered\"]')"
                ".length >= 3",
                20,
                "delivered messages in the recent list",
            )
            await page.wait_for(
                "Number(document.getElementById('outcomes-chart').dataset.delivered) > 0",
                20,
                "the receipt outcome chart to count deliveries",
            )

            # Click a delivered message: its timeline opens, from accepted to delivered.
            target = await page.evaluate(
                "document.querySelector('#messages tbody tr[data-status=\"delivered\"]').dataset.id"
            )
            await page.click(f'#messages tbody tr[data-id="{target}"]')
            kinds = await page.wait_for(
                f"""(() => {{
                    const t = document.getElementById('timeline');
                    if (t.hidden || t.dataset.id !== {js(target)}) return null;
                    return [...document.querySelectorAll('#timeline-events li')]
                        .map((li) => li.dataset.kind);
                }})()""",
                10,
                "the clicked message's timeline",
            )
            assert kinds[0] == "accepted"
            assert {"claimed", "submitted", "delivered"} <= set(kinds)
            assert (
                await page.evaluate(
                    "document.querySelector('#messages tbody tr.selected')?.dataset.id"
                )
                == target
            )

            # Let the list refresh under load once more, then look at everything shown.
            seen_before = len(sent)
            await page.wait_for(
                f"document.querySelectorAll('#messages tbody tr').length >= 10 && "
                f"{len(sent)} > {seen_before - 1}",
                10,
                "a full recent list",
            )
            row = await page.evaluate(
                """(() => {
                    const tr = document.querySelector('#connections tr[data-connection="sim"]');
                    return [...tr.cells].map((c) => c.textContent);
                })()"""
            )
            assert row[0] == "sim"
            assert row[1] == "bound"
            assert row[4] == "100"  # the configured TPS limit
            shown_ids = await page.evaluate(
                "[...document.querySelectorAll('#messages tbody tr')].map((tr) => tr.dataset.id)"
            )
            assert set(shown_ids) <= set(sent)  # only messages this application sent
            first_to = await page.evaluate(
                "document.querySelector('#messages tbody tr').cells[1].textContent"
            )
            assert first_to.startswith("+4915112")
            routes = await page.evaluate(
                "[...document.querySelectorAll('#routes tbody tr')].map((tr) => tr.dataset.route)"
            )
            assert routes == ["default"]
            lines = await page.evaluate(
                "document.querySelectorAll('#throughput-chart polyline').length"
            )
            assert lines == 3
            assert await page.evaluate("sessionStorage.getItem('smsmesh.console.key')") == API_KEY
            assert "key" not in await page.evaluate("location.href")

            png = await page.screenshot(ARTIFACTS / "console.png")
            assert png.startswith(b"\x89PNG\r\n\x1a\n")
            assert len(png) > 20_000

            # Nothing went wrong in the page but the wrong key's refusals.
            assert [e for e in page.errors if "status of 401" not in e] == []
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await sender
    gateway.check_alive("router")
    gateway.check_alive("connector")

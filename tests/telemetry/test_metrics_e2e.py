"""Every metric is served by a running router and connector (real processes), behind
the metrics token, and moves when traffic flows."""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from smsmesh.telemetry import metrics
from tests.e2e.conftest import GatewayFactory
from tests.e2e.harness import Gateway, WebhookReceiver

TOKEN = "scrape-token-for-tests"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str, token: str | None = TOKEN) -> tuple[set[str], Samples]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{url}/metrics", headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    families, samples = set(), {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def status_of(url: str, path: str, headers: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{url}{path}", headers=headers or {}) as response,
    ):
        return response.status


async def wait_ready(url: str, timeout: float = 20.0) -> None:
    """The connector process's /readyz turns 200 once it is bound (another process:
    there is no event to await, so poll, bounded)."""
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(aiohttp.ClientConnectionError):  # not listening yet
                if await status_of(url, "/readyz") == 200:
                    return
            await asyncio.sleep(0.05)


async def send_and_deliver(gateway: Gateway, hooks: WebhookReceiver, n: int) -> list[str]:
    ids = []
    for i in range(n):
        status, body = await gateway.send({"to": f"+49151000000{i:02d}", "text": f"m{i}"})
        assert status == 202, body
        ids.append(body["id"])
    await hooks.wait_for(lambda c: set(ids) <= {h.body.get("id") for h in c})
    return ids


async def test_router_and_connector_serve_every_metric_and_it_moves(
    make_gateway: GatewayFactory, hooks: WebhookReceiver
) -> None:
    gateway = await make_gateway(env={"SMSMESH_METRICS_TOKEN": TOKEN}, tps=50.0)
    connector_url = f"http://127.0.0.1:{gateway.metrics_port}"
    await wait_ready(connector_url)
    assert await status_of(connector_url, "/healthz") == 200

    # Closed without the token, and with a wrong one, on both processes.
    for url in (gateway.url, connector_url):
        assert await status_of(url, "/metrics") == 401
        assert await status_of(url, "/metrics", {"Authorization": "Bearer wrong"}) == 401

    every = {m._name for m in metrics.ALL}  # families as prometheus_client names them
    families, router_before = await scrape(gateway.url)
    assert every <= families
    families, conn_before = await scrape(connector_url)
    assert every <= families
    assert value(conn_before, "smsmesh_connection_bound", connection="sim") == 1
    assert value(conn_before, "smsmesh_connection_window_size", connection="sim") == 10
    assert value(conn_before, "smsmesh_connection_tps_limit", connection="sim") == 50
    assert value(conn_before, "smsmesh_build_info", version="0.1.0", role="connector") == 1
    assert value(router_before, "smsmesh_build_info", version="0.1.0", role="router") == 1

    hooks.fail_next = 1  # the first webhook fails once and is retried
    status, body = await gateway.send({"to": "not a number", "text": "x"})
    assert status == 400
    code = body["error"]
    ids = await send_and_deliver(gateway, hooks, 3)

    _, router = await scrape(gateway.url)
    _, conn = await scrape(connector_url)

    def moved(samples: Samples, before: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    app = {"application": "app"}
    assert moved(router, router_before, "smsmesh_application_accepted_total", **app) == 3
    assert moved(router, router_before, "smsmesh_route_messages_total", route="default") == 3
    rejected = {"application": "app", "code": code}
    assert moved(router, router_before, "smsmesh_application_rejected_total", **rejected) == 1
    assert moved(router, router_before, "smsmesh_accept_duration_seconds_count") == 3
    kind = {"kind": "message.status"}
    assert moved(router, router_before, "smsmesh_webhook_deliveries_total", **kind) == 3
    assert moved(router, router_before, "smsmesh_webhook_failures_total", **kind) == 1
    assert moved(router, router_before, "smsmesh_webhook_retries_total", **kind) == 1
    assert moved(router, router_before, "smsmesh_webhook_duration_seconds_count", **kind) == 4
    assert value(router, "smsmesh_connection_queue_depth", connection="sim") == 0
    assert ("smsmesh_connection_queue_depth", (("connection", "sim"),)) in router

    sim = {"connection": "sim"}
    ok = {"connection": "sim", "command_status": "ESME_ROK"}
    assert moved(conn, conn_before, "smsmesh_connection_submits_total", **ok) == 3
    assert moved(conn, conn_before, "smsmesh_connection_submit_duration_seconds_count", **sim) == 3
    submitted = {"connection": "sim", "outcome": "submitted"}
    assert moved(conn, conn_before, "smsmesh_connection_messages_total", **submitted) == 3
    delivered = {"connection": "sim", "state": "delivered"}
    assert moved(conn, conn_before, "smsmesh_receipts_total", **delivered) == 3
    assert moved(conn, conn_before, "smsmesh_receipt_latency_seconds_count", **delivered) == 3
    latency = moved(conn, conn_before, "smsmesh_receipt_latency_seconds_sum", **delivered)
    assert 0 < latency < 30
    assert value(conn, "smsmesh_connection_tps", **sim) >= 0
    assert value(conn, "smsmesh_connection_tps_effective_limit", **sim) == 50
    assert value(conn, "smsmesh_connection_window_in_use", **sim) == 0
    assert not math.isnan(value(conn, "smsmesh_connection_tps", **sim))

    # A dropped bind: the connector reconnects, and says so (it is another process:
    # scrape until it shows, bounded).
    assert gateway.sim.drop_connections() >= 1
    async with asyncio.timeout(20):
        while True:
            _, conn = await scrape(connector_url)
            reconnects = moved(conn, conn_before, "smsmesh_connection_reconnects_total", **sim)
            if reconnects >= 1 and value(conn, "smsmesh_connection_bound", **sim) == 1:
                break
            await asyncio.sleep(0.05)
    assert ids


async def test_metrics_stay_closed_without_a_token(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(env={"SMSMESH_METRICS_TOKEN": ""})
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{gateway.url}/metrics", headers={"Authorization": "Bearer "}) as response,
    ):
        body: Any = await response.json()
    assert response.status == 401
    assert body["error"] == "metrics_closed"
    assert "SMSMESH_METRICS_TOKEN" in body["message"]

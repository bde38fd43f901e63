"""The webhook dispatcher against a real SQLite store (the `store` fixture of this
folder) and a real receiver on loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from smsmesh.model import (
    MessageRecord,
    NewMessage,
    Receipt,
    ReceiptState,
    SubmitOutcome,
    SubmitReport,
    new_message_id,
)
from smsmesh.store import SqliteStore
from smsmesh_router.webhooks import WebhookDispatcher, WebhookPolicy
from tests.e2e.harness import serve_on_loopback

CONN = "conn-a"
FAST = WebhookPolicy(base_delay=0.05, max_delay=0.2, max_attempts=3, idle_poll=0.02)


async def delivered_message(store: SqliteStore, callback_url: str) -> str:
    """A message through accept, claim, submit and a DELIVRD receipt: its status job is due."""
    now = time.time()
    message = NewMessage(
        id=new_message_id(),
        application="app",
        source="smsmesh",
        destination="31612345678",
        text="hello",
        route="default",
        targets=(CONN,),
        expires_at=now + 3600,
        created_at=now,
        callback_url=callback_url,
    )
    await store.accept([message])
    assert [m.id for m in await store.claim(CONN, 10, now)] == [message.id]
    await store.record_submits(
        [SubmitReport(message.id, CONN, now, SubmitOutcome.SUBMITTED, ("abc1",))]
    )
    await store.record_receipts([Receipt(CONN, "abc1", ReceiptState.DELIVERED, now)])
    return message.id


async def webhook_results(store: SqliteStore, message_id: str, count: int) -> list[dict[str, Any]]:
    """The first `count` webhook outcomes on the message's timeline (polled, bounded)."""
    async with asyncio.timeout(10):
        while True:
            found = await store.get_message(message_id)
            assert isinstance(found, MessageRecord)
            results = [e.detail for e in found.events if e.kind == "webhook"]
            if len(results) >= count:
                return results
            await asyncio.sleep(0.02)


async def test_failed_attempts_are_retried_until_delivered(store: SqliteStore) -> None:
    answers = [500, 503, 204]
    calls: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        calls.append(await request.json())
        return web.Response(status=answers[len(calls) - 1])

    app = web.Application()
    app.router.add_post("/status", handle)
    runner, port = await serve_on_loopback(app)
    dispatcher = WebhookDispatcher(store, FAST)
    await dispatcher.start()
    try:
        message_id = await delivered_message(store, f"http://127.0.0.1:{port}/status")
        results = await webhook_results(store, message_id, 3)
    finally:
        await dispatcher.stop()
        await runner.cleanup()
    assert [r["result"] for r in results] == ["failed", "failed", "delivered"]
    assert [r["error"] for r in results[:2]] == ["HTTP 500", "HTTP 503"]
    assert [c["id"] for c in calls] == [message_id] * 3
    assert (dispatcher.delivered, dispatcher.failed_attempts) == (1, 2)


async def test_a_url_nobody_can_call_is_a_recorded_failure_not_a_stuck_job(
    store: SqliteStore,
) -> None:
    """A stored URL that does not parse (the API refuses these now; older rows may hold
    one) fails each attempt at once and ends as given up, instead of killing the
    delivery task and waiting out its one-minute lease again and again."""
    message_id = await delivered_message(store, "http://127.0.0.1:99999/status")
    dispatcher = WebhookDispatcher(store, FAST)
    await dispatcher.start()
    try:
        results = await webhook_results(store, message_id, FAST.max_attempts)
    finally:
        await dispatcher.stop()
    assert [r["result"] for r in results] == ["failed", "failed", "gave_up"]
    assert all("error" in r for r in results)

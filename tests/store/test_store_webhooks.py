"""Conformance: the webhook outbox (leases, retries, giving up) and inbound messages."""

from __future__ import annotations

import asyncio

import pytest
from storekit import CALLBACK, CONN, T0, Backend, receipt, record, submit_new

from smsmesh.model import InboundMessage, WebhookJob, WebhookKind
from smsmesh.store import Store, StoreError

MO_URL = "http://app.test/inbound"


async def delivered_with_callback(store: Store, smsc_id: str = "w1") -> str:
    message_id = await submit_new(store, smsc_id, callback_url=CALLBACK)
    await store.record_receipts([receipt(smsc_id, at=T0 + 30)])
    return message_id


async def claim(store: Store, now: float, lease: float = 30, limit: int = 10) -> list[WebhookJob]:
    return await store.claim_webhooks(limit, now, lease)


async def test_a_job_is_due_at_the_final_status(store: Store) -> None:
    message_id = await delivered_with_callback(store)
    assert await claim(store, T0 + 29.9) == []
    [job] = await claim(store, T0 + 30)
    assert (job.kind, job.url, job.message_id, job.attempts) == (
        WebhookKind.STATUS,
        CALLBACK,
        message_id,
        0,
    )


async def test_a_leased_job_is_hidden_until_the_lease_ends(store: Store) -> None:
    await delivered_with_callback(store)
    [job] = await claim(store, T0 + 40, lease=30)
    assert await claim(store, T0 + 69.9) == []
    # The dispatcher crashed: once the lease ran out, another one gets the job.
    [again] = await claim(store, T0 + 70)
    assert again.id == job.id
    assert again.payload == job.payload


async def test_delivered_job_is_done_and_logged(store: Store) -> None:
    message_id = await delivered_with_callback(store)
    [job] = await claim(store, T0 + 40)
    await store.complete_webhook(job.id, True, T0 + 41, None, None)
    assert await claim(store, T0 + 10_000) == []
    rec = await record(store, message_id)
    event = rec.events[-1]
    assert (event.kind, event.at) == ("webhook", T0 + 41)
    assert event.detail["result"] == "delivered"
    assert event.detail["attempt"] == 1


async def test_failed_attempt_is_retried_at_retry_at(store: Store) -> None:
    message_id = await delivered_with_callback(store)
    [job] = await claim(store, T0 + 40)
    await store.complete_webhook(job.id, False, T0 + 41, T0 + 100, "HTTP 503")
    assert await claim(store, T0 + 99) == []
    [again] = await claim(store, T0 + 100)
    assert (again.id, again.attempts) == (job.id, 1)
    rec = await record(store, message_id)
    assert rec.events[-1].detail["result"] == "failed"
    assert rec.events[-1].detail["attempt"] == 1
    assert rec.events[-1].detail["error"] == "HTTP 503"


async def test_giving_up_ends_the_job(store: Store) -> None:
    message_id = await delivered_with_callback(store)
    [job] = await claim(store, T0 + 40)
    await store.complete_webhook(job.id, False, T0 + 41, T0 + 50, "timeout")
    [job] = await claim(store, T0 + 50)
    await store.complete_webhook(job.id, False, T0 + 51, None, "HTTP 410")
    assert await claim(store, T0 + 10_000) == []
    webhook_events = [e for e in (await record(store, message_id)).events if e.kind == "webhook"]
    assert [e.detail["result"] for e in webhook_events] == ["failed", "gave_up"]
    assert [e.detail["attempt"] for e in webhook_events] == [1, 2]


async def test_completing_twice_is_harmless(store: Store) -> None:
    message_id = await delivered_with_callback(store)
    [job] = await claim(store, T0 + 40, lease=5)
    [same] = await claim(store, T0 + 46, lease=5)  # the first dispatcher was too slow
    await store.complete_webhook(same.id, True, T0 + 47, None, None)
    await store.complete_webhook(job.id, False, T0 + 48, T0 + 60, "late")
    assert await claim(store, T0 + 10_000) == []
    webhook_events = [e for e in (await record(store, message_id)).events if e.kind == "webhook"]
    assert len(webhook_events) == 1


async def test_completing_an_unknown_job_is_an_error(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.complete_webhook(987654, True, T0, None, None)


async def test_jobs_come_oldest_due_first_up_to_the_limit(store: Store) -> None:
    ids = []
    for n, at in enumerate((T0 + 33, T0 + 31, T0 + 32)):
        message_id = await submit_new(store, f"o{n}", callback_url=CALLBACK)
        await store.record_receipts([receipt(f"o{n}", at=at)])
        ids.append(message_id)
    jobs = await claim(store, T0 + 40, limit=2)
    assert [j.message_id for j in jobs] == [ids[1], ids[2]]
    assert [j.message_id for j in await claim(store, T0 + 40)] == [ids[0]]


async def test_webhook_carries_the_message_trace_context(store: Store) -> None:
    ctx = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    message_id = await submit_new(store, "t1", callback_url=CALLBACK, trace_context=ctx)
    await store.record_receipts([receipt("t1")])
    [job] = await claim(store, T0 + 40)
    assert job.message_id == message_id
    assert job.trace_context == ctx


async def test_two_dispatchers_never_lease_the_same_job(backend: Backend) -> None:
    store = await backend.open()
    for n in range(6):
        await delivered_with_callback(store, f"d{n}")
    other = await backend.open()
    first = await claim(store, T0 + 40, limit=4)
    second = await claim(other, T0 + 40, limit=4)
    assert len(first) == 4
    assert len(second) == 2
    assert not {j.id for j in first} & {j.id for j in second}


def inbound(message_id: str, url: str | None, **fields: object) -> InboundMessage:
    values: dict[str, object] = {
        "id": message_id,
        "connection": CONN,
        "source": "4915112345678",
        "destination": "12345",
        "text": "STOP",
        "received_at": T0 + 5,
        "application": "app",
        "trace_context": {"traceparent": "00-aa-bb-01"},
        "webhook_url": url,
    }
    values.update(fields)
    return InboundMessage(**values)  # type: ignore[arg-type]


async def test_inbound_message_queues_a_webhook(store: Store) -> None:
    await store.record_inbound([inbound("mo-1", MO_URL)])
    [job] = await claim(store, T0 + 5)
    assert job.kind is WebhookKind.INBOUND
    assert job.url == MO_URL
    assert job.message_id == "mo-1"
    assert job.trace_context == {"traceparent": "00-aa-bb-01"}
    assert job.payload == {
        "event": "message.inbound",
        "id": "mo-1",
        "connection": CONN,
        "from": "4915112345678",
        "to": "12345",
        "text": "STOP",
        "received_at": T0 + 5,
        "application": "app",
    }


async def test_inbound_without_url_queues_nothing(store: Store) -> None:
    await store.record_inbound([inbound("mo-2", None, application=None)])
    assert await claim(store, T0 + 100) == []


async def test_the_same_inbound_message_twice_makes_one_job(store: Store) -> None:
    await store.record_inbound([inbound("mo-3", MO_URL)])
    await store.record_inbound([inbound("mo-3", MO_URL), inbound("mo-4", MO_URL)])
    jobs = await claim(store, T0 + 100)
    assert sorted(j.message_id for j in jobs) == ["mo-3", "mo-4"]


async def test_a_new_webhook_job_wakes_a_waiting_dispatcher(backend: Backend) -> None:
    """The router and the connector are separate stores: the connector's receipt write
    that adds a job wakes the router's wait, long before its timeout."""
    router, connector = await backend.open(), await backend.open()
    await router.wait_for_webhooks(0.01)  # listening from here on
    assert await router.wait_for_webhooks(0.2) is False  # nothing yet
    waiter = asyncio.create_task(router.wait_for_webhooks(30))
    message_id = await delivered_with_callback(connector)
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(waiter, 30) is True
    assert asyncio.get_running_loop().time() - started < 10, "woken by the timeout, not the job"
    [job] = await claim(router, T0 + 40)
    assert job.message_id == message_id

"""Conformance: accepting, idempotency, reading back, claiming and recovering messages."""

from __future__ import annotations

import asyncio
import time

import pytest
from storekit import (
    CALLBACK,
    CONN,
    CONN_B,
    T0,
    Backend,
    accept_one,
    claim_ids,
    kinds,
    new_message,
    record,
    requeue,
)

from smsmesh.model import MessageStatus, Priority
from smsmesh.store import Store, StoreError


async def test_accepted_message_reads_back_with_every_field(store: Store) -> None:
    m = new_message(
        targets=(CONN, CONN_B),
        priority=Priority.HIGH,
        segments=2,
        client_ref="order-17",
        callback_url=CALLBACK,
        trace_context={"traceparent": "00-abc-def-01"},
    )
    [result] = await store.accept([m])
    assert result.message_id == m.id
    assert result.duplicate is False

    rec = await record(store, m.id)
    assert rec.application == "app"
    assert (rec.source, rec.destination) == (m.source, m.destination)
    assert rec.status is MessageStatus.ACCEPTED
    assert rec.route == "default"
    assert rec.targets == (CONN, CONN_B)
    assert rec.connection == CONN
    assert rec.priority is Priority.HIGH
    assert rec.segments == 2
    assert rec.attempts == 0
    assert rec.created_at == m.created_at
    assert rec.expires_at == m.expires_at
    assert rec.client_ref == "order-17"
    assert rec.callback_url == CALLBACK
    assert rec.smsc_message_ids == ()
    assert kinds(rec) == ["accepted"]
    assert rec.events[0].status is MessageStatus.ACCEPTED


async def test_batch_results_are_in_input_order(store: Store) -> None:
    batch = [new_message() for _ in range(500)]
    results = await store.accept(batch)
    assert [r.message_id for r in results] == [m.id for m in batch]
    assert not any(r.duplicate for r in results)
    assert (await store.queue_depths()) == {CONN: 500}


async def test_empty_accept_is_a_no_op(store: Store) -> None:
    assert await store.accept([]) == []
    assert await store.queue_depths() == {}


async def test_idempotency_key_returns_the_earlier_id(store: Store) -> None:
    first = new_message(idempotency_key="k-1")
    again = new_message(idempotency_key="k-1")
    [r1] = await store.accept([first])
    [r2] = await store.accept([again])
    assert (r1.message_id, r1.duplicate) == (first.id, False)
    assert (r2.message_id, r2.duplicate) == (first.id, True)
    assert await store.get_message(again.id) is None
    assert await store.queue_depths() == {CONN: 1}


async def test_idempotency_key_repeated_within_one_batch(store: Store) -> None:
    a, b, c = (new_message(idempotency_key=k) for k in ("x", "x", "y"))
    results = await store.accept([a, b, c])
    assert [(r.message_id, r.duplicate) for r in results] == [
        (a.id, False),
        (a.id, True),
        (c.id, False),
    ]


async def test_applications_may_reuse_each_others_keys(store: Store) -> None:
    mine = new_message(application="app-1", idempotency_key="same")
    theirs = new_message(application="app-2", idempotency_key="same")
    results = await store.accept([mine, theirs])
    assert [(r.message_id, r.duplicate) for r in results] == [(mine.id, False), (theirs.id, False)]


async def test_messages_without_keys_are_never_duplicates(store: Store) -> None:
    results = await store.accept([new_message(), new_message()])
    assert [r.duplicate for r in results] == [False, False]


async def test_get_message_checks_the_owner(store: Store) -> None:
    message_id = await accept_one(store, application="owner")
    assert await store.get_message(message_id, "someone-else") is None
    assert (await store.get_message(message_id, "owner")) is not None
    assert (await store.get_message(message_id)) is not None
    assert await store.get_message("no-such-id") is None


async def test_claim_takes_highest_priority_then_oldest(store: Store) -> None:
    bulk_old = new_message(created=T0 + 1, priority=Priority.BULK)
    normal_new = new_message(created=T0 + 3, priority=Priority.NORMAL)
    normal_old = new_message(created=T0 + 2, priority=Priority.NORMAL)
    high_new = new_message(created=T0 + 5, priority=Priority.HIGH)
    await store.accept([bulk_old, normal_new, normal_old, high_new])

    claimed = await store.claim(CONN, 3, T0 + 10)
    assert [m.id for m in claimed] == [high_new.id, normal_old.id, normal_new.id]
    assert [m.id for m in await store.claim(CONN, 3, T0 + 10)] == [bulk_old.id]


async def test_claim_hands_over_what_a_connector_needs(store: Store) -> None:
    m = new_message(client_ref="ref", trace_context={"traceparent": "00-1-2-01"})
    await store.accept([m])
    [c] = await store.claim(CONN, 10, T0 + 10)
    assert (c.id, c.application, c.source, c.destination, c.text) == (
        m.id,
        m.application,
        m.source,
        m.destination,
        m.text,
    )
    assert c.priority is Priority.NORMAL
    assert c.expires_at == m.expires_at
    assert c.attempts == 0
    assert c.client_ref == "ref"
    assert c.trace_context == {"traceparent": "00-1-2-01"}
    rec = await record(store, m.id)
    assert rec.attempts == 1
    assert rec.status is MessageStatus.ACCEPTED  # dispatching is still "accepted" outside
    assert kinds(rec) == ["accepted", "claimed"]


async def test_claim_respects_limit_and_never_hands_a_message_twice(store: Store) -> None:
    ids = {r.message_id for r in await store.accept([new_message() for _ in range(23)])}
    seen: list[str] = []
    for _ in range(10):
        batch = await claim_ids_limited(store, 5)
        assert len(batch) <= 5
        if not batch:
            break
        seen.extend(batch)
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == ids
    assert await store.queue_depths() == {}


async def claim_ids_limited(store: Store, limit: int) -> list[str]:
    return [m.id for m in await store.claim(CONN, limit, T0 + 10)]


async def test_concurrent_claims_share_out_messages(backend: Backend) -> None:
    router = await backend.open()
    ids = {r.message_id for r in await router.accept([new_message() for _ in range(200)])}
    a, b = await backend.open(), await backend.open()
    got: list[str] = []

    async def drain(store: Store) -> None:
        for _ in range(100):
            batch = await claim_ids_limited(store, 7)
            if not batch:
                return
            got.extend(batch)

    await asyncio.gather(drain(a), drain(b))
    assert len(got) == len(set(got)) == 200
    assert set(got) == ids


async def test_claim_only_sees_its_connection(store: Store) -> None:
    mine = await accept_one(store, targets=(CONN,))
    await accept_one(store, targets=(CONN_B,))
    assert await claim_ids(store, CONN) == [mine]
    assert await claim_ids(store, CONN) == []


async def test_claim_zero_returns_nothing(store: Store) -> None:
    await accept_one(store)
    assert await store.claim(CONN, 0, T0 + 10) == []
    assert await store.queue_depths() == {CONN: 1}


async def test_claim_skips_expired_messages(store: Store) -> None:
    live = await accept_one(store, expires_at=T0 + 100)
    await accept_one(store, expires_at=T0 + 50)
    assert await claim_ids(store, now=T0 + 50) == [live]


async def test_requeued_message_waits_for_retry_at(store: Store) -> None:
    message_id = await accept_one(store)
    assert await claim_ids(store) == [message_id]
    await store.record_submits([requeue(message_id, retry_at=T0 + 60)])
    assert await store.queue_depths() == {CONN: 1}
    assert await claim_ids(store, now=T0 + 59.9) == []
    [again] = await store.claim(CONN, 10, T0 + 60)
    assert again.id == message_id
    assert again.attempts == 1


async def test_recover_puts_dispatching_messages_back(store: Store) -> None:
    claimed = await accept_one(store)
    waiting = await accept_one(store)
    other = await accept_one(store, targets=(CONN_B,))
    assert await store.claim(CONN, 1, T0 + 10) != []
    assert await claim_ids(store, CONN_B) == [other]

    assert await store.recover(CONN) == 1
    assert (await record(store, claimed)).status is MessageStatus.ACCEPTED
    assert kinds(await record(store, claimed)) == ["accepted", "claimed", "recovered"]
    assert sorted(await claim_ids(store)) == sorted([claimed, waiting])
    assert await store.recover(CONN_B) == 1
    assert await store.recover(CONN_B) == 0


async def test_queue_depths_count_only_queued_messages(store: Store) -> None:
    await store.accept([new_message() for _ in range(3)])
    await store.accept([new_message(targets=(CONN_B,)) for _ in range(2)])
    assert await store.queue_depths() == {CONN: 3, CONN_B: 2}
    await store.claim(CONN, 2, T0 + 10)
    assert await store.queue_depths() == {CONN: 1, CONN_B: 2}


async def test_data_survives_close_and_reopen(backend: Backend) -> None:
    first = await backend.open()
    message_id = await accept_one(first, idempotency_key="durable")
    await first.close()
    second = await backend.open()
    assert (await record(second, message_id)).status is MessageStatus.ACCEPTED
    [again] = await second.accept([new_message(idempotency_key="durable")])
    assert (again.message_id, again.duplicate) == (message_id, True)
    assert await claim_ids(second) == [message_id]


async def test_closed_store_refuses_work(backend: Backend) -> None:
    store = await backend.open()
    await store.close()
    with pytest.raises(StoreError):
        await store.accept([new_message()])


async def test_wait_for_work_wakes_on_accept_from_another_handle(backend: Backend) -> None:
    connector = await backend.open()
    router = await backend.open()
    await connector.recover(CONN)  # a connector starts by recovering, then claims and waits
    await connector.wait_for_work(CONN, 0.01)  # settle: a first wait may answer at once
    waiter = asyncio.create_task(connector.wait_for_work(CONN, 10))
    started = time.monotonic()
    await accept_one(router)
    assert await asyncio.wait_for(waiter, 10) is True
    assert time.monotonic() - started < 5


async def test_wait_for_work_times_out_without_work(store: Store) -> None:
    await store.wait_for_work(CONN, 0.01)  # settle
    await accept_one(store, targets=(CONN_B,))  # work for someone else does not wake us
    started = time.monotonic()
    assert await store.wait_for_work(CONN, 0.3) is False
    assert time.monotonic() - started >= 0.25


async def test_failover_wakes_the_next_connection(backend: Backend) -> None:
    second = await backend.open()
    await second.wait_for_work(CONN_B, 0.01)  # settle
    first = await backend.open()
    message_id = await accept_one(first, targets=(CONN, CONN_B))
    assert await claim_ids(first) == [message_id]
    waiter = asyncio.create_task(second.wait_for_work(CONN_B, 10))
    await first.record_submits([requeue(message_id, failover=True)])
    assert await asyncio.wait_for(waiter, 10) is True
    assert await claim_ids(second, CONN_B, now=T0 + 30) == [message_id]


async def test_a_failing_batch_changes_nothing(store: Store) -> None:
    existing = await accept_one(store)
    fresh = new_message()
    clash = new_message(id=existing)  # the same id again, without an idempotency key
    with pytest.raises(StoreError):
        await store.accept([fresh, clash])
    assert await store.get_message(fresh.id) is None
    assert await store.queue_depths() == {CONN: 1}

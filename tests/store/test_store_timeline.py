"""Conformance: timelines, expiry, connection state and free-form events."""

from __future__ import annotations

from storekit import (
    CALLBACK,
    CONN,
    CONN_B,
    T0,
    accept_one,
    all_webhooks,
    claim_ids,
    kinds,
    receipt,
    record,
    submit_new,
    submitted,
)

from smsmesh.model import ConnectionState, Event, MessageStatus, ReceiptState
from smsmesh.store import Store


async def test_a_whole_life_in_the_timeline(store: Store) -> None:
    message_id = await accept_one(store, callback_url=CALLBACK)
    await store.claim(CONN, 10, T0 + 10)
    await store.record_submits([submitted(message_id, "5A", at=T0 + 20)])
    await store.record_receipts([receipt("5a", ReceiptState.ENROUTE, at=T0 + 25)])
    await store.record_receipts([receipt("5A", at=T0 + 30)])
    [job] = await all_webhooks(store, T0 + 40)
    await store.complete_webhook(job.id, True, T0 + 41, None, None)

    rec = await record(store, message_id)
    assert kinds(rec) == [
        "accepted",
        "claimed",
        "submitted",
        "receipt",
        "receipt",
        "delivered",
        "webhook",
    ]
    assert [e.status for e in rec.events] == [
        MessageStatus.ACCEPTED,
        None,
        MessageStatus.SUBMITTED,
        None,
        None,
        MessageStatus.DELIVERED,
        None,
    ]
    assert [e.at for e in rec.events][1:] == [T0 + 10, T0 + 20, T0 + 25, T0 + 30, T0 + 30, T0 + 41]
    assert rec.events[1].detail["attempt"] == 1
    assert rec.events[2].detail["smsc_ids"] == ["5A"]
    assert [rec.events[3].detail["state"], rec.events[4].detail["state"]] == [
        "enroute",
        "delivered",
    ]
    assert all(e.connection == CONN for e in rec.events[:6])
    assert rec.updated_at == T0 + 30


async def test_added_events_join_the_timeline_in_order(store: Store) -> None:
    message_id = await accept_one(store)
    await store.add_events(
        [
            (message_id, Event(T0 + 1, "throttled", connection=CONN, detail={"for_s": 2})),
            (message_id, Event(T0 + 2, "note", detail={"by": "test"})),
        ]
    )
    rec = await record(store, message_id)
    assert kinds(rec) == ["accepted", "throttled", "note"]
    assert rec.events[1].detail == {"for_s": 2}
    assert rec.events[1].connection == CONN
    assert rec.events[2].status is None


async def test_queued_message_expires_at_its_validity(store: Store) -> None:
    message_id = await accept_one(store, expires_at=T0 + 100, callback_url=CALLBACK)
    keep = await accept_one(store, expires_at=T0 + 200)
    assert await store.expire(T0 + 99, receipt_grace=0) == 0
    assert await store.expire(T0 + 100, receipt_grace=0) == 1
    rec = await record(store, message_id)
    assert rec.status is MessageStatus.EXPIRED
    assert rec.events[-1].kind == "expired"
    assert rec.events[-1].status is MessageStatus.EXPIRED
    assert (await record(store, keep)).status is MessageStatus.ACCEPTED
    [job] = await all_webhooks(store)
    assert job.payload["status"] == "expired"
    assert await store.queue_depths() == {CONN: 1}
    assert await store.expire(T0 + 150, receipt_grace=0) == 0  # once only


async def test_submitted_message_expires_only_after_the_receipt_grace(store: Store) -> None:
    message_id = await submit_new(store, "x1", "x2", expires_at=T0 + 100, callback_url=CALLBACK)
    await store.record_receipts([receipt("x1")])
    assert await store.expire(T0 + 159, receipt_grace=60) == 0
    assert (await record(store, message_id)).status is MessageStatus.SUBMITTED
    assert await store.expire(T0 + 160, receipt_grace=60) == 1
    assert (await record(store, message_id)).status is MessageStatus.EXPIRED
    [job] = await all_webhooks(store)
    assert job.payload["parts"] == [
        {"part": 1, "smsc_id": "x1", "state": "delivered"},
        {"part": 2, "smsc_id": "x2", "state": None},
    ]


async def test_dispatching_messages_are_left_to_their_connector(store: Store) -> None:
    message_id = await accept_one(store, expires_at=T0 + 100)
    assert await claim_ids(store, now=T0 + 50) == [message_id]
    assert await store.expire(T0 + 10_000, receipt_grace=0) == 0
    assert (await record(store, message_id)).status is MessageStatus.ACCEPTED


async def test_final_messages_do_not_expire_again(store: Store) -> None:
    message_id = await submit_new(store, "y1", expires_at=T0 + 100)
    await store.record_receipts([receipt("y1")])
    assert await store.expire(T0 + 10_000, receipt_grace=0) == 0
    assert (await record(store, message_id)).status is MessageStatus.DELIVERED


async def test_connection_state_is_upserted(store: Store) -> None:
    assert await store.connection_states() == {}
    first = ConnectionState(CONN, bound=False, updated_at=T0, last_error="connect refused")
    await store.publish_connection_state(first)
    await store.publish_connection_state(ConnectionState(CONN_B, bound=True, updated_at=T0))
    assert await store.connection_states() == {
        CONN: first,
        CONN_B: ConnectionState(CONN_B, bound=True, updated_at=T0),
    }
    later = ConnectionState(
        CONN,
        bound=True,
        updated_at=T0 + 5,
        window_in_use=3,
        window_size=10,
        tps_limit=50.0,
        throttled_until=T0 + 6,
    )
    await store.publish_connection_state(later)
    states = await store.connection_states()
    assert states[CONN] == later
    assert len(states) == 2

"""Conformance: what connectors report about submissions (submitted, requeue, failover, ...)."""

from __future__ import annotations

import dataclasses

import pytest
from storekit import (
    CALLBACK,
    CONN,
    CONN_B,
    CONN_C,
    T0,
    Backend,
    accept_one,
    all_webhooks,
    claim_ids,
    kinds,
    record,
    requeue,
    submitted,
)

from smsmesh.model import MessageStatus, SubmitOutcome, SubmitReport, WebhookKind
from smsmesh.store import Store


async def test_submitted_records_parts_and_status(store: Store) -> None:
    message_id = await accept_one(store)
    await claim_ids(store)
    await store.record_submits([submitted(message_id, "ABC1", "abc2")])
    rec = await record(store, message_id)
    assert rec.status is MessageStatus.SUBMITTED
    assert rec.smsc_message_ids == ("ABC1", "abc2")  # as the SMSC wrote them
    assert kinds(rec) == ["accepted", "claimed", "submitted"]
    event = rec.events[-1]
    assert event.status is MessageStatus.SUBMITTED
    assert event.connection == CONN
    assert event.detail["smsc_ids"] == ["ABC1", "abc2"]
    assert await store.queue_depths() == {}


async def test_requeue_puts_the_message_back_with_a_reason(store: Store) -> None:
    message_id = await accept_one(store)
    await claim_ids(store)
    await store.record_submits([requeue(message_id, retry_at=T0 + 40, error="ESME_RTHROTTLED")])
    rec = await record(store, message_id)
    assert rec.status is MessageStatus.ACCEPTED
    assert rec.connection == CONN
    assert kinds(rec) == ["accepted", "claimed", "requeued"]
    detail = rec.events[-1].detail
    assert detail["error"] == "ESME_RTHROTTLED"
    assert detail["command_status"] == 0x58
    assert await claim_ids(store, now=T0 + 40) == [message_id]


async def test_requeue_without_retry_at_is_claimable_at_once(store: Store) -> None:
    message_id = await accept_one(store)
    await claim_ids(store)
    await store.record_submits([requeue(message_id, at=T0 + 20)])
    assert await claim_ids(store, now=T0 + 20) == [message_id]


async def test_attempt_limit_turns_requeue_into_failed(backend: Backend) -> None:
    store = await backend.open(max_attempts=3)
    message_id = await accept_one(store, callback_url=CALLBACK)
    for attempt in range(3):
        now = T0 + 10 + attempt
        [claimed] = await store.claim(CONN, 10, now)
        assert claimed.attempts == attempt
        await store.record_submits([requeue(message_id, at=now)])
    rec = await record(store, message_id)
    assert rec.status is MessageStatus.FAILED
    assert rec.attempts == 3
    assert rec.events[-1].kind == "failed"
    assert "3 attempts" in rec.events[-1].detail["reason"]
    assert await claim_ids(store, now=T0 + 100) == []
    [job] = await all_webhooks(store)
    assert job.payload["status"] == "failed"


async def test_requeue_of_a_message_never_sent_does_not_use_up_an_attempt(
    backend: Backend,
) -> None:
    store = await backend.open(max_attempts=2)
    message_id = await accept_one(store)
    for n in range(5):  # a bind that keeps flapping before anything leaves
        now = T0 + 10 + n
        [claimed] = await store.claim(CONN, 10, now)
        assert claimed.attempts == 0
        report = dataclasses.replace(requeue(message_id, at=now), attempted=False)
        await store.record_submits([report])
    rec = await record(store, message_id)
    assert rec.status is MessageStatus.ACCEPTED
    assert rec.attempts == 0
    assert rec.events[-1].detail["attempted"] is False


async def test_failover_moves_the_message_along_its_targets(store: Store) -> None:
    message_id = await accept_one(store, targets=(CONN, CONN_B, CONN_C), callback_url=CALLBACK)
    for now, here, there in ((T0 + 10, CONN, CONN_B), (T0 + 20, CONN_B, CONN_C)):
        assert await claim_ids(store, here, now) == [message_id]
        await store.record_submits(
            [requeue(message_id, connection=here, at=now, failover=True, error="bind lost")]
        )
        rec = await record(store, message_id)
        assert rec.connection == there
        assert rec.events[-1].detail["failover_to"] == there
        assert await store.queue_depths() == {there: 1}
        assert await claim_ids(store, here, now + 1) == []

    assert await claim_ids(store, CONN_C, T0 + 30) == [message_id]
    await store.record_submits(
        [requeue(message_id, connection=CONN_C, at=T0 + 30, failover=True, error="bind lost")]
    )
    rec = await record(store, message_id)
    assert rec.status is MessageStatus.FAILED
    assert "no target left" in rec.events[-1].detail["reason"]
    [job] = await all_webhooks(store)
    assert job.payload["status"] == "failed"
    assert "bind lost" in job.payload["error"]


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (SubmitOutcome.REJECTED, MessageStatus.REJECTED),
        (SubmitOutcome.FAILED, MessageStatus.FAILED),
    ],
)
async def test_permanent_outcomes_are_final_with_a_webhook(
    store: Store, outcome: SubmitOutcome, status: MessageStatus
) -> None:
    message_id = await accept_one(store, callback_url=CALLBACK, client_ref="c-9")
    await claim_ids(store)
    report = SubmitReport(
        message_id, CONN, T0 + 20, outcome, command_status=0x0B, error="invalid destination"
    )
    await store.record_submits([report])
    rec = await record(store, message_id)
    assert rec.status is status
    assert rec.events[-1].kind == status.value
    assert rec.events[-1].status is status
    [job] = await all_webhooks(store)
    assert job.kind is WebhookKind.STATUS
    assert job.url == CALLBACK
    assert job.message_id == message_id
    assert job.payload == {
        "event": "message.status",
        "id": message_id,
        "status": status.value,
        "client_ref": "c-9",
        "to": rec.destination,
        "parts": [],
        "error": "invalid destination",
        "at": T0 + 20,
    }


async def test_no_webhook_without_callback_url(store: Store) -> None:
    message_id = await accept_one(store)
    await claim_ids(store)
    await store.record_submits(
        [SubmitReport(message_id, CONN, T0 + 20, SubmitOutcome.REJECTED, error="no")]
    )
    assert (await record(store, message_id)).status is MessageStatus.REJECTED
    assert await all_webhooks(store) == []


async def test_a_stale_report_does_not_undo_a_final_status(store: Store) -> None:
    message_id = await accept_one(store, callback_url=CALLBACK)
    await claim_ids(store)
    await store.record_submits(
        [SubmitReport(message_id, CONN, T0 + 20, SubmitOutcome.REJECTED, error="no")]
    )
    await store.record_submits([submitted(message_id, "77"), requeue(message_id)])
    rec = await record(store, message_id)
    assert rec.status is MessageStatus.REJECTED
    assert rec.smsc_message_ids == ()
    assert len(await all_webhooks(store)) == 1


async def test_one_batch_may_mix_outcomes(store: Store) -> None:
    ids = [await accept_one(store) for _ in range(3)]
    await claim_ids(store)
    await store.record_submits(
        [
            submitted(ids[0], "1"),
            requeue(ids[1]),
            SubmitReport(ids[2], CONN, T0 + 20, SubmitOutcome.FAILED, error="x"),
        ]
    )
    statuses = [(await record(store, i)).status for i in ids]
    assert statuses == [MessageStatus.SUBMITTED, MessageStatus.ACCEPTED, MessageStatus.FAILED]


async def test_submitted_without_smsc_ids_is_refused_whole(store: Store) -> None:
    ok, bad = await accept_one(store), await accept_one(store)
    await claim_ids(store)
    with pytest.raises(ValueError, match="smsc message id"):
        await store.record_submits([submitted(ok, "5"), submitted(bad)])
    assert (await record(store, ok)).status is MessageStatus.ACCEPTED  # nothing changed


async def test_report_for_an_unknown_message_is_ignored(store: Store) -> None:
    known = await accept_one(store)
    await claim_ids(store)
    await store.record_submits([submitted("does-not-exist", "1"), submitted(known, "2")])
    assert (await record(store, known)).status is MessageStatus.SUBMITTED

"""Conformance: submit reports and receipts recorded by one `record_outcomes` call.

Every receipt must get the answer it would get if the reports had been recorded by
`record_submits` first and the receipts by `record_receipts` afterwards, whichever
way a backend matches a receipt to a part that is written in the same call.
"""

from __future__ import annotations

from storekit import (
    CALLBACK,
    T0,
    accept_one,
    all_webhooks,
    claim_ids,
    kinds,
    receipt,
    receipt_states,
    record,
    requeue,
    submit_new,
    submitted,
)

from smsmesh.model import MessageStatus, ReceiptState
from smsmesh.store import Store


async def test_receipts_right_behind_their_reports_finish_the_messages(store: Store) -> None:
    first = await accept_one(store, callback_url=CALLBACK, client_ref="r1")
    second = await accept_one(store)
    assert sorted(await claim_ids(store)) == sorted([first, second])
    matches = await store.record_outcomes(
        [submitted(first, "499602D2"), submitted(second, "77")],
        [receipt("1234567890", at=T0 + 21), receipt("77", ReceiptState.UNDELIVERABLE)],
    )
    assert [(m.message_id, m.part, m.message_status) for m in matches] == [
        (first, 1, MessageStatus.DELIVERED),
        (second, 1, MessageStatus.UNDELIVERABLE),
    ]
    rec = await record(store, first)
    assert rec.status is MessageStatus.DELIVERED
    assert kinds(rec) == ["accepted", "claimed", "submitted", "receipt", "delivered"]
    assert "arrived_before_submit" not in rec.events[3].detail
    assert (await record(store, second)).status is MessageStatus.UNDELIVERABLE
    [job] = await all_webhooks(store)
    assert job.payload == {
        "event": "message.status",
        "id": first,
        "status": "delivered",
        "client_ref": "r1",
        "to": rec.destination,
        "parts": [{"part": 1, "smsc_id": "499602D2", "state": "delivered"}],
        "error": None,
        "at": T0 + 21,
    }


async def test_one_call_mixes_every_kind_of_report_and_receipt(store: Store) -> None:
    """Reports that submit, requeue and repeat; receipts for parts written by this call
    (one-part, multi-part, two for one message), for an earlier submit, for a requeued
    message and for nothing: each gets the answer it would get alone, in input order."""
    earlier = await submit_new(store, "e1")
    plain, multi, twice, again = [await accept_one(store) for _ in range(4)]
    assert len(await claim_ids(store)) == 4
    matches = await store.record_outcomes(
        [
            submitted(plain, "p1"),
            submitted(multi, "m1", "m2"),
            submitted(twice, "t1"),
            requeue(again),
            submitted(earlier, "e1"),  # a repeat: ignored
        ],
        [
            receipt("t1", ReceiptState.ENROUTE, at=T0 + 40),
            receipt("m2"),
            receipt("p1"),
            receipt("e1"),
            receipt("nothing"),
            receipt("t1", at=T0 + 41),
            receipt("m1"),
        ],
    )
    assert [(m.message_id, m.part, m.message_status) for m in matches] == [
        (twice, 1, MessageStatus.SUBMITTED),
        (multi, 2, MessageStatus.SUBMITTED),
        (plain, 1, MessageStatus.DELIVERED),
        (earlier, 1, MessageStatus.DELIVERED),
        (None, None, None),
        (twice, 1, MessageStatus.DELIVERED),
        (multi, 1, MessageStatus.DELIVERED),
    ]
    statuses = [(await record(store, m)).status for m in (plain, multi, twice, again, earlier)]
    assert statuses == [
        MessageStatus.DELIVERED,
        MessageStatus.DELIVERED,
        MessageStatus.DELIVERED,
        MessageStatus.ACCEPTED,  # queued again
        MessageStatus.DELIVERED,
    ]
    rec = await record(store, twice)
    assert [e.detail["state"] for e in rec.events if e.kind == "receipt"] == [
        "enroute",
        "delivered",
    ]
    assert kinds(await record(store, earlier))[-3:] == ["report_ignored", "receipt", "delivered"]


async def test_a_receipt_kept_from_before_and_one_in_the_call_apply_in_order(
    store: Store,
) -> None:
    """The report applies the receipt that came before it was recorded; the call's own
    receipt for the same part comes after that one."""
    message_id = await accept_one(store)
    await claim_ids(store)
    [early] = await store.record_receipts([receipt("42", ReceiptState.ENROUTE, at=T0 + 18)])
    assert early.message_id is None
    [match] = await store.record_outcomes([submitted(message_id, "42")], [receipt("42")])
    assert (match.message_id, match.message_status) == (message_id, MessageStatus.DELIVERED)
    rec = await record(store, message_id)
    assert receipt_states(rec) == [("enroute", True), ("delivered", False)]
    assert kinds(rec)[-1] == "delivered"


async def test_reports_alone_and_receipts_alone(store: Store) -> None:
    message_id = await accept_one(store)
    await claim_ids(store)
    assert await store.record_outcomes([submitted(message_id, "a")], []) == []
    assert (await record(store, message_id)).status is MessageStatus.SUBMITTED
    [match] = await store.record_outcomes([], [receipt("a")])
    assert match.message_status is MessageStatus.DELIVERED
    assert await store.record_outcomes([], []) == []

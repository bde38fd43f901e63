"""Conformance: correlating delivery receipts with submitted parts, in every id form."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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

from smsmesh.model import MessageStatus, ReceiptState
from smsmesh.store import Store


async def test_delivered_receipt_finishes_the_message_with_a_webhook(store: Store) -> None:
    message_id = await submit_new(store, "9F3A", callback_url=CALLBACK, client_ref="r1")
    [match] = await store.record_receipts([receipt("9F3A", at=T0 + 31)])
    assert (match.message_id, match.part, match.message_status) == (
        message_id,
        1,
        MessageStatus.DELIVERED,
    )
    rec = await record(store, message_id)
    assert rec.status is MessageStatus.DELIVERED
    [job] = await all_webhooks(store)
    assert job.payload == {
        "event": "message.status",
        "id": message_id,
        "status": "delivered",
        "client_ref": "r1",
        "to": rec.destination,
        "parts": [{"part": 1, "smsc_id": "9F3A", "state": "delivered"}],
        "error": None,
        "at": T0 + 31,
    }


async def test_intermediate_receipt_keeps_the_message_submitted(store: Store) -> None:
    message_id = await submit_new(store, "abc")
    [m1] = await store.record_receipts([receipt("abc", ReceiptState.ENROUTE)])
    assert m1.message_status is MessageStatus.SUBMITTED
    [m2] = await store.record_receipts([receipt("abc", ReceiptState.DELIVERED)])
    assert m2.message_status is MessageStatus.DELIVERED
    assert kinds(await record(store, message_id))[-3:] == ["receipt", "receipt", "delivered"]


@pytest.mark.parametrize(
    ("in_response", "in_receipt"),
    [
        ("1234567890", "1234567890"),  # the same
        ("ABCDEF12", "abcdef12"),  # case
        ("0000012345", "12345"),  # leading zeros dropped by the receipt
        ("12345", "00012345"),  # leading zeros added by the receipt
        ("499602D2", "1234567890"),  # hex in submit_sm_resp, decimal in the receipt
        ("1234567890", "499602d2"),  # decimal in submit_sm_resp, hex in the receipt
        ("00499602D2", "1234567890"),  # hex with zeros, decimal
        ("  7f  ", "127"),  # whitespace around
    ],
)
async def test_receipt_id_forms_match(store: Store, in_response: str, in_receipt: str) -> None:
    message_id = await submit_new(store, in_response)
    [match] = await store.record_receipts([receipt(in_receipt)])
    assert match.message_id == message_id
    assert match.message_status is MessageStatus.DELIVERED


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    value=st.integers(min_value=1, max_value=2**64),
    resp_hex=st.booleans(),
    receipt_hex=st.booleans(),
    resp_zeros=st.integers(0, 3),
    receipt_zeros=st.integers(0, 3),
    upper=st.booleans(),
)
async def test_any_hex_decimal_rendering_of_the_same_id_matches(
    store: Store,
    value: int,
    resp_hex: bool,
    receipt_hex: bool,
    resp_zeros: int,
    receipt_zeros: int,
    upper: bool,
) -> None:
    def render(as_hex: bool, zeros: int) -> str:
        text = format(value, "x") if as_hex else str(value)
        return "0" * zeros + (text.upper() if upper else text)

    connection = f"prop-{next(_examples)}"  # each example on its own connection
    message_id = await submit_new(store, render(resp_hex, resp_zeros), connection=connection)
    [match] = await store.record_receipts(
        [receipt(render(receipt_hex, receipt_zeros), connection=connection)]
    )
    assert match.message_id == message_id


_examples = itertools.count()


async def test_receipt_only_matches_on_its_own_connection(store: Store) -> None:
    await submit_new(store, "555")
    [match] = await store.record_receipts([receipt("555", connection=CONN_B)])
    assert match.message_id is None
    assert match.message_status is None


async def test_a_receipt_group_matches_receipts_that_arrive_on_another_bind(
    store: Store,
) -> None:
    """A transmitter and a receiver bind of one SMSC account: the submit goes out on
    one connection, its receipt comes back on the other."""
    message_id = await accept_one(store, targets=(CONN,), callback_url=CALLBACK)
    assert await claim_ids(store) == [message_id]
    await store.record_submits([replace(submitted(message_id, "77aa"), receipt_group="acct")])
    [match] = await store.record_receipts(
        [replace(receipt("77AA", connection=CONN_B), receipt_group="acct")]
    )
    assert (match.message_id, match.message_status) == (message_id, MessageStatus.DELIVERED)
    rec = await record(store, message_id)
    assert rec.events[-2].kind == "receipt"
    assert rec.events[-2].connection == CONN_B  # where it arrived, not where it was sent
    # Outside the group the same id is nobody's: neither the bare connection nor
    # another group finds it.
    other = await accept_one(store, targets=(CONN,))
    await claim_ids(store)
    await store.record_submits([replace(submitted(other, "88bb"), receipt_group="acct")])
    for stray in (receipt("88bb"), replace(receipt("88bb"), receipt_group="other")):
        [miss] = await store.record_receipts([stray])
        assert miss.message_id is None


async def test_a_group_receipt_that_overtakes_its_submit_waits_for_it(store: Store) -> None:
    message_id = await accept_one(store, targets=(CONN,))
    await claim_ids(store)
    [early] = await store.record_receipts(
        [replace(receipt("4242", connection=CONN_B, at=T0 + 19), receipt_group="acct")]
    )
    assert early.message_id is None
    await store.record_submits([replace(submitted(message_id, "4242"), receipt_group="acct")])
    rec = await record(store, message_id)
    assert rec.status is MessageStatus.DELIVERED
    late = [e for e in rec.events if e.kind == "receipt"]
    assert [(e.connection, e.detail["arrived_before_submit"]) for e in late] == [(CONN_B, True)]


async def test_receipt_before_submit_is_applied_by_the_submit(store: Store) -> None:
    message_id = await accept_one(store, callback_url=CALLBACK)
    await claim_ids(store)
    # The SMSC sent the receipt right after submit_sm_resp, before we recorded it.
    [early] = await store.record_receipts([receipt("1000", at=T0 + 19)])
    assert (early.message_id, early.part, early.message_status) == (None, None, None)
    await store.record_submits([submitted(message_id, "3E8")])  # hex of 1000
    rec = await record(store, message_id)
    assert rec.status is MessageStatus.DELIVERED
    assert kinds(rec) == ["accepted", "claimed", "submitted", "receipt", "delivered"]
    assert rec.events[3].detail["arrived_before_submit"] is True
    assert len(await all_webhooks(store)) == 1
    # The kept receipt was used up: a second message with the same id stays submitted.
    other = await submit_new(store, "3E8")
    assert (await record(store, other)).status is MessageStatus.SUBMITTED


async def test_early_receipts_apply_in_arrival_order(store: Store) -> None:
    message_id = await accept_one(store)
    await claim_ids(store)
    await store.record_receipts(
        [receipt("42", ReceiptState.ENROUTE, at=T0 + 18), receipt("42", at=T0 + 19)]
    )
    await store.record_submits([submitted(message_id, "42")])
    rec = await record(store, message_id)
    assert rec.status is MessageStatus.DELIVERED
    assert [e.detail.get("state") for e in rec.events if e.kind == "receipt"] == [
        "enroute",
        "delivered",
    ]


async def test_multipart_is_delivered_only_when_every_part_is(store: Store) -> None:
    message_id = await submit_new(store, "a1", "a2", callback_url=CALLBACK)
    [first] = await store.record_receipts([receipt("a2")])
    assert (first.part, first.message_status) == (2, MessageStatus.SUBMITTED)
    assert await all_webhooks(store) == []
    [second] = await store.record_receipts([receipt("a1")])
    assert (second.part, second.message_status) == (1, MessageStatus.DELIVERED)
    [job] = await all_webhooks(store)
    assert job.payload["parts"] == [
        {"part": 1, "smsc_id": "a1", "state": "delivered"},
        {"part": 2, "smsc_id": "a2", "state": "delivered"},
    ]
    assert (await record(store, message_id)).status is MessageStatus.DELIVERED


async def test_one_undeliverable_part_makes_the_message_undeliverable(store: Store) -> None:
    message_id = await submit_new(store, "b1", "b2", callback_url=CALLBACK)
    matches = await store.record_receipts(
        [receipt("b1"), receipt("b2", ReceiptState.UNDELIVERABLE, error_code="001")]
    )
    assert [m.message_status for m in matches] == [
        MessageStatus.SUBMITTED,
        MessageStatus.UNDELIVERABLE,
    ]
    assert (await record(store, message_id)).status is MessageStatus.UNDELIVERABLE
    [job] = await all_webhooks(store)
    assert job.payload["status"] == "undeliverable"
    assert "part 2" in job.payload["error"]
    assert "001" in job.payload["error"]


async def test_the_first_failed_part_decides_the_status(store: Store) -> None:
    message_id = await submit_new(store, "c1", "c2", "c3")
    await store.record_receipts(
        [receipt("c3", ReceiptState.REJECTED), receipt("c2", ReceiptState.EXPIRED)]
    )
    assert (await record(store, message_id)).status is MessageStatus.SUBMITTED
    await store.record_receipts([receipt("c1")])
    assert (await record(store, message_id)).status is MessageStatus.EXPIRED


async def test_a_repeated_receipt_changes_nothing(store: Store) -> None:
    message_id = await submit_new(store, "d1", callback_url=CALLBACK)
    await store.record_receipts([receipt("d1")])
    before = await record(store, message_id)
    again = await store.record_receipts(
        [receipt("d1"), receipt("D1"), receipt("d1", ReceiptState.UNDELIVERABLE)]
    )
    assert [m.message_id for m in again] == [message_id] * 3
    assert [m.message_status for m in again] == [MessageStatus.DELIVERED] * 3
    after = await record(store, message_id)
    assert after.status is MessageStatus.DELIVERED
    assert after.events == before.events
    assert len(await all_webhooks(store)) == 1


async def test_receipt_results_are_in_input_order(store: Store) -> None:
    first = await submit_new(store, "e1")
    second = await submit_new(store, "e2")
    matches = await store.record_receipts([receipt("e2"), receipt("nope"), receipt("e1")])
    assert [m.message_id for m in matches] == [second, None, first]
    assert [m.receipt.smsc_message_id for m in matches] == ["e2", "nope", "e1"]


async def test_a_reused_smsc_id_goes_to_the_message_still_waiting(store: Store) -> None:
    old = await submit_new(store, "777")
    await store.record_receipts([receipt("777")])
    new = await submit_new(store, "777")
    [match] = await store.record_receipts([receipt("777", ReceiptState.UNDELIVERABLE)])
    assert match.message_id == new
    assert (await record(store, old)).status is MessageStatus.DELIVERED
    assert (await record(store, new)).status is MessageStatus.UNDELIVERABLE


async def test_late_receipt_after_expiry_is_recorded_but_status_stays(store: Store) -> None:
    message_id = await submit_new(store, "f1")
    assert await store.expire(T0 + 3600 + 100, receipt_grace=60) == 1
    [match] = await store.record_receipts([receipt("f1", at=T0 + 3600 + 200)])
    assert match.message_id == message_id
    rec = await record(store, message_id)
    assert rec.status is MessageStatus.EXPIRED
    assert rec.events[-1].kind == "receipt"


async def test_receipt_events_carry_part_state_and_error(store: Store) -> None:
    message_id = await submit_new(store, "g1")
    await store.record_receipts([receipt("g1", ReceiptState.UNDELIVERABLE, error_code="034")])
    rec = await record(store, message_id)
    receipt_event = next(e for e in rec.events if e.kind == "receipt")
    assert receipt_event.connection == CONN
    assert receipt_event.detail["part"] == 1
    assert receipt_event.detail["state"] == "undeliverable"
    assert receipt_event.detail["error_code"] == "034"
    assert rec.events[-1].kind == "undeliverable"
    assert rec.events[-1].status is MessageStatus.UNDELIVERABLE


async def test_one_batch_mixes_every_kind_of_receipt(store: Store) -> None:
    """One batch with receipts the store can apply in bulk (one-part, first receipt) and
    ones it must take one at a time (unknown id, multi-part, repeat, two receipts for
    one message): each gets the answer it would get alone, in input order."""
    plain = await submit_new(store, "h1", callback_url=CALLBACK)
    multi = await submit_new(store, "h2a", "h2b")
    done = await submit_new(store, "h3")
    await store.record_receipts([receipt("h3")])
    twice = await submit_new(store, "h4")
    matches = await store.record_receipts(
        [
            receipt("h4", ReceiptState.ENROUTE, at=T0 + 40),
            receipt("h1"),
            receipt("zz"),
            receipt("h2b"),
            receipt("h3", ReceiptState.UNDELIVERABLE),
            receipt("h4", at=T0 + 41),
            receipt("h2a", ReceiptState.EXPIRED),
        ]
    )
    assert [(m.message_id, m.part, m.message_status) for m in matches] == [
        (twice, 1, MessageStatus.SUBMITTED),
        (plain, 1, MessageStatus.DELIVERED),
        (None, None, None),
        (multi, 2, MessageStatus.SUBMITTED),
        (done, 1, MessageStatus.DELIVERED),
        (twice, 1, MessageStatus.DELIVERED),
        (multi, 1, MessageStatus.EXPIRED),
    ]
    assert [(await record(store, m)).status for m in (plain, multi, done, twice)] == [
        MessageStatus.DELIVERED,
        MessageStatus.EXPIRED,
        MessageStatus.DELIVERED,
        MessageStatus.DELIVERED,
    ]
    rec = await record(store, twice)
    assert kinds(rec)[-3:] == ["receipt", "receipt", "delivered"]
    assert [e.detail["state"] for e in rec.events if e.kind == "receipt"] == [
        "enroute",
        "delivered",
    ]
    assert kinds(await record(store, plain))[-2:] == ["receipt", "delivered"]
    [job] = await all_webhooks(store)
    assert (job.message_id, job.payload["status"]) == (plain, "delivered")


async def test_a_batch_learns_the_id_convention_from_its_own_earlier_receipts(
    store: Store,
) -> None:
    """What an unambiguous receipt teaches (hex in submit_sm_resp, decimal in receipts)
    already decides an ambiguous receipt later in the same batch: "10" is then 0xA's
    message, not the one whose hex id reads "10"."""
    await submit_new(store, "1A2B3C4D")  # letters: only one reading can match
    hex_16 = await submit_new(store, "10")  # 0x10 = 16
    hex_10 = await submit_new(store, "A")  # 0xA = 10, reported as "10"
    taught, ambiguous = await store.record_receipts([receipt(str(0x1A2B3C4D)), receipt("10")])
    assert taught.message_status is MessageStatus.DELIVERED
    assert ambiguous.message_id == hex_10
    assert (await record(store, hex_16)).status is MessageStatus.SUBMITTED

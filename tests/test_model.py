"""Domain values: message ids, final statuses, receipt-state mapping."""

from __future__ import annotations

import time

from smsmesh.model import (
    FINAL_STATUSES,
    MessageStatus,
    ReceiptState,
    first_message_id_at,
    new_message_id,
)

ALPHABET = set("0123456789abcdefghjkmnpqrstvwxyz")


def test_message_ids_are_unique_fixed_width_and_url_safe() -> None:
    ids = [new_message_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert {len(i) for i in ids} == {26}
    assert set("".join(ids)) <= ALPHABET


def test_message_ids_sort_by_creation_time() -> None:
    earlier = [new_message_id() for _ in range(100)]
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:  # the next millisecond, without sleeping blindly
        later = new_message_id()
        if later[:9] != earlier[-1][:9]:  # 9 chars = 45 of the 48 time bits
            break
    assert all(e < later for e in earlier)


def test_the_first_id_of_a_moment_bounds_every_id_made_before_it() -> None:
    at = 1_700_000_000.25  # exact in binary: the millisecond is not a rounding question
    bound = first_message_id_at(at)
    assert new_message_id(at=at - 0.01) < bound <= new_message_id(at=at)
    assert new_message_id(at=at) < first_message_id_at(at + 0.01)
    made = {d: new_message_id(at=at + d) for d in (3.0, 1.0, 2.0)}
    assert sorted(made.values()) == [made[1.0], made[2.0], made[3.0]]


def test_only_accepted_and_submitted_are_not_final() -> None:
    assert {s for s in MessageStatus if not s.is_final} == {
        MessageStatus.ACCEPTED,
        MessageStatus.SUBMITTED,
    }
    assert {s for s in MessageStatus if s.is_final} == FINAL_STATUSES


def test_final_receipt_states_map_to_final_message_statuses() -> None:
    assert ReceiptState.DELIVERED.message_status() is MessageStatus.DELIVERED
    assert ReceiptState.UNDELIVERABLE.message_status() is MessageStatus.UNDELIVERABLE
    assert ReceiptState.DELETED.message_status() is MessageStatus.UNDELIVERABLE
    assert ReceiptState.EXPIRED.message_status() is MessageStatus.EXPIRED
    assert ReceiptState.REJECTED.message_status() is MessageStatus.REJECTED
    for state in (ReceiptState.ENROUTE, ReceiptState.ACCEPTED, ReceiptState.UNKNOWN):
        assert not state.is_final
        assert state.message_status() is MessageStatus.SUBMITTED

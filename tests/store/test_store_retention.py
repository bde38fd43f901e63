"""Conformance: retention deletes what finished long ago, and nothing else."""

from __future__ import annotations

from dataclasses import replace

from storekit import (
    CALLBACK,
    CONN,
    CONN_B,
    T0,
    Backend,
    accept_one,
    claim_ids,
    receipt,
    submit_new,
    submitted,
)

from smsmesh.model import (
    InboundMessage,
    MessageStatus,
    SubmitOutcome,
    SubmitReport,
    new_message_id,
)
from smsmesh.store import Store


async def test_purge_finished_removes_only_old_final_messages(
    backend: Backend, store: Store
) -> None:
    old_done = await submit_new(store, "AA01")
    await store.record_receipts([receipt("AA01", at=T0 + 30)])  # final at T0+30
    old_hooked = await accept_one(store, callback_url=CALLBACK)
    await claim_ids(store)
    await store.record_submits(
        [SubmitReport(old_hooked, CONN, T0 + 40, SubmitOutcome.REJECTED, error="no")]
    )  # final at T0+40, its webhook still pending
    new_done = await submit_new(store, "AA02")
    await store.record_receipts([receipt("AA02", at=T0 + 5000)])
    waiting = await submit_new(store, "AA03")
    queued = await accept_one(store)
    # MO ids come from new_message_id too: made when the MO was received.
    mo = InboundMessage(new_message_id(at=T0 + 10), CONN, "491", "123", "hi", T0 + 10, "app")
    mo_new = InboundMessage(
        new_message_id(at=T0 + 5000), CONN, "491", "123", "hi", T0 + 5000, "app"
    )
    await store.record_inbound([mo, mo_new])

    assert await store.purge_finished(T0 + 1000, batch=1) == 2  # old_done and mo-old
    assert await store.get_message(old_done) is None
    for kept in (old_hooked, new_done, queued, waiting):
        assert await store.get_message(kept) is not None
    for table in ("events", "parts", "part_keys"):
        assert await backend.count(table, "message_id = ?", old_done) == 0, table
    assert await backend.count("part_keys", "message_id = ?", new_done) > 0
    assert await backend.count("inbound") == 1
    assert await backend.count("inbound", "id = ?", mo_new.id) == 1

    # Once its webhook is delivered, the rejected message goes too (and so does the job).
    [job] = await store.claim_webhooks(10, T0 + 50, 30)
    await store.complete_webhook(job.id, True, T0 + 51, None, None)
    assert await store.purge_finished(T0 + 1000) == 1
    assert await store.get_message(old_hooked) is None
    assert await backend.count("webhooks") == 0
    assert await store.purge_finished(T0 + 1000) == 0


async def test_purge_removes_the_receipt_keys_of_a_receipt_group(
    backend: Backend, store: Store
) -> None:
    """Keys stored under `group:<name>` rather than the connection go with their message."""
    grouped = await accept_one(store, targets=(CONN_B,))
    await claim_ids(store, CONN_B)
    await store.record_submits(
        [replace(submitted(grouped, "77aa", connection=CONN_B), receipt_group="acct")]
    )
    [match] = await store.record_receipts(
        [replace(receipt("77AA", connection=CONN, at=T0 + 20), receipt_group="acct")]
    )
    assert match.message_status is MessageStatus.DELIVERED
    assert await backend.count("part_keys", "message_id = ?", grouped) > 0
    assert await store.purge_finished(T0 + 1000) == 1
    assert await backend.count("part_keys") == 0


async def test_purge_works_through_a_backlog_in_batches(backend: Backend, store: Store) -> None:
    done = [await submit_new(store, f"B{n:03X}") for n in range(7)]
    await store.record_receipts([receipt(f"B{n:03X}", at=T0 + 30) for n in range(7)])
    assert await store.purge_finished(T0 + 1000, batch=3) == 7
    for message_id in done:
        assert await store.get_message(message_id) is None
    assert await backend.count("messages") == 0

"""Conformance: finishing many leased webhook jobs at once (`complete_webhooks`)."""

from __future__ import annotations

import pytest
from storekit import CALLBACK, T0, receipt, record, submit_new

from smsmesh.model import WebhookJob, WebhookResult
from smsmesh.store import Store, StoreError


async def leased_jobs(store: Store, count: int) -> list[WebhookJob]:
    for n in range(count):
        await submit_new(store, f"b{n}", callback_url=CALLBACK)
        await store.record_receipts([receipt(f"b{n}", at=T0 + 30)])
    jobs = await store.claim_webhooks(100, T0 + 40, 30)
    assert len(jobs) == count
    return jobs


async def test_one_batch_delivers_retries_and_gives_up(store: Store) -> None:
    delivered, retried, dropped = await leased_jobs(store, 3)
    await store.complete_webhooks(
        [
            WebhookResult(delivered.id, True, T0 + 41),
            WebhookResult(retried.id, False, T0 + 41, retry_at=T0 + 100, error="HTTP 503"),
            WebhookResult(dropped.id, False, T0 + 41, error="HTTP 410"),
        ]
    )
    [again] = await store.claim_webhooks(100, T0 + 100, 30)
    assert (again.id, again.attempts) == (retried.id, 1)
    later = await store.claim_webhooks(100, T0 + 10_000, 30)  # the others are over
    assert [j.id for j in later] == [retried.id]

    expected = {
        delivered.message_id: {"result": "delivered", "attempt": 1},
        retried.message_id: {"result": "failed", "attempt": 1, "retry_at": T0 + 100,
                             "error": "HTTP 503"},
        dropped.message_id: {"result": "gave_up", "attempt": 1, "error": "HTTP 410"},
    }  # fmt: skip
    for message_id, detail in expected.items():
        event = (await record(store, message_id)).events[-1]
        assert (event.kind, event.at) == ("webhook", T0 + 41)
        assert {k: event.detail.get(k) for k in detail} == detail


async def test_a_job_named_twice_is_finished_once(store: Store) -> None:
    [job] = await leased_jobs(store, 1)
    await store.complete_webhooks(
        [WebhookResult(job.id, True, T0 + 41), WebhookResult(job.id, False, T0 + 42, None, "x")]
    )
    events = [e for e in (await record(store, job.message_id)).events if e.kind == "webhook"]
    assert [e.detail["result"] for e in events] == ["delivered"]


async def test_an_unknown_job_fails_the_batch_and_changes_nothing(store: Store) -> None:
    [job] = await leased_jobs(store, 1)
    with pytest.raises(StoreError):
        await store.complete_webhooks(
            [WebhookResult(job.id, True, T0 + 41), WebhookResult(987654, True, T0 + 41)]
        )
    [again] = await store.claim_webhooks(10, T0 + 70, 30)  # still pending: lease ran out
    assert again.id == job.id
    await store.complete_webhooks([])  # nothing to do is fine

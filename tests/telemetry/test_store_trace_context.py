"""The store keeps the submit's trace context with the message and hands it back with
every matched receipt, on both backends: that is what lets the connector link a receipt
span to the submit span it belongs to, and measure receipt latency."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

from smsmesh.model import (
    NewMessage,
    Receipt,
    ReceiptState,
    SubmitOutcome,
    SubmitReport,
    new_message_id,
)
from smsmesh.store import Store, open_store

POSTGRES_URL = os.environ.get("SMSMESH_TEST_POSTGRES_URL") or None
T0 = 1_700_000_000.0
CALLER = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
SUBMIT = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
    "smsmesh-submitted-at": str(T0 + 20),
}


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    if request.param == "postgres":
        if POSTGRES_URL is None:
            pytest.skip("SMSMESH_TEST_POSTGRES_URL not set")
        parts = urlsplit(POSTGRES_URL)
        query = "&".join(q for q in (parts.query, urlencode({"schema": schema})) if q)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    else:
        url = f"sqlite://{tmp_path / 'store.db'}"
    store = open_store(url)
    await store.open()
    yield store
    await store.close()
    if request.param == "postgres":
        import asyncpg

        conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE', timeout=30)
        finally:
            await conn.close(timeout=10)


def _message(**fields: object) -> NewMessage:
    values: dict[str, object] = {
        "id": new_message_id(),
        "application": "app",
        "source": "smsmesh",
        "destination": "4915112345678",
        "text": "hello",
        "route": "default",
        "targets": ("conn-a",),
        "expires_at": T0 + 3600,
        "created_at": T0,
        "callback_url": "http://app.test/status",
        "trace_context": CALLER,
    }
    values.update(fields)
    return NewMessage(**values)  # type: ignore[arg-type]


async def _submit(store: Store, smsc_id: str, trace_context: dict[str, str]) -> str:
    message_id = (await store.accept([_message()]))[0].message_id
    claimed = await store.claim("conn-a", 10, T0 + 10)
    assert [m.id for m in claimed] == [message_id]
    assert claimed[0].trace_context == CALLER
    report = SubmitReport(
        message_id, "conn-a", T0 + 20, SubmitOutcome.SUBMITTED, (smsc_id,),
        command_status=0, trace_context=trace_context,
    )  # fmt: skip
    await store.record_submits([report])
    return message_id


async def test_receipt_match_carries_the_submit_trace_context(store: Store) -> None:
    message_id = await _submit(store, "abc1", SUBMIT)
    receipt = Receipt("conn-a", "abc1", ReceiptState.DELIVERED, T0 + 30)
    [match] = await store.record_receipts([receipt])
    assert match.message_id == message_id
    assert match.trace_context == SUBMIT
    # ...and the status webhook continues from it.
    [job] = await store.claim_webhooks(10, T0 + 40, 60)
    assert job.message_id == message_id
    assert job.trace_context == SUBMIT


async def test_an_empty_submit_trace_context_keeps_the_stored_one(store: Store) -> None:
    message_id = await _submit(store, "abc2", {})
    [match] = await store.record_receipts(
        [Receipt("conn-a", "abc2", ReceiptState.DELIVERED, T0 + 30)]
    )
    assert match.message_id == message_id
    assert match.trace_context == CALLER


async def test_an_unmatched_receipt_has_no_trace_context(store: Store) -> None:
    [match] = await store.record_receipts(
        [Receipt("conn-a", "nobody", ReceiptState.DELIVERED, T0 + 30)]
    )
    assert match.message_id is None
    assert match.trace_context == {}

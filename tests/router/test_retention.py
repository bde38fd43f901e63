"""The router's sweeper purges old finished messages from a real PostgreSQL store.

Needs SMSMESH_TEST_POSTGRES_URL (hack/postgres.sh); the embedded store keeps history.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from smsmesh.model import NewMessage, SubmitOutcome, SubmitReport, new_message_id
from smsmesh.store import SqliteStore, open_store
from smsmesh_router.sweeper import ExpirySweeper

POSTGRES_URL = os.environ.get("SMSMESH_TEST_POSTGRES_URL")


def message(now: float) -> NewMessage:
    return NewMessage(
        id=new_message_id(), application="app", source="smsmesh", destination="31612345678",
        text="x", route="r", targets=("c",), expires_at=time.time() + 3600, created_at=now,
    )  # fmt: skip


@pytest.mark.skipif(POSTGRES_URL is None, reason="SMSMESH_TEST_POSTGRES_URL not set")
async def test_sweeper_purges_finished_messages_past_retention() -> None:
    assert POSTGRES_URL is not None
    schema = f"ret_{uuid.uuid4().hex[:10]}"
    store = open_store(f"{POSTGRES_URL}?schema={schema}")
    await store.open()
    try:
        now = time.time()
        old, recent = message(now - 40 * 86400), message(now)
        await store.accept([old, recent])
        claimed = await store.claim("c", 10, now)
        assert {m.id for m in claimed} == {old.id, recent.id}
        await store.record_submits(
            [
                SubmitReport(old.id, "c", now - 39 * 86400, SubmitOutcome.REJECTED, error="x"),
                SubmitReport(recent.id, "c", now, SubmitOutcome.REJECTED, error="x"),
            ]
        )
        sweeper = ExpirySweeper(store, retention=30 * 86400)
        assert await sweeper.retain(now) >= 1
        assert await store.get_message(old.id) is None
        assert await store.get_message(recent.id) is not None
        assert sweeper.purged_total >= 1
    finally:
        await store.close()
        import asyncpg

        conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def test_without_retention_nothing_is_purged(tmp_path: object) -> None:
    store = SqliteStore(f"{tmp_path}/s.db")
    await store.open()
    try:
        assert await ExpirySweeper(store).retain() == 0
        assert await ExpirySweeper(store, retention=1.0).retain() == 0  # embedded: keeps all
    finally:
        await store.close()

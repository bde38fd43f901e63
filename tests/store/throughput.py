"""Throughput check of a store (run by hand, not a test): batched life cycle.

    .venv/bin/python tests/store/throughput.py [--messages 10000] [--batch 200]
        [--synchronous FULL|NORMAL] [--dir /tmp] [--url postgresql://...]

Without --url: a SQLite file in a temporary directory. With --url: that store; for
PostgreSQL in a fresh schema that is dropped afterwards
(e.g. --url "$(hack/postgres.sh start)").

Times each phase over all messages in batches: accept, claim, record_submits,
record_receipts (all delivered, with callbacks so webhook jobs are written too),
then claim_webhooks + complete_webhook. Numbers depend on the disk's fsync speed
with synchronous=FULL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from smsmesh.model import (
    MessageStatus,
    NewMessage,
    Receipt,
    ReceiptState,
    SubmitOutcome,
    SubmitReport,
    new_message_id,
)
from smsmesh.store import SqliteStore, Store, open_store

# SMSC ids like a carrier's: 8 hex digits in submit_sm_resp, decimal in the receipt.
BASE = 0x1A000000


@contextlib.asynccontextmanager
async def bench_store(url: str | None, synchronous: str, directory: str) -> AsyncIterator[Store]:
    if url is None:
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            yield SqliteStore(Path(tmp) / "bench.db", synchronous=synchronous)  # type: ignore[arg-type]
        return
    import asyncpg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in url else "?"
    try:
        yield open_store(f"{url}{sep}schema={schema}")
    finally:
        conn = await asyncpg.connect(url.partition("?")[0])
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


async def run(messages: int, batch: int, synchronous: str, directory: str, url: str | None) -> None:
    async with bench_store(url, synchronous, directory) as store:
        await store.open()
        now = time.time()
        msgs = [
            NewMessage(
                id=new_message_id(),
                application="bench",
                source="smsmesh",
                destination=f"4915{i:09d}",
                text="Your code is 123456",
                route="default",
                targets=("carrier-a", "carrier-b"),
                expires_at=now + 3600,
                created_at=now + i * 1e-6,
                callback_url="http://app.example/dlr",
                idempotency_key=f"k{i}",
            )
            for i in range(messages)
        ]
        chunks = [msgs[i : i + batch] for i in range(0, messages, batch)]

        async def phase(name: str, coro_fn) -> None:  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            count = await coro_fn()
            took = time.perf_counter() - start
            print(f"{name:<28} {count:>6} in {took * 1000:7.1f} ms  ({count / took:9.0f}/s)")

        async def accept() -> int:
            for chunk in chunks:
                await store.accept(chunk)
            return messages

        claimed_ids: list[str] = []

        async def claim() -> int:
            while True:
                got = await store.claim("carrier-a", batch, now + 1)
                if not got:
                    return len(claimed_ids)
                claimed_ids.extend(m.id for m in got)

        async def submits() -> int:
            for i in range(0, len(claimed_ids), batch):
                reports = [
                    SubmitReport(
                        mid, "carrier-a", now + 2, SubmitOutcome.SUBMITTED, (f"{BASE + j:X}",)
                    )
                    for j, mid in enumerate(claimed_ids[i : i + batch], start=i + 1)
                ]
                await store.record_submits(reports)
            return len(claimed_ids)

        async def receipts() -> int:
            for i in range(0, len(claimed_ids), batch):
                recs = [
                    Receipt("carrier-a", str(BASE + j), ReceiptState.DELIVERED, now + 3)
                    for j in range(i + 1, min(i + batch, len(claimed_ids)) + 1)
                ]
                matches = await store.record_receipts(recs)
                assert all(m.message_status is MessageStatus.DELIVERED for m in matches)
            return len(claimed_ids)

        async def webhooks() -> int:
            done = 0
            while True:
                jobs = await store.claim_webhooks(batch, now + 4, 30)
                if not jobs:
                    return done
                for job in jobs:
                    await store.complete_webhook(job.id, True, now + 4, None, None)
                done += len(jobs)

        kind = url.partition(":")[0] if url else f"sqlite synchronous={synchronous}"
        print(f"{messages} messages, batches of {batch}, {kind}")
        await phase("accept", accept)
        await phase("claim", claim)
        await phase("record_submits", submits)
        await phase("record_receipts (hex/dec)", receipts)
        await phase("webhooks (one commit each)", webhooks)
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--dir", default=None)
    parser.add_argument("--url", default=None, help="a store URL instead of a SQLite temp file")
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.batch, args.synchronous, args.dir, args.url))


if __name__ == "__main__":
    main()

"""A separate OS process working on a SQLite store, for the multi-process tests.

    python store_worker.py accept DB CONNECTION PREFIX COUNT BATCH
        accept COUNT messages with ids PREFIX-<n> in batches; prints "done"
    python store_worker.py claim DB CONNECTION DONE_MARKER DEADLINE_S
        claim until the queue is empty and DONE_MARKER exists; prints one id a line
    python store_worker.py writer DB CONNECTION PREFIX BATCH
        accept batches forever, printing "committed <n>" after each commit (for kill -9)

DB is a SQLite file path or a store URL (e.g. postgresql://...?schema=...). It uses only
the public store API, exactly as a router or connector process would.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from smsmesh.model import NewMessage
from smsmesh.store import SqliteStore, Store, open_store


def open_db(db: str) -> Store:
    return open_store(db) if "://" in db else SqliteStore(db)


def message(connection: str, message_id: str, n: int) -> NewMessage:
    now = time.time()
    return NewMessage(
        id=message_id,
        application="worker",
        source="smsmesh",
        destination=f"49151{n:08d}",
        text="multi-process",
        route="default",
        targets=(connection,),
        expires_at=now + 3600,
        created_at=now,
        idempotency_key=message_id,
    )


async def accept(db: str, connection: str, prefix: str, count: int, batch: int) -> None:
    store = open_db(db)
    await store.open()
    for start in range(0, count, batch):
        stop = min(start + batch, count)
        await store.accept([message(connection, f"{prefix}-{n}", n) for n in range(start, stop)])
    await store.close()
    print("done", flush=True)


async def claim(db: str, connection: str, done_marker: str, deadline_s: float) -> None:
    store = open_db(db)
    await store.open()
    deadline = time.monotonic() + deadline_s
    claimed: list[str] = []
    while time.monotonic() < deadline:
        producers_done = _exists(done_marker)  # read before claiming: no lost tail
        batch = await store.claim(connection, 37, time.time())
        claimed.extend(m.id for m in batch)
        if not batch:
            if producers_done:
                break
            await store.wait_for_work(connection, 0.5)
    await store.close()
    sys.stdout.write("".join(f"{message_id}\n" for message_id in claimed))
    sys.stdout.flush()


def _exists(path: str) -> bool:
    return os.path.exists(path)


async def writer(db: str, connection: str, prefix: str, batch: int) -> None:
    store = open_db(db)
    await store.open()
    n = 0
    while True:
        await store.accept([message(connection, f"{prefix}-{n + i}", n + i) for i in range(batch)])
        n += batch
        print(f"committed {n}", flush=True)


async def open_at(db: str, start_at: float) -> None:
    """Open (creating and migrating) the store at a given moment, then close it."""
    await asyncio.sleep(max(0.0, start_at - time.time()))
    store = open_db(db)
    await store.open()
    await store.close()
    print("opened")


def main(argv: list[str]) -> None:
    mode, db, connection, *rest = argv
    if mode == "accept":
        asyncio.run(accept(db, connection, rest[0], int(rest[1]), int(rest[2])))
    elif mode == "claim":
        asyncio.run(claim(db, connection, rest[0], float(rest[1])))
    elif mode == "open":
        asyncio.run(open_at(db, float(rest[0])))
    elif mode == "writer":
        asyncio.run(writer(db, connection, rest[0], int(rest[1])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Helpers for the store conformance suite: message factories and short life-cycle steps.

Everything here talks to the abstract `Store` only, so the same tests run on every
backend. Times are virtual (T0-based) and passed explicitly, so no test depends on
the wall clock except the ones about waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from smsmesh.model import (
    MessageRecord,
    NewMessage,
    Priority,
    Receipt,
    ReceiptState,
    SubmitOutcome,
    SubmitReport,
    new_message_id,
)
from smsmesh.store import SqliteStore, Store, open_store

POSTGRES_URL = os.environ.get("SMSMESH_TEST_POSTGRES_URL") or None
BACKENDS = ["sqlite", "postgres"]
POSTGRES_SKIP_REASON = (
    "SMSMESH_TEST_POSTGRES_URL not set: PostgreSQL backend tests skipped (see hack/postgres.sh)"
)

T0 = 1_700_000_000.0
CONN = "conn-a"
CONN_B = "conn-b"
CONN_C = "conn-c"
CALLBACK = "http://app.test/status"
_counter = itertools.count(1)


def with_query(url: str, **params: str) -> str:
    """`url` with extra query parameters (e.g. a schema for a worker process)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class Backend:
    """Opens store handles on one fresh database, as separate processes would.

    Each test gets its own empty database: SQLite, a file in tmp_path; PostgreSQL, a
    schema of its own in the database at POSTGRES_URL (created by the store's first
    open, dropped afterwards), which is much faster than a database per test.
    """

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.name = name
        self._tmp_path = tmp_path
        self._open: list[Store] = []
        self.schema = f"t_{uuid.uuid4().hex[:16]}"

    @property
    def url(self) -> str:
        """The store URL another process would be given."""
        if self.name == "sqlite":
            return f"sqlite://{self._tmp_path / 'store.db'}"
        assert POSTGRES_URL is not None
        return with_query(POSTGRES_URL, schema=self.schema)

    async def open(self, **opts: Any) -> Store:
        """A new, opened handle on the same database (`max_attempts` is understood by all)."""
        if self.name == "sqlite":
            store: Store = SqliteStore(self._tmp_path / "store.db", **opts)
        else:
            store = open_store(self.url, **opts)
        await store.open()
        self._open.append(store)
        return store

    async def count(self, table: str, where: str = "TRUE", *args: Any) -> int:
        """Rows of `table` matching `where` (placeholders `?`), read on a session of our own."""
        query = f"SELECT count(*) FROM {table} WHERE {where}"
        if self.name == "sqlite":
            conn = sqlite3.connect(self._tmp_path / "store.db")
            try:
                return int(conn.execute(query, args).fetchone()[0])
            finally:
                conn.close()
        import asyncpg  # only with PostgreSQL

        assert POSTGRES_URL is not None
        for n in range(len(args)):
            query = query.replace("?", f"${n + 1}", 1)
        pg = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            await pg.execute(f'SET search_path = "{self.schema}"')
            return int(await pg.fetchval(query, *args))
        finally:
            await pg.close(timeout=10)

    async def close_all(self) -> None:
        for store in self._open:
            await store.close()
        if self.name == "postgres":
            await drop_schema(self.schema)


async def drop_schema(schema: str) -> None:
    import asyncpg  # only with PostgreSQL

    assert POSTGRES_URL is not None
    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE', timeout=30)
    finally:
        await conn.close(timeout=10)


def new_message(
    *,
    created: float | None = None,
    targets: Sequence[str] = (CONN,),
    priority: Priority = Priority.NORMAL,
    application: str = "app",
    expires_at: float | None = None,
    **fields: Any,
) -> NewMessage:
    """A routed message; each call is a new id and a later `created_at` unless given."""
    n = next(_counter)
    created_at = T0 + n * 0.001 if created is None else created
    values: dict[str, Any] = {
        "id": new_message_id(at=created_at),  # ids say when they were made
        "application": application,
        "source": "smsmesh",
        "destination": f"49151{n:08d}",
        "text": f"hello {n}",
        "route": "default",
        "targets": tuple(targets),
        "expires_at": T0 + 3600 if expires_at is None else expires_at,
        "created_at": created_at,
        "priority": priority,
    }
    values.update(fields)
    return NewMessage(**values)


async def accept_one(store: Store, **fields: Any) -> str:
    result = (await store.accept([new_message(**fields)]))[0]
    assert not result.duplicate
    return result.message_id


async def claim_ids(store: Store, connection: str = CONN, now: float = T0 + 10) -> list[str]:
    return [m.id for m in await store.claim(connection, 1000, now)]


def submitted(
    message_id: str, *smsc_ids: str, connection: str = CONN, at: float = T0 + 20
) -> SubmitReport:
    return SubmitReport(message_id, connection, at, SubmitOutcome.SUBMITTED, tuple(smsc_ids))


def requeue(
    message_id: str,
    *,
    connection: str = CONN,
    at: float = T0 + 20,
    retry_at: float | None = None,
    failover: bool = False,
    error: str = "throttled",
) -> SubmitReport:
    return SubmitReport(
        message_id,
        connection,
        at,
        SubmitOutcome.REQUEUE,
        command_status=0x58,
        error=error,
        retry_at=retry_at,
        failover=failover,
    )


def receipt(
    smsc_id: str,
    state: ReceiptState = ReceiptState.DELIVERED,
    *,
    connection: str = CONN,
    at: float = T0 + 30,
    error_code: str | None = None,
) -> Receipt:
    return Receipt(connection, smsc_id, state, at, error_code=error_code)


async def submit_new(store: Store, *smsc_ids: str, connection: str = CONN, **fields: Any) -> str:
    """Accept, claim and record as submitted one message with the given part ids."""
    message_id = await accept_one(store, targets=(connection,), **fields)
    assert await claim_ids(store, connection) == [message_id]
    await store.record_submits([submitted(message_id, *smsc_ids, connection=connection)])
    return message_id


async def record(store: Store, message_id: str) -> MessageRecord:
    found = await store.get_message(message_id)
    assert found is not None, f"message {message_id} not found"
    return found


def kinds(rec: MessageRecord) -> list[str]:
    return [e.kind for e in rec.events]


def receipt_states(rec: MessageRecord) -> list[tuple[str, bool]]:
    """(state, arrived before its submit was recorded) of each receipt, in order."""
    return [
        (e.detail["state"], e.detail.get("arrived_before_submit", False))
        for e in rec.events
        if e.kind == "receipt"
    ]


async def all_webhooks(store: Store, now: float = T0 + 10_000) -> list[Any]:
    """Every webhook job due by `now` (leased for a long time so each comes once)."""
    return await store.claim_webhooks(1000, now, 3600)


# -- worker processes (tests of several OS processes on one store) ---------------------------

WORKER = str(Path(__file__).with_name("store_worker.py"))
spawned: list[asyncio.subprocess.Process] = []  # reaped after each test by conftest


async def run_worker(*args: str) -> asyncio.subprocess.Process:
    """Start tests/store/store_worker.py with `args`, its output piped."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        WORKER,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    spawned.append(proc)
    return proc


async def finish(proc: asyncio.subprocess.Process, limit: float = 60) -> str:
    """Wait for a worker; it must exit 0; its standard output."""
    out, err = await asyncio.wait_for(proc.communicate(), limit)
    assert proc.returncode == 0, err.decode()
    return out.decode()

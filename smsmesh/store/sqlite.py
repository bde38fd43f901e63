"""The embedded store: one SQLite file shared by the router and every connector process.

Why the standard library's sqlite3 on a dedicated thread rather than aiosqlite:
aiosqlite also runs sqlite3 on a thread, but hops to it once per statement. A store
method here is one transaction of many statements (an accept of 500 messages, a
claim with its timeline events), so each method runs as one plain synchronous
function on the store's own single thread: one hop per batch, explicit
`BEGIN IMMEDIATE` / `COMMIT`, and no sqlite3 object ever touched by two threads.

Sharing one file between processes safely:
- WAL journal: readers never block the writer and vice versa.
- Every write transaction starts with `BEGIN IMMEDIATE`, so it takes the write lock
  up front and waits for it (`busy_timeout`) instead of failing half-way when a
  read lock cannot be upgraded.
- `synchronous=NORMAL` by default: a commit survives the crash or `kill -9` of any
  process, but a power loss or kernel crash may undo the commits since the last WAL
  checkpoint. With several processes sharing one file, a fsync at every commit holds
  the write lock for the length of the fsync, and that lock wait, not the work, would
  set every other process's latency (measured: p99 accept-to-submit above 100 ms with
  FULL versus a few ms with NORMAL at 500 messages/s). `?synchronous=FULL` makes
  accepted messages, receipts and MO messages survive a power loss too; commits whose
  loss only causes a repeat (claims, submit reports, webhook results) never wait for
  the disk. Production clusters use PostgreSQL.
- Connectors wait for work on Unix datagram sockets (`smsmesh.store.wakeup`), so
  nobody polls the file.

Layout: this module is the async face (thread, lifecycle, input checks);
`sqlite_engine` holds the transactions, `sqlite_receipts` the receipt correlation,
`sqlite_tx` what every write shares, `sqlite_schema` the tables and migrations, and
`rules` the backend-independent status rules.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from smsmesh.model import (
    AcceptResult,
    ClaimedMessage,
    ConnectionState,
    Event,
    InboundMessage,
    MessagePage,
    MessageQuery,
    MessageRecord,
    NewMessage,
    Receipt,
    ReceiptMatch,
    StatsBucket,
    SubmitReport,
    WebhookJob,
    WebhookResult,
    check_stats_window,
)
from smsmesh.store import sqlite_search
from smsmesh.store.base import Store, StoreError
from smsmesh.store.rules import check_messages, check_reports
from smsmesh.store.sqlite_engine import Engine, Synchronous
from smsmesh.store.wakeup import WakeupListeners, WakeupSender

T = TypeVar("T")

MIN_SQLITE_VERSION = (3, 35, 0)  # UPDATE ... RETURNING
PURGE_BATCH = 500  # rows per retention transaction: each holds the write lock


class SqliteStore(Store):
    """The `Store` on one SQLite file; see the module docstring for the design."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 30.0,
        max_attempts: int = 5,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        if busy_timeout <= 0:
            raise ValueError("busy_timeout must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old: smsmesh needs 3.35 or newer"
            )
        self.path = Path(path).resolve()
        self.wake_dir = Path(f"{self.path}.wake")
        self._engine = Engine(
            str(self.path), synchronous, busy_timeout, max_attempts, WakeupSender(self.wake_dir)
        )
        self._listeners = WakeupListeners(self.wake_dir)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        executor = self._executor
        if executor is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, functools.partial(fn, *args))
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self.path.name}: {exc}") from exc

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        async with self._lock:
            if self._executor is not None:
                return
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="smsmesh-sqlite")
            try:
                await self._run(self._engine.open)
            except BaseException:
                self._executor.shutdown(wait=False)
                self._executor = None
                raise

    async def close(self) -> None:
        async with self._lock:
            self._listeners.close()
            if self._executor is None:
                return
            try:
                await self._run(self._engine.close)
            finally:
                self._executor.shutdown(wait=False)
                self._executor = None

    async def diagnostics(self) -> dict[str, Any]:
        """Effective settings (journal mode, synchronous, schema version), for status pages."""
        return await self._run(self._engine.diagnostics)

    # -- router side ------------------------------------------------------------------

    async def accept(self, messages: Sequence[NewMessage]) -> list[AcceptResult]:
        check_messages(messages)
        if not messages:
            return []
        return await self._run(self._engine.accept, list(messages))

    async def get_message(
        self, message_id: str, application: str | None = None
    ) -> MessageRecord | None:
        return await self._run(self._engine.get_message, message_id, application)

    async def queue_depths(self) -> dict[str, int]:
        return await self._run(self._engine.queue_depths)

    async def search_messages(self, query: MessageQuery) -> MessagePage:
        engine = self._engine
        return await self._run(lambda: sqlite_search.search_messages(engine.conn, query))

    async def message_stats(
        self, application: str, since: float, until: float, bucket_seconds: float
    ) -> list[StatsBucket]:
        check_stats_window(since, until, bucket_seconds)
        engine = self._engine
        return await self._run(
            lambda: sqlite_search.message_stats(
                engine.conn, application, since, until, bucket_seconds
            )
        )

    async def connection_throughput(self, since: float, until: float) -> dict[str, int]:
        engine = self._engine
        return await self._run(
            lambda: sqlite_search.connection_throughput(engine.conn, since, until)
        )

    async def expire(self, now: float, receipt_grace: float) -> int:
        if receipt_grace < 0:
            raise ValueError("receipt_grace must not be negative")
        return await self._run(self._engine.expire, now, receipt_grace)

    async def purge_finished(self, older_than: float, batch: int = PURGE_BATCH) -> int:
        """Delete what is finished and older than `older_than` (unix seconds); retention.

        The same contract as PostgreSQL's: final messages with their parts, receipt keys
        and timelines, MO messages, finished webhook jobs; a message whose webhook is
        pending stays. Transactions of at most `batch` rows each, so the router's
        accepts never wait long for the write lock. Returns the messages removed.
        """
        if batch < 1:
            raise ValueError("purge_finished: batch must be at least 1")
        removed = 0
        while True:
            counts = await self._run(self._engine.purge_batch, older_than, batch)
            removed += counts[0] + counts[1]  # outbound and MO messages
            if max(counts) < batch:
                return removed

    # -- connector side ---------------------------------------------------------------

    async def recover(self, connection: str) -> int:
        if self._executor is None:
            raise StoreError("store is not open")
        # Listen before anything else, so no wake-up sent from now on can be missed.
        self._listeners.listen(connection)
        return await self._run(self._engine.recover, connection, time.time())

    async def claim(self, connection: str, limit: int, now: float) -> list[ClaimedMessage]:
        if limit < 0:
            raise ValueError("claim: limit must not be negative")
        if limit == 0:
            return []
        return await self._run(self._engine.claim, connection, limit, now)

    async def wait_for_work(self, connection: str, timeout: float) -> bool:
        if self._executor is None:
            raise StoreError("store is not open")
        return await self._listeners.wait(connection, timeout)

    async def record_submits(self, reports: Sequence[SubmitReport]) -> None:
        check_reports(reports)
        if reports:
            await self._run(self._engine.record_submits, list(reports))

    async def record_receipts(self, receipts: Sequence[Receipt]) -> list[ReceiptMatch]:
        if not receipts:
            return []
        return await self._run(self._engine.record_receipts, list(receipts))

    async def record_outcomes(
        self, reports: Sequence[SubmitReport], receipts: Sequence[Receipt]
    ) -> list[ReceiptMatch]:
        check_reports(reports)
        if not reports and not receipts:
            return []
        return await self._run(self._engine.record_outcomes, list(reports), list(receipts))

    async def record_inbound(self, messages: Sequence[InboundMessage]) -> None:
        if messages:
            await self._run(self._engine.record_inbound, list(messages))

    async def publish_connection_state(self, state: ConnectionState) -> None:
        await self._run(self._engine.publish_connection_state, state)

    async def connection_states(self) -> dict[str, ConnectionState]:
        return await self._run(self._engine.connection_states)

    # -- webhooks ---------------------------------------------------------------------

    async def claim_webhooks(self, limit: int, now: float, lease: float) -> list[WebhookJob]:
        if limit < 0 or lease <= 0:
            raise ValueError("claim_webhooks: limit must not be negative and lease positive")
        if limit == 0:
            return []
        return await self._run(self._engine.claim_webhooks, limit, now, lease)

    async def complete_webhook(
        self, job_id: int, ok: bool, now: float, retry_at: float | None, error: str | None
    ) -> None:
        await self._run(self._engine.complete_webhook, job_id, ok, now, retry_at, error)

    async def complete_webhooks(self, results: Sequence[WebhookResult]) -> None:
        if results:
            await self._run(self._engine.complete_webhooks, list(results))

    # -- timeline ---------------------------------------------------------------------

    async def add_events(self, events: Sequence[tuple[str, Event]]) -> None:
        if events:
            await self._run(self._engine.add_events, list(events))

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
- `synchronous=FULL` by default: a commit survives a power loss. `NORMAL` trades
  the last commits before a power cut (never a process crash) for fewer fsyncs.
- Connectors wait for work on Unix datagram sockets (`smsmesh.store.wakeup`), so
  nobody polls the file.

Receipt correlation: each part's smsc id is stored under every form
`id_candidates` gives (table part_keys), so a receipt quoting any of its own forms
finds the part with one indexed lookup, hex vs decimal in both directions and with
or without leading zeros. A receipt that matches nothing yet is kept (orphan_receipts)
and applied by the record_submits that stores its part: SMSCs often send the receipt
right after submit_sm_resp, before the connector has recorded the submit. Orphans
nobody claimed are dropped by `expire` once older than `receipt_grace`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from smsmesh.model import (
    AcceptResult,
    ClaimedMessage,
    ConnectionState,
    Event,
    InboundMessage,
    MessageRecord,
    MessageStatus,
    NewMessage,
    Priority,
    Receipt,
    ReceiptMatch,
    ReceiptState,
    SubmitOutcome,
    SubmitReport,
    WebhookJob,
    WebhookKind,
)
from smsmesh.smpp.receipt import id_candidates
from smsmesh.store.base import Store, StoreError
from smsmesh.store.rules import (
    MatchMode,
    State,
    canonical_smsc_id,
    final_outcome,
    has_several_readings,
    inbound_payload,
    match_mode,
    match_quality,
    public_status,
    status_payload,
)
from smsmesh.store.sqlite_schema import migrate
from smsmesh.store.wakeup import WakeupListeners, WakeupSender

log = logging.getLogger(__name__)

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL"]

MIN_SQLITE_VERSION = (3, 35, 0)  # UPDATE ... RETURNING


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _qmarks(n: int) -> str:
    return ",".join("?" * n)


class _Tx:
    """One write transaction: the connection plus what to do once it committed."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.events: list[tuple[Any, ...]] = []
        self.wake: set[str] = set()
        self.orphans_possible: bool | None = None

    def event(
        self,
        message_id: str,
        at: float,
        kind: str,
        status: MessageStatus | None = None,
        connection: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        status_value = status.value if status is not None else None
        self.events.append((message_id, at, kind, status_value, connection, _dumps(detail or {})))


_INSERT_EVENT = (
    "INSERT INTO events (message_id, at, kind, status, connection, detail) VALUES (?,?,?,?,?,?)"
)
_INSERT_MESSAGE = """
INSERT INTO messages (
    id, application, source, destination, text, route, targets, target_index, connection,
    state, priority, segments, attempts, not_before, expires_at, created_at, updated_at,
    client_ref, callback_url, idempotency_key, trace_context
) VALUES (?,?,?,?,?,?,?,0,?,'queued',?,?,0,0,?,?,?,?,?,?,?)
"""
_INSERT_WEBHOOK = """
INSERT INTO webhooks (
    kind, url, payload, message_id, attempts, due_at, state, trace_context, created_at, updated_at
) VALUES (?,?,?,?,0,?,'pending',?,?,?)
"""


class _Engine:
    """Synchronous transactions on one sqlite3 connection; runs on the store's thread only."""

    def __init__(
        self,
        path: str,
        synchronous: Synchronous,
        busy_timeout: float,
        max_attempts: int,
        sender: WakeupSender,
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._max_attempts = max_attempts
        self._sender = sender
        self._conn: sqlite3.Connection | None = None
        # Per connection: how often each hex/decimal reading decided an unambiguous
        # receipt. Only the connection's own connector records its receipts, so what
        # this process learned is what there is to know.
        self._modes: dict[str, dict[MatchMode, int]] = {}

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        conn = sqlite3.connect(
            self._path, timeout=self._busy_timeout, isolation_level=None, cached_statements=256
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self._path}: could not switch to WAL (journal_mode={mode})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA temp_store = MEMORY")
            # Truncate the WAL file back to 64 MiB after checkpoints, so a burst does not
            # leave a huge file behind.
            conn.execute("PRAGMA journal_size_limit = 67108864")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA optimize")
            self._conn.close()
            self._conn = None
        self._sender.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is not open")
        return self._conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[_Tx]:
        """A write transaction; wake-ups are sent only once it committed."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        tx = _Tx(conn)
        try:
            yield tx
            if tx.events:
                conn.executemany(_INSERT_EVENT, tx.events)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if tx.wake:
            self._sender.notify(tx.wake)

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs that see one snapshot."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def diagnostics(self) -> dict[str, Any]:
        conn = self.conn
        return {
            "path": self._path,
            "sqlite_version": sqlite3.sqlite_version,
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                conn.execute("PRAGMA synchronous").fetchone()[0], "?"
            ),
            "busy_timeout_ms": conn.execute("PRAGMA busy_timeout").fetchone()[0],
            "schema_version": conn.execute("PRAGMA user_version").fetchone()[0],
        }

    # -- router side ------------------------------------------------------------------

    def accept(self, messages: Sequence[NewMessage]) -> list[AcceptResult]:
        results: list[AcceptResult] = []
        rows: list[tuple[Any, ...]] = []
        with self._write() as tx:
            seen: dict[tuple[str, str], str] = {}
            for m in messages:
                if m.idempotency_key is not None:
                    key = (m.application, m.idempotency_key)
                    earlier = seen.get(key)
                    if earlier is None:
                        found = tx.conn.execute(
                            "SELECT id FROM messages WHERE application = ? AND idempotency_key = ?",
                            key,
                        ).fetchone()
                        earlier = found[0] if found else None
                    if earlier is not None:
                        results.append(AcceptResult(message_id=earlier, duplicate=True))
                        continue
                    seen[key] = m.id
                first = m.targets[0]
                rows.append(
                    (
                        m.id, m.application, m.source, m.destination, m.text, m.route,
                        _dumps(list(m.targets)), first, int(m.priority), m.segments,
                        m.expires_at, m.created_at, m.created_at, m.client_ref,
                        m.callback_url, m.idempotency_key, _dumps(m.trace_context),
                    )
                )  # fmt: skip
                tx.event(
                    m.id,
                    m.created_at,
                    "accepted",
                    MessageStatus.ACCEPTED,
                    first,
                    {"route": m.route, "targets": list(m.targets), "priority": int(m.priority)},
                )
                tx.wake.add(first)
                results.append(AcceptResult(message_id=m.id, duplicate=False))
            try:
                tx.conn.executemany(_INSERT_MESSAGE, rows)
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"accept: a message id in this batch already exists ({exc})"
                ) from exc
        return results

    def get_message(self, message_id: str, application: str | None) -> MessageRecord | None:
        with self._read() as conn:
            row = conn.execute(
                """SELECT id, application, source, destination, state, route, targets, connection,
                          priority, segments, attempts, created_at, updated_at, expires_at,
                          client_ref, callback_url
                   FROM messages WHERE id = ?""",
                (message_id,),
            ).fetchone()
            if row is None or (application is not None and row[1] != application):
                return None
            smsc_ids = conn.execute(
                "SELECT smsc_id FROM parts WHERE message_id = ? ORDER BY part", (message_id,)
            ).fetchall()
            events = conn.execute(
                """SELECT at, kind, status, connection, detail FROM events
                   WHERE message_id = ? ORDER BY seq""",
                (message_id,),
            ).fetchall()
        return MessageRecord(
            id=row[0],
            application=row[1],
            source=row[2],
            destination=row[3],
            status=public_status(row[4]),
            route=row[5],
            targets=tuple(json.loads(row[6])),
            connection=row[7],
            priority=Priority(row[8]),
            segments=row[9],
            attempts=row[10],
            created_at=row[11],
            updated_at=row[12],
            expires_at=row[13],
            client_ref=row[14],
            callback_url=row[15],
            smsc_message_ids=tuple(r[0] for r in smsc_ids),
            events=tuple(
                Event(
                    at=at,
                    kind=kind,
                    status=MessageStatus(status) if status else None,
                    connection=connection,
                    detail=json.loads(detail),
                )
                for at, kind, status, connection, detail in events
            ),
        )

    def queue_depths(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT connection, count(*) FROM messages WHERE state = 'queued' GROUP BY connection"
        ).fetchall()
        return {connection: count for connection, count in rows}

    def expire(self, now: float, receipt_grace: float) -> int:
        with self._write() as tx:
            queued = tx.conn.execute(
                "SELECT id, connection FROM messages WHERE state = 'queued' AND expires_at <= ?",
                (now,),
            ).fetchall()
            submitted = tx.conn.execute(
                "SELECT id, connection FROM messages WHERE state = 'submitted' AND expires_at <= ?",
                (now - receipt_grace,),
            ).fetchall()
            for message_id, connection in queued:
                reason = "validity ran out before submission"
                self._finalize(tx, message_id, MessageStatus.EXPIRED, now, reason, None, connection)
            for message_id, connection in submitted:
                reason = "no final delivery receipt within the validity period and grace"
                self._finalize(tx, message_id, MessageStatus.EXPIRED, now, reason, None, connection)
            # Receipts nobody claimed by now belong to no message we will ever record.
            tx.conn.execute(
                """DELETE FROM orphan_keys WHERE orphan_id IN
                   (SELECT id FROM orphan_receipts WHERE received_at <= ?)""",
                (now - receipt_grace,),
            )
            tx.conn.execute(
                "DELETE FROM orphan_receipts WHERE received_at <= ?", (now - receipt_grace,)
            )
        return len(queued) + len(submitted)

    # -- connector side ---------------------------------------------------------------

    def recover(self, connection: str, now: float) -> int:
        with self._write() as tx:
            rows = tx.conn.execute(
                """UPDATE messages SET state = 'queued', updated_at = ?
                   WHERE connection = ? AND state = 'dispatching' RETURNING id""",
                (now, connection),
            ).fetchall()
            for (message_id,) in rows:
                tx.event(message_id, now, "recovered", None, connection)
        return len(rows)

    def claim(self, connection: str, limit: int, now: float) -> list[ClaimedMessage]:
        with self._write() as tx:
            rows = tx.conn.execute(
                """UPDATE messages SET state = 'dispatching', attempts = attempts + 1,
                                       updated_at = ?
                   WHERE id IN (
                       -- the claim index yields rows in claim order: no sort, early stop
                       SELECT id FROM messages INDEXED BY messages_claim
                       WHERE connection = ? AND state = 'queued'
                         AND not_before <= ? AND expires_at > ?
                       ORDER BY priority DESC, created_at, rowid
                       LIMIT ?)
                   RETURNING id, application, source, destination, text, priority, expires_at,
                             attempts, client_ref, trace_context, created_at""",
                (now, connection, now, now, limit),
            ).fetchall()
            for row in rows:
                tx.event(row[0], now, "claimed", None, connection, {"attempt": row[7]})
        # RETURNING does not promise an order: restore the claim order.
        rows.sort(key=lambda r: (-r[5], r[10]))
        return [
            ClaimedMessage(
                id=r[0],
                application=r[1],
                source=r[2],
                destination=r[3],
                text=r[4],
                priority=Priority(r[5]),
                expires_at=r[6],
                attempts=r[7] - 1,
                client_ref=r[8],
                trace_context=json.loads(r[9]),
            )
            for r in rows
        ]

    def record_submits(self, reports: Sequence[SubmitReport]) -> None:
        with self._write() as tx:
            for report in reports:
                self._record_submit(tx, report)

    def _record_submit(self, tx: _Tx, report: SubmitReport) -> None:
        row = tx.conn.execute(
            "SELECT state, targets, target_index, attempts FROM messages WHERE id = ?",
            (report.message_id,),
        ).fetchone()
        if row is None:
            log.warning("submit report for unknown message %s ignored", report.message_id)
            return
        state, targets_json, target_index, attempts = row
        detail: dict[str, Any] = {"outcome": report.outcome.value}
        if report.command_status is not None:
            detail["command_status"] = report.command_status
        if report.error:
            detail["error"] = report.error
        if state not in (State.DISPATCHING, State.QUEUED):
            # Already submitted or final: a duplicate or stale report must not undo that.
            tx.event(
                report.message_id, report.at, "report_ignored", None, report.connection, detail
            )
            return
        if report.outcome is SubmitOutcome.SUBMITTED:
            self._submitted(tx, report, detail)
        elif report.outcome is SubmitOutcome.REQUEUE:
            targets: list[str] = json.loads(targets_json)
            self._requeue(tx, report, detail, targets, target_index, attempts)
        else:
            status = (
                MessageStatus.REJECTED
                if report.outcome is SubmitOutcome.REJECTED
                else MessageStatus.FAILED
            )
            self._finalize(
                tx,
                report.message_id,
                status,
                report.at,
                report.error or f"{status.value} on submit",
                report.command_status,
                report.connection,
                detail,
            )

    def _submitted(self, tx: _Tx, report: SubmitReport, detail: dict[str, Any]) -> None:
        mid, connection = report.message_id, report.connection
        tx.conn.execute(
            """UPDATE messages SET state = 'submitted', connection = ?, updated_at = ?,
                                   command_status = ?, error = NULL
               WHERE id = ?""",
            (connection, report.at, report.command_status, mid),
        )
        parts = list(enumerate(report.smsc_message_ids, start=1))
        tx.conn.executemany(
            """INSERT OR REPLACE INTO parts
               (message_id, part, connection, smsc_id, smsc_key, state, error_code, updated_at)
               VALUES (?,?,?,?,?,NULL,NULL,?)""",
            [
                (mid, part, connection, sid, canonical_smsc_id(sid), report.at)
                for part, sid in parts
            ],
        )
        tx.conn.executemany(
            "INSERT OR IGNORE INTO part_keys (connection, key, message_id, part) VALUES (?,?,?,?)",
            [(connection, key, mid, part) for part, sid in parts for key in id_candidates(sid)],
        )
        detail["smsc_ids"] = list(report.smsc_message_ids)
        tx.event(mid, report.at, "submitted", MessageStatus.SUBMITTED, connection, detail)
        self._apply_orphans(tx, mid, connection, parts)

    def _requeue(
        self,
        tx: _Tx,
        report: SubmitReport,
        detail: dict[str, Any],
        targets: list[str],
        target_index: int,
        attempts: int,
    ) -> None:
        mid = report.message_id
        reason = report.error or "requeued"
        if attempts >= self._max_attempts:
            detail["attempts"] = attempts
            error = f"gave up after {attempts} attempts: {reason}"
            self._finalize(
                tx, mid, MessageStatus.FAILED, report.at, error, report.command_status,
                report.connection, detail,
            )  # fmt: skip
            return
        not_before = report.retry_at if report.retry_at is not None else report.at
        detail["retry_at"] = not_before
        connection = report.connection
        if report.failover:
            target_index += 1
            if target_index >= len(targets):
                error = f"no target left after {report.connection}: {reason}"
                self._finalize(
                    tx, mid, MessageStatus.FAILED, report.at, error, report.command_status,
                    report.connection, detail,
                )  # fmt: skip
                return
            connection = targets[target_index]
            detail["failover_to"] = connection
            tx.wake.add(connection)
        tx.conn.execute(
            """UPDATE messages SET state = 'queued', connection = ?, target_index = ?,
                                   not_before = ?, updated_at = ?, error = ?, command_status = ?
               WHERE id = ?""",
            (connection, target_index, not_before, report.at, reason, report.command_status, mid),
        )
        tx.event(mid, report.at, "requeued", None, report.connection, detail)

    def _finalize(
        self,
        tx: _Tx,
        message_id: str,
        status: MessageStatus,
        at: float,
        error: str | None,
        command_status: int | None,
        connection: str | None,
        detail: dict[str, Any] | None = None,
        parts: Sequence[tuple[int, str, str | None]] | None = None,
    ) -> None:
        """Give a message its final status, its timeline event and its webhook job.

        `parts` are (part, smsc id, state) when the caller has just read them.
        """
        tx.conn.execute(
            """UPDATE messages SET state = ?, error = ?, updated_at = ?,
                                   command_status = coalesce(?, command_status)
               WHERE id = ?""",
            (status.value, error, at, command_status, message_id),
        )
        event_detail = dict(detail or {})
        if error:
            event_detail.setdefault("reason", error)
        tx.event(message_id, at, status.value, status, connection, event_detail)
        row = tx.conn.execute(
            "SELECT callback_url, client_ref, destination, trace_context "
            "FROM messages WHERE id = ?",
            (message_id,),
        ).fetchone()
        callback_url, client_ref, destination, trace_context = row
        if not callback_url:
            return
        if parts is None:
            parts = tx.conn.execute(
                "SELECT part, smsc_id, state FROM parts WHERE message_id = ? ORDER BY part",
                (message_id,),
            ).fetchall()
        payload = status_payload(
            message_id=message_id,
            status=status,
            client_ref=client_ref,
            destination=destination,
            parts=parts,
            error=error,
            at=at,
        )
        tx.conn.execute(
            _INSERT_WEBHOOK,
            (WebhookKind.STATUS.value, callback_url, _dumps(payload), message_id, at,
             trace_context, at, at),
        )  # fmt: skip

    # -- receipts ---------------------------------------------------------------------

    def record_receipts(self, receipts: Sequence[Receipt]) -> list[ReceiptMatch]:
        results: list[ReceiptMatch] = []
        with self._write() as tx:
            for receipt in receipts:
                results.append(self._record_receipt(tx, receipt))
        return results

    def _record_receipt(self, tx: _Tx, receipt: Receipt) -> ReceiptMatch:
        candidates = id_candidates(receipt.smsc_message_id)
        received = candidates[0]
        if not received:
            return ReceiptMatch(receipt, None, None, None)  # no id: nothing could ever match
        rows = tx.conn.execute(
            f"""SELECT DISTINCT k.message_id, k.part, p.smsc_key, p.state, p.updated_at, m.state
                FROM part_keys k
                JOIN parts p ON p.message_id = k.message_id AND p.part = k.part
                JOIN messages m ON m.id = k.message_id
                WHERE k.connection = ? AND k.key IN ({_qmarks(len(candidates))})""",
            (receipt.connection, *candidates),
        ).fetchall()
        if not rows:
            self._keep_orphan(tx, receipt, candidates)
            return ReceiptMatch(receipt, None, None, None)
        seen = self._modes.setdefault(receipt.connection, {})
        if len(rows) == 1 and has_several_readings(received):
            # An unambiguous match of an id that hex and decimal read differently
            # teaches how this connection's SMSC writes its ids.
            mode = match_mode(rows[0][2], received)
            seen[mode] = seen.get(mode, 0) + 1

        def rank(row: tuple[Any, ...]) -> tuple[int, int, bool, float]:
            # The reading this connection has shown most, then the closest id; among
            # equals a part still waiting beats a finished one (SMSCs reuse ids), then
            # the most recent submit.
            evidence = seen.get(match_mode(row[2], received), 0)
            final = row[3] is not None and ReceiptState(row[3]).is_final
            return (-evidence, match_quality(row[2], received), final, -row[4])

        message_id, part, _, part_state, _, message_state = min(rows, key=rank)
        status = self._apply_receipt(
            tx, message_id, part, receipt, part_state, message_state, late=False
        )
        return ReceiptMatch(receipt, message_id, part, status)

    def _keep_orphan(self, tx: _Tx, receipt: Receipt, candidates: Sequence[str]) -> None:
        """Keep a receipt nobody matches yet: its submit may still be on its way."""
        cursor = tx.conn.execute(
            """INSERT INTO orphan_receipts
               (connection, smsc_id, state, at, error_code, raw, received_at)
               VALUES (?,?,?,?,?,?,?)""",
            (receipt.connection, receipt.smsc_message_id, receipt.state.value, receipt.at,
             receipt.error_code, receipt.raw, receipt.at),
        )  # fmt: skip
        tx.conn.executemany(
            "INSERT OR IGNORE INTO orphan_keys (connection, key, orphan_id) VALUES (?,?,?)",
            [(receipt.connection, key, cursor.lastrowid) for key in candidates],
        )
        tx.orphans_possible = True

    def _apply_receipt(
        self,
        tx: _Tx,
        message_id: str,
        part: int,
        receipt: Receipt,
        part_state: str | None,
        message_state: str,
        *,
        late: bool,
    ) -> MessageStatus:
        """Record a matched receipt on its part; finalise the message when all parts are."""
        if part_state is not None and (
            ReceiptState(part_state).is_final or part_state == receipt.state.value
        ):
            return public_status(message_state)  # a repeat: nothing changes
        tx.conn.execute(
            "UPDATE parts SET state = ?, error_code = ?, updated_at = ? "
            "WHERE message_id = ? AND part = ?",
            (receipt.state.value, receipt.error_code, receipt.at, message_id, part),
        )
        detail: dict[str, Any] = {
            "part": part,
            "state": receipt.state.value,
            "smsc_id": receipt.smsc_message_id,
        }
        if receipt.error_code:
            detail["error_code"] = receipt.error_code
        if receipt.raw:
            detail["raw"] = receipt.raw
        if late:
            detail["arrived_before_submit"] = True
        tx.event(message_id, receipt.at, "receipt", None, receipt.connection, detail)
        if message_state != State.SUBMITTED or not receipt.state.is_final:
            return public_status(message_state)
        parts = tx.conn.execute(
            "SELECT part, smsc_id, state, error_code FROM parts WHERE message_id = ? ORDER BY part",
            (message_id,),
        ).fetchall()
        outcome = final_outcome([(p, state, err) for p, _, state, err in parts])
        if outcome is None:
            return MessageStatus.SUBMITTED
        status, error = outcome
        self._finalize(
            tx, message_id, status, receipt.at, error, None, receipt.connection,
            parts=[(p, sid, state) for p, sid, state, _ in parts],
        )  # fmt: skip
        return status

    def _apply_orphans(
        self, tx: _Tx, message_id: str, connection: str, parts: list[tuple[int, str]]
    ) -> None:
        """Apply receipts that arrived before this submit was recorded."""
        if tx.orphans_possible is None:
            found = tx.conn.execute("SELECT EXISTS (SELECT 1 FROM orphan_receipts)").fetchone()
            tx.orphans_possible = bool(found[0])
        if not tx.orphans_possible:
            return
        best: dict[int, tuple[int, int, tuple[Any, ...]]] = {}  # orphan id -> quality, part, row
        for part, smsc_id in parts:
            candidates = id_candidates(smsc_id)
            rows = tx.conn.execute(
                f"""SELECT DISTINCT o.id, o.smsc_id, o.state, o.at, o.error_code, o.raw
                    FROM orphan_keys k JOIN orphan_receipts o ON o.id = k.orphan_id
                    WHERE k.connection = ? AND k.key IN ({_qmarks(len(candidates))})""",
                (connection, *candidates),
            ).fetchall()
            for row in rows:
                quality = match_quality(candidates[0], canonical_smsc_id(row[1]))
                if row[0] not in best or quality < best[row[0]][0]:
                    best[row[0]] = (quality, part, row)
        for orphan_id in sorted(best):  # in arrival order
            _, part, (_, smsc_id, state, at, error_code, raw) = best[orphan_id]
            receipt = Receipt(connection, smsc_id, ReceiptState(state), at, error_code, raw)
            part_state, message_state = tx.conn.execute(
                """SELECT p.state, m.state FROM parts p JOIN messages m ON m.id = p.message_id
                   WHERE p.message_id = ? AND p.part = ?""",
                (message_id, part),
            ).fetchone()
            self._apply_receipt(tx, message_id, part, receipt, part_state, message_state, late=True)
            tx.conn.execute("DELETE FROM orphan_keys WHERE orphan_id = ?", (orphan_id,))
            tx.conn.execute("DELETE FROM orphan_receipts WHERE id = ?", (orphan_id,))

    # -- inbound, connection state, timeline -------------------------------------------

    def record_inbound(self, messages: Sequence[InboundMessage]) -> None:
        with self._write() as tx:
            for m in messages:
                cursor = tx.conn.execute(
                    """INSERT OR IGNORE INTO inbound (id, connection, source, destination, text,
                                                      received_at, application, trace_context)
                       VALUES (?,?,?,?,?,?,?,?)""",
                    (m.id, m.connection, m.source, m.destination, m.text, m.received_at,
                     m.application, _dumps(m.trace_context)),
                )  # fmt: skip
                if cursor.rowcount != 1:
                    continue  # the same MO delivered twice (deliver_sm retried): one webhook
                tx.event(m.id, m.received_at, "inbound", None, m.connection,
                         {"application": m.application})  # fmt: skip
                if m.webhook_url:
                    payload = inbound_payload(
                        message_id=m.id,
                        connection=m.connection,
                        source=m.source,
                        destination=m.destination,
                        text=m.text,
                        received_at=m.received_at,
                        application=m.application,
                    )
                    tx.conn.execute(
                        _INSERT_WEBHOOK,
                        (WebhookKind.INBOUND.value, m.webhook_url, _dumps(payload), m.id,
                         m.received_at, _dumps(m.trace_context), m.received_at, m.received_at),
                    )  # fmt: skip

    def publish_connection_state(self, state: ConnectionState) -> None:
        with self._write() as tx:
            tx.conn.execute(
                """INSERT INTO connections (name, state, updated_at) VALUES (?,?,?)
                   ON CONFLICT (name) DO UPDATE
                   SET state = excluded.state, updated_at = excluded.updated_at""",
                (state.connection, _dumps(dataclasses.asdict(state)), state.updated_at),
            )

    def connection_states(self) -> dict[str, ConnectionState]:
        rows = self.conn.execute("SELECT name, state FROM connections").fetchall()
        known = {f.name for f in dataclasses.fields(ConnectionState)}
        out: dict[str, ConnectionState] = {}
        for name, state in rows:
            # Tolerate fields written by a newer or older smsmesh during a rolling upgrade.
            values = {k: v for k, v in json.loads(state).items() if k in known}
            out[name] = ConnectionState(**values)
        return out

    def add_events(self, events: Sequence[tuple[str, Event]]) -> None:
        with self._write() as tx:
            for message_id, e in events:
                tx.event(message_id, e.at, e.kind, e.status, e.connection, e.detail)

    # -- webhooks ---------------------------------------------------------------------

    def claim_webhooks(self, limit: int, now: float, lease: float) -> list[WebhookJob]:
        with self._write() as tx:
            rows = tx.conn.execute(
                """UPDATE webhooks SET lease_until = ?, updated_at = ?
                   WHERE id IN (
                       SELECT id FROM webhooks
                       WHERE state = 'pending' AND due_at <= ?
                         AND coalesce(lease_until, 0) <= ?
                       ORDER BY due_at, id
                       LIMIT ?)
                   RETURNING id, kind, url, payload, message_id, attempts, trace_context, due_at""",
                (now + lease, now, now, now, limit),
            ).fetchall()
        rows.sort(key=lambda r: (r[7], r[0]))
        return [
            WebhookJob(
                id=r[0],
                kind=WebhookKind(r[1]),
                url=r[2],
                payload=json.loads(r[3]),
                message_id=r[4],
                attempts=r[5],
                trace_context=json.loads(r[6]),
            )
            for r in rows
        ]

    def complete_webhook(
        self, job_id: int, ok: bool, now: float, retry_at: float | None, error: str | None
    ) -> None:
        with self._write() as tx:
            row = tx.conn.execute(
                "SELECT state, attempts, message_id, kind FROM webhooks WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"complete_webhook: no webhook job {job_id}")
            state, attempts, message_id, kind = row
            if state != "pending":
                return  # completed already (a re-leased copy finished first)
            attempt = attempts + 1
            detail: dict[str, Any] = {"job": job_id, "kind": kind, "attempt": attempt}
            if ok:
                new_state, attempts_after, due_at = "done", attempts, None
                detail["result"] = "delivered"
            elif retry_at is not None:
                new_state, attempts_after, due_at = "pending", attempt, retry_at
                detail.update(result="failed", retry_at=retry_at)
            else:
                new_state, attempts_after, due_at = "gave_up", attempt, None
                detail["result"] = "gave_up"
            if error and not ok:
                detail["error"] = error
            tx.conn.execute(
                """UPDATE webhooks SET state = ?, attempts = ?, due_at = coalesce(?, due_at),
                                       lease_until = NULL, last_error = ?, updated_at = ?
                   WHERE id = ?""",
                (new_state, attempts_after, due_at, None if ok else error, now, job_id),
            )
            tx.event(message_id, now, "webhook", None, None, detail)


def _check_messages(messages: Sequence[NewMessage]) -> None:
    for m in messages:
        if not m.id:
            raise ValueError("accept: a message has an empty id")
        if not m.targets:
            raise ValueError(f"accept: message {m.id} has no target connection")


def _check_reports(reports: Sequence[SubmitReport]) -> None:
    for r in reports:
        if r.outcome is SubmitOutcome.SUBMITTED and (
            not r.smsc_message_ids or any(not sid.strip() for sid in r.smsc_message_ids)
        ):
            raise ValueError(
                f"record_submits: SUBMITTED report for {r.message_id} needs one non-empty "
                "smsc message id per part"
            )


class SqliteStore(Store):
    """The `Store` on one SQLite file; see the module docstring for the design."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
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
        self._engine = _Engine(
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
        _check_messages(messages)
        if not messages:
            return []
        return await self._run(self._engine.accept, list(messages))

    async def get_message(
        self, message_id: str, application: str | None = None
    ) -> MessageRecord | None:
        return await self._run(self._engine.get_message, message_id, application)

    async def queue_depths(self) -> dict[str, int]:
        return await self._run(self._engine.queue_depths)

    async def expire(self, now: float, receipt_grace: float) -> int:
        if receipt_grace < 0:
            raise ValueError("receipt_grace must not be negative")
        return await self._run(self._engine.expire, now, receipt_grace)

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

    async def wait_for_work(self, connection: str, timeout: float) -> bool:  # noqa: ASYNC109
        if self._executor is None:
            raise StoreError("store is not open")
        return await self._listeners.wait(connection, timeout)

    async def record_submits(self, reports: Sequence[SubmitReport]) -> None:
        _check_reports(reports)
        if reports:
            await self._run(self._engine.record_submits, list(reports))

    async def record_receipts(self, receipts: Sequence[Receipt]) -> list[ReceiptMatch]:
        if not receipts:
            return []
        return await self._run(self._engine.record_receipts, list(receipts))

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

    # -- timeline ---------------------------------------------------------------------

    async def add_events(self, events: Sequence[tuple[str, Event]]) -> None:
        if events:
            await self._run(self._engine.add_events, list(events))

"""The SQLite store's transactions, as plain synchronous code for its own thread.

Every public method is one transaction: `BEGIN IMMEDIATE` takes the write lock up
front (waiting up to busy_timeout for other processes), so a transaction never
fails half-way on a lock upgrade. Wake-ups go out only after COMMIT.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
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
    SubmitOutcome,
    SubmitReport,
    WebhookJob,
    WebhookKind,
    WebhookResult,
)
from smsmesh.store import sqlite_retention
from smsmesh.store.base import WEBHOOK_WAKE, StoreError
from smsmesh.store.rules import (
    EventRow,
    dumps,
    event_row,
    inbound_payload,
    public_status,
)
from smsmesh.store.sqlite_receipts import ReceiptCorrelator, timeline
from smsmesh.store.sqlite_schema import migrate
from smsmesh.store.sqlite_submits import OPEN_STATES, SubmittedRows, plan_submits, report_detail
from smsmesh.store.sqlite_tx import (
    INSERT_EVENT,
    INSERT_MESSAGE,
    INSERT_WEBHOOK,
    StalePlan,
    Tx,
    finalize,
)
from smsmesh.store.wakeup import WakeupSender

log = logging.getLogger(__name__)

Synchronous = Literal["FULL", "NORMAL"]
T = TypeVar("T")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection has what this one needs."""
    return "locked" in str(exc) or "busy" in str(exc)


class Engine:
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
        self._level = synchronous  # the connection's current PRAGMA synchronous
        self._max_attempts = max_attempts
        self._sender = sender
        self._conn: sqlite3.Connection | None = None
        self._receipts = ReceiptCorrelator()

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        """Connect, switch to WAL and migrate; retried while another process does the same.

        Several processes opening a new file at once (`smsmesh up`) contend for it in
        ways SQLite answers with "database is locked" at once, without its busy handler:
        switching the journal mode needs the file to itself. Such an open is retried
        with short pauses until `busy_timeout` has passed.
        """
        self._conn = self._while_busy(self._connect, first_pause=0.005, max_pause=0.2)

    def _connect(self) -> sqlite3.Connection:
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
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._sender.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is not open")
        return self._conn

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """Take the write lock, polling briefly instead of SQLite's coarse busy handler.

        SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between tries, so
        with several processes committing small transactions a writer often sleeps far
        longer than the lock is held. Polling every 0.2-0.5 ms keeps the wait close to
        the holder's commit time (a longer cap left the lock idle between writers:
        measured 4,400 -> 5,000 messages/s end to end); `busy_timeout` still bounds the wait.
        """
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            self._while_busy(
                lambda: conn.execute("BEGIN IMMEDIATE"), first_pause=0.0002, max_pause=0.0005
            )
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

    def _while_busy(self, attempt: Callable[[], T], *, first_pause: float, max_pause: float) -> T:
        """`attempt()`, tried again after doubling pauses while another connection holds
        what it needs (SQLITE_BUSY / SQLITE_LOCKED), for up to `busy_timeout`."""
        deadline = time.monotonic() + self._busy_timeout
        pause = first_pause
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(max_pause, pause * 2)

    def _set_synchronous(self, conn: sqlite3.Connection, durable: bool) -> None:
        level = self._synchronous if durable else "NORMAL"
        if level != self._level:
            conn.execute(f"PRAGMA synchronous = {level}")
            self._level = level

    @contextlib.contextmanager
    def _write(self, durable: bool = True) -> Iterator[Tx]:
        """A write transaction; wake-ups are sent only once it committed.

        `durable=False` commits without waiting for the disk (WAL, synchronous=NORMAL):
        a process crash loses nothing, a power loss may undo the latest such commits.
        Used for facts whose loss only causes a repeat (a claim, a submit report, a
        webhook completion), never for what the gateway has acknowledged to someone
        else (accepted messages, stored receipts and MO messages).
        """
        conn = self.conn
        self._set_synchronous(conn, durable)
        self._begin_immediate(conn)
        tx = Tx(conn)
        try:
            yield tx
            if tx.events:
                conn.executemany(INSERT_EVENT, tx.events)
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
        # Rows and events are built before the write lock is taken: the routers' and
        # connectors' writes all wait for it, so it is held only for the SQL.
        prepared = [(m, _message_row(m), _accepted_event(m)) for m in messages]
        results: list[AcceptResult] = []
        rows: list[tuple[Any, ...]] = []
        with self._write() as tx:
            seen: dict[tuple[str, str], str] = {}
            for m, row, event in prepared:
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
                rows.append(row)
                tx.events.append(event)
                tx.wake.add(m.targets[0])
                results.append(AcceptResult(message_id=m.id, duplicate=False))
            try:
                tx.conn.executemany(INSERT_MESSAGE, rows)
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
            events=tuple(timeline(events)),
        )

    def queue_depths(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT connection, count(*) FROM messages WHERE state = 'queued' GROUP BY connection"
        ).fetchall()
        return {connection: count for connection, count in rows}

    def expire(self, now: float, receipt_grace: float) -> int:
        with self._write(durable=False) as tx:
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
                finalize(tx, message_id, MessageStatus.EXPIRED, now, reason, None, connection)
            for message_id, connection in submitted:
                reason = "no final delivery receipt within the validity period and grace"
                finalize(tx, message_id, MessageStatus.EXPIRED, now, reason, None, connection)
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

    def purge_batch(self, older_than: float, limit: int) -> tuple[int, int, int]:
        """One retention transaction (see sqlite_retention); not durable: a purge
        undone by a power loss is simply done again."""
        with self._write(durable=False) as tx:
            return sqlite_retention.purge_batch(tx, older_than, limit)

    # -- connector side ---------------------------------------------------------------

    def recover(self, connection: str, now: float) -> int:
        with self._write(durable=False) as tx:
            rows = tx.conn.execute(
                """UPDATE messages SET state = 'queued', updated_at = ?
                   WHERE connection = ? AND state = 'dispatching' RETURNING id""",
                (now, connection),
            ).fetchall()
            for (message_id,) in rows:
                tx.event(message_id, now, "recovered", None, connection)
        return len(rows)

    def claim(self, connection: str, limit: int, now: float) -> list[ClaimedMessage]:
        with self._write(durable=False) as tx:
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
            # Inside the write lock: the detail written directly, as dumps() would.
            tx.events.extend(
                (row[0], now, "claimed", None, connection, f'{{"attempt":{row[7]}}}')
                for row in rows
            )
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

    def record_outcomes(
        self, reports: Sequence[SubmitReport], receipts: Sequence[Receipt]
    ) -> list[ReceiptMatch]:
        """Submit reports, then receipts, in one transaction. A receipt right behind its
        submit_sm_resp is matched to the part its report is about to write, so the
        pair costs one commit and one lookup less than two transactions would.

        Reports alone commit without waiting for the disk (`_write`): losing one only
        repeats a submit. A receipt has been acknowledged to the SMSC: durable.
        """
        correlator = self._receipts
        durable = bool(receipts)
        # Worked out before the write lock is taken (a WAL read needs none), so the lock
        # is held only for the writes, which raise StalePlan if what was read has changed.
        submits = plan_submits(self.conn, reports)
        planned = correlator.plan(self.conn, receipts, submits)
        try:
            with self._write(durable) as tx:
                self._apply_submits(tx, submits)
                return correlator.apply(tx, planned)
        except StalePlan:
            # Another writer got there first: plan again inside the lock, where nothing
            # can change, the receipts once the submits are written (so they see them).
            with self._write(durable) as tx:
                self._apply_submits(tx, plan_submits(tx.conn, reports))
                return correlator.apply(tx, correlator.plan(tx.conn, receipts))

    def record_submits(self, reports: Sequence[SubmitReport]) -> None:
        self.record_outcomes(reports, ())

    def _apply_submits(self, tx: Tx, plan: SubmittedRows) -> None:
        plan.write(tx)
        for message_id, scope, parts in plan.submitted:
            self._receipts.apply_orphans(tx, message_id, scope, parts)
        for report in plan.later:
            self._record_submit(tx, report)

    def _record_submit(self, tx: Tx, report: SubmitReport) -> None:
        row = tx.conn.execute(
            "SELECT state, targets, target_index, attempts FROM messages WHERE id = ?",
            (report.message_id,),
        ).fetchone()
        if row is None:
            log.warning("submit report for unknown message %s ignored", report.message_id)
            return
        state, targets_json, target_index, attempts = row
        detail = report_detail(report)
        if state not in OPEN_STATES:
            # Already submitted or final: a duplicate or stale report must not undo that.
            tx.event(
                report.message_id, report.at, "report_ignored", None, report.connection, detail
            )
            return
        if report.outcome is SubmitOutcome.SUBMITTED:
            submitted = SubmittedRows()
            submitted.add(report, detail)
            self._apply_submits(tx, submitted)
        elif report.outcome is SubmitOutcome.REQUEUE:
            targets: list[str] = json.loads(targets_json)
            self._requeue(tx, report, detail, targets, target_index, attempts)
        else:
            status = (
                MessageStatus.REJECTED
                if report.outcome is SubmitOutcome.REJECTED
                else MessageStatus.FAILED
            )
            finalize(
                tx,
                report.message_id,
                status,
                report.at,
                report.error or f"{status.value} on submit",
                report.command_status,
                report.connection,
                detail,
            )

    def _requeue(
        self,
        tx: Tx,
        report: SubmitReport,
        detail: dict[str, Any],
        targets: list[str],
        target_index: int,
        attempts: int,
    ) -> None:
        mid = report.message_id
        reason = report.error or "requeued"
        if not report.attempted:
            attempts -= 1  # the claim counted an attempt that never left
            detail["attempted"] = False
        if attempts >= self._max_attempts:
            detail["attempts"] = attempts
            error = f"gave up after {attempts} attempts: {reason}"
            finalize(
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
                finalize(
                    tx, mid, MessageStatus.FAILED, report.at, error, report.command_status,
                    report.connection, detail,
                )  # fmt: skip
                return
            connection = targets[target_index]
            detail["failover_to"] = connection
            tx.wake.add(connection)
        tx.conn.execute(
            """UPDATE messages SET state = 'queued', connection = ?, target_index = ?,
                                   not_before = ?, updated_at = ?, error = ?, command_status = ?,
                                   attempts = ?
               WHERE id = ?""",
            (
                connection,
                target_index,
                not_before,
                report.at,
                reason,
                report.command_status,
                attempts,
                mid,
            ),
        )
        tx.event(mid, report.at, "requeued", None, report.connection, detail)

    # -- receipts ---------------------------------------------------------------------

    def record_receipts(self, receipts: Sequence[Receipt]) -> list[ReceiptMatch]:
        return self.record_outcomes((), receipts)

    # -- inbound, connection state, timeline -------------------------------------------

    def record_inbound(self, messages: Sequence[InboundMessage]) -> None:
        with self._write() as tx:
            for m in messages:
                cursor = tx.conn.execute(
                    """INSERT OR IGNORE INTO inbound (id, connection, source, destination, text,
                                                      received_at, application, trace_context)
                       VALUES (?,?,?,?,?,?,?,?)""",
                    (m.id, m.connection, m.source, m.destination, m.text, m.received_at,
                     m.application, dumps(m.trace_context)),
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
                        INSERT_WEBHOOK,
                        (WebhookKind.INBOUND.value, m.webhook_url, dumps(payload), m.id,
                         m.received_at, dumps(m.trace_context), m.received_at, m.received_at),
                    )  # fmt: skip
                    tx.wake.add(WEBHOOK_WAKE)

    def publish_connection_state(self, state: ConnectionState) -> None:
        with self._write(durable=False) as tx:
            tx.conn.execute(
                """INSERT INTO connections (name, state, updated_at) VALUES (?,?,?)
                   ON CONFLICT (name) DO UPDATE
                   SET state = excluded.state, updated_at = excluded.updated_at""",
                (state.connection, dumps(dataclasses.asdict(state)), state.updated_at),
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
        with self._write(durable=False) as tx:
            for message_id, e in events:
                tx.event(message_id, e.at, e.kind, e.status, e.connection, e.detail)

    # -- webhooks ---------------------------------------------------------------------

    def claim_webhooks(self, limit: int, now: float, lease: float) -> list[WebhookJob]:
        # Dispatchers poll when idle: look before taking the write lock that every
        # accept and submit report of every process also needs.
        due = self.conn.execute(
            """SELECT EXISTS (SELECT 1 FROM webhooks
                              WHERE state = 'pending' AND due_at <= ?
                                AND coalesce(lease_until, 0) <= ?)""",
            (now, now),
        ).fetchone()[0]
        if not due:
            return []
        with self._write(durable=False) as tx:
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
        self.complete_webhooks([WebhookResult(job_id, ok, now, retry_at, error)])

    def complete_webhooks(self, results: Sequence[WebhookResult]) -> None:
        with self._write(durable=False) as tx:
            for result in results:
                self._complete_webhook(tx, result)

    def _complete_webhook(self, tx: Tx, result: WebhookResult) -> None:
        job_id, ok, now, retry_at, error = (
            result.job_id,
            result.ok,
            result.at,
            result.retry_at,
            result.error,
        )
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


def _message_row(m: NewMessage) -> tuple[Any, ...]:
    """INSERT_MESSAGE's parameters for a new message."""
    return (
        m.id, m.application, m.source, m.destination, m.text, m.route,
        dumps(list(m.targets)), m.targets[0], int(m.priority), m.segments,
        m.expires_at, m.created_at, m.created_at, m.client_ref,
        m.callback_url, m.idempotency_key, dumps(m.trace_context),
    )  # fmt: skip


def _accepted_event(m: NewMessage) -> EventRow:
    detail = {"route": m.route, "targets": list(m.targets), "priority": int(m.priority)}
    return event_row(m.id, m.created_at, "accepted", MessageStatus.ACCEPTED, m.targets[0], detail)

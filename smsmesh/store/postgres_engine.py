"""The PostgreSQL store's transactions: one function per store method, on one connection.

Round trips are what a network database charges for, so every method is as few
statements as its rules allow, each statement taking a whole batch as arrays:

- accept, claim, recover, inbound, webhooks, events: ONE statement each; the rows, their
  timeline events and the NOTIFY are data-modifying CTEs of that statement (a single
  statement is its own transaction: no BEGIN/COMMIT round trips).
- record_submits, record_receipts, expire: a transaction that locks and loads what the
  rules need, applies them in memory (`postgres_tx`), and writes with one statement.

Claims are `UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)`: concurrent claimers
(a connector's own tasks, or a successor started while its predecessor is still
winding down) each get different rows and never wait for each other.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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
    SubmitOutcome,
    SubmitReport,
    WebhookJob,
    WebhookKind,
    WebhookResult,
)
from smsmesh.smpp.receipt import id_candidates
from smsmesh.store.base import WEBHOOK_WAKE, StoreError
from smsmesh.store.postgres_receipts import (
    PART_COLUMNS,
    apply_orphans,
    load_orphans,
    lock_connections,
    lock_messages,
)
from smsmesh.store.postgres_tx import (
    MESSAGE_COLUMNS,
    Changes,
    MessageRow,
    PartRow,
    finalize,
)
from smsmesh.store.rules import (
    FINAL_STATES_SQL,
    RECEIPT_SCOPES_SQL,
    State,
    canonical_smsc_id,
    dumps,
    inbound_payload,
    part_key_rows,
    public_status,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from smsmesh.store.postgres_tx import Conn

log = logging.getLogger(__name__)

# -- router side ------------------------------------------------------------------------

_ACCEPT = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::int2[], $10::int4[],
                         $11::float8[], $12::float8[], $13::text[], $14::text[], $15::text[],
                         $16::text[], $17::text[])
        WITH ORDINALITY AS t(id, application, source, destination, text, route, targets,
                             connection, priority, segments, expires_at, created_at,
                             client_ref, callback_url, idempotency_key, trace_context,
                             detail, ord)
),
inserted AS (
    INSERT INTO messages (id, application, source, destination, text, route, targets,
                          target_index, connection, state, priority, segments, attempts,
                          not_before, expires_at, created_at, updated_at, client_ref,
                          callback_url, idempotency_key, trace_context)
    SELECT id, application, source, destination, text, route,
           ARRAY(SELECT jsonb_array_elements_text(targets::jsonb)), 0, connection, 'queued',
           priority, segments, 0, 0, expires_at, created_at, created_at, client_ref,
           callback_url, idempotency_key, trace_context::jsonb
    FROM input ORDER BY ord
    ON CONFLICT (application, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
),
accepted AS (
    INSERT INTO events (message_id, at, kind, status, connection, detail)
    SELECT input.id, input.created_at, 'accepted', 'accepted', input.connection,
           input.detail::jsonb
    FROM input JOIN inserted ON inserted.id = input.id
    ORDER BY input.ord
)
SELECT (SELECT coalesce(array_agg(id), '{}') FROM inserted) AS inserted,
       (SELECT count(pg_notify(c, '')) FROM unnest($18::text[]) AS c) AS notified
"""


async def accept(
    conn: Conn, messages: Sequence[NewMessage], channel: Callable[[str], str]
) -> list[AcceptResult]:
    first_of: dict[tuple[str, str], str] = {}  # (application, key) -> first id in this batch
    batch: list[NewMessage] = []
    for m in messages:
        if m.idempotency_key is not None:
            key = (m.application, m.idempotency_key)
            if key in first_of:
                continue  # a repeat within the batch: answered with the first's id
            first_of[key] = m.id
        batch.append(m)
    columns: list[list[Any]] = [[] for _ in range(17)]
    for m in batch:
        detail = {"route": m.route, "targets": list(m.targets), "priority": int(m.priority)}
        values = (
            m.id, m.application, m.source, m.destination, m.text, m.route,
            dumps(list(m.targets)), m.targets[0], int(m.priority), m.segments, m.expires_at,
            m.created_at, m.client_ref, m.callback_url, m.idempotency_key,
            dumps(m.trace_context), dumps(detail),
        )  # fmt: skip
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    wake = sorted({channel(m.targets[0]) for m in batch})
    row = await conn.fetchrow(_ACCEPT, *columns, wake)
    assert row is not None
    inserted = set(row["inserted"])
    earlier: dict[tuple[str, str], str] = {}
    missing = [k for k, mid in first_of.items() if mid not in inserted]
    if missing:
        found = await conn.fetch(
            """SELECT application, idempotency_key, id FROM messages
               WHERE (application, idempotency_key) IN
                     (SELECT * FROM unnest($1::text[], $2::text[]))""",
            [a for a, _ in missing],
            [k for _, k in missing],
        )
        earlier = {(r["application"], r["idempotency_key"]): r["id"] for r in found}
    results: list[AcceptResult] = []
    for m in messages:
        if m.idempotency_key is None:
            results.append(AcceptResult(m.id, duplicate=False))
            continue
        key = (m.application, m.idempotency_key)
        if first_of[key] == m.id and m.id in inserted:
            results.append(AcceptResult(m.id, duplicate=False))
            continue
        original = earlier.get(key) or (first_of[key] if first_of[key] in inserted else None)
        if original is None:
            raise StoreError(
                f"accept: the earlier message with idempotency key {m.idempotency_key!r} "
                "vanished during the call; retry"
            )
        results.append(AcceptResult(original, duplicate=True))
    return results


_GET_MESSAGE = """
SELECT m.id, m.application, m.source, m.destination, m.state, m.route, m.targets,
       m.connection, m.priority, m.segments, m.attempts, m.created_at, m.updated_at,
       m.expires_at, m.client_ref, m.callback_url,
       ARRAY(SELECT p.smsc_id FROM parts p WHERE p.message_id = m.id ORDER BY p.part)
           AS smsc_ids,
       ARRAY(SELECT e.at FROM events e WHERE e.message_id = m.id ORDER BY e.seq) AS ev_at,
       ARRAY(SELECT e.kind FROM events e WHERE e.message_id = m.id ORDER BY e.seq) AS ev_kind,
       ARRAY(SELECT e.status FROM events e WHERE e.message_id = m.id ORDER BY e.seq)
           AS ev_status,
       ARRAY(SELECT e.connection FROM events e WHERE e.message_id = m.id ORDER BY e.seq)
           AS ev_connection,
       ARRAY(SELECT e.detail::text FROM events e WHERE e.message_id = m.id ORDER BY e.seq)
           AS ev_detail
FROM messages m
WHERE m.id = $1 AND ($2::text IS NULL OR m.application = $2)
"""


async def get_message(conn: Conn, message_id: str, application: str | None) -> MessageRecord | None:
    r = await conn.fetchrow(_GET_MESSAGE, message_id, application)
    if r is None:
        return None
    events = tuple(
        Event(
            at=at,
            kind=kind,
            status=MessageStatus(status) if status else None,
            connection=connection,
            detail=json.loads(detail),
        )
        for at, kind, status, connection, detail in zip(
            r["ev_at"],
            r["ev_kind"],
            r["ev_status"],
            r["ev_connection"],
            r["ev_detail"],
            strict=True,
        )
    )
    return MessageRecord(
        id=r["id"],
        application=r["application"],
        source=r["source"],
        destination=r["destination"],
        status=public_status(r["state"]),
        route=r["route"],
        targets=tuple(r["targets"]),
        connection=r["connection"],
        priority=Priority(r["priority"]),
        segments=r["segments"],
        attempts=r["attempts"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        expires_at=r["expires_at"],
        client_ref=r["client_ref"],
        callback_url=r["callback_url"],
        smsc_message_ids=tuple(r["smsc_ids"]),
        events=events,
    )


async def queue_depths(conn: Conn) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT connection, count(*) FROM messages WHERE state = 'queued' GROUP BY connection"
    )
    return {r[0]: r[1] for r in rows}


# One statement per state, each with its state as a literal: a generic plan can then use
# the partial index messages_expiry (a `state = $1` parameter could not prove it applies).
_EXPIRE = """
WITH picked AS MATERIALIZED (
    SELECT id FROM messages
    WHERE state = '{state}' AND expires_at <= $1
    ORDER BY expires_at LIMIT $2
    FOR UPDATE SKIP LOCKED
)
SELECT {columns} FROM messages JOIN picked USING (id)
"""

EXPIRE_BATCH = 2000


async def expire_batch(conn: Conn, now: float, receipt_grace: float, webhook_channel: str) -> int:
    """Expire up to EXPIRE_BATCH queued and as many submitted messages; one transaction."""
    changes = Changes()
    count = 0
    reasons = (
        (State.QUEUED, now, "validity ran out before submission"),
        (State.SUBMITTED, now - receipt_grace,
         "no final delivery receipt within the validity period and grace"),
    )  # fmt: skip
    async with conn.transaction():
        for state, cutoff, reason in reasons:
            sql = _EXPIRE.format(state=state.value, columns=MESSAGE_COLUMNS)
            rows = [MessageRow.from_record(r) for r in await conn.fetch(sql, cutoff, EXPIRE_BATCH)]
            parts: dict[str, list[PartRow]] = {}
            with_parts = [m.id for m in rows if m.callback_url and state is State.SUBMITTED]
            if with_parts:
                for r in await conn.fetch(
                    f"SELECT {PART_COLUMNS} FROM parts WHERE message_id = ANY($1::text[])",
                    with_parts,
                ):
                    parts.setdefault(r["message_id"], []).append(PartRow(*r.values()))
            for msg in sorted(rows, key=lambda m: m.id):
                finalize(
                    changes, msg, MessageStatus.EXPIRED, now, reason, None, msg.connection,
                    parts=parts.get(msg.id, ()),
                )  # fmt: skip
            count += len(rows)
        await changes.flush(conn, webhook_channel)
    return count


async def purge_orphan_receipts(conn: Conn, older_than: float) -> int:
    """Forget early receipts nobody claimed by `older_than`: no submit will come for them."""
    row = await conn.fetchrow(
        """WITH gone AS (DELETE FROM orphan_receipts WHERE received_at <= $1 RETURNING id),
                keys AS (DELETE FROM orphan_keys WHERE orphan_id IN (SELECT id FROM gone))
           SELECT count(*) FROM gone""",
        older_than,
    )
    return int(row[0]) if row is not None else 0


# -- connector side ---------------------------------------------------------------------

_RECOVER = """
WITH back AS (
    UPDATE messages SET state = 'queued', updated_at = $2
    WHERE connection = $1 AND state = 'dispatching'
    RETURNING id
),
logged AS (
    INSERT INTO events (message_id, at, kind, connection, detail)
    SELECT id, $2, 'recovered', $1, '{}'::jsonb FROM back ORDER BY id
)
SELECT count(*) FROM back
"""


async def recover(conn: Conn, connection: str, now: float) -> int:
    return int(await conn.fetchval(_RECOVER, connection, now))


_CLAIM = """
WITH picked AS MATERIALIZED (
    SELECT id FROM messages
    WHERE connection = $1 AND state = 'queued' AND not_before <= $3 AND expires_at > $3
    ORDER BY priority DESC, created_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE messages m SET state = 'dispatching', attempts = m.attempts + 1, updated_at = $3
    FROM picked WHERE m.id = picked.id
    RETURNING m.id, m.application, m.source, m.destination, m.text, m.priority, m.expires_at,
              m.attempts, m.client_ref, m.trace_context::text, m.created_at
),
logged AS (
    INSERT INTO events (message_id, at, kind, connection, detail)
    SELECT id, $3, 'claimed', $1, jsonb_build_object('attempt', attempts)
    FROM claimed ORDER BY priority DESC, created_at, id
)
SELECT * FROM claimed ORDER BY priority DESC, created_at, id
"""


async def claim(conn: Conn, connection: str, limit: int, now: float) -> list[ClaimedMessage]:
    rows = await conn.fetch(_CLAIM, connection, limit, now)
    return [
        ClaimedMessage(
            id=r["id"],
            application=r["application"],
            source=r["source"],
            destination=r["destination"],
            text=r["text"],
            priority=Priority(r["priority"]),
            expires_at=r["expires_at"],
            attempts=r["attempts"] - 1,
            client_ref=r["client_ref"],
            trace_context=json.loads(r["trace_context"]),
        )
        for r in rows
    ]


class SubmitRules:
    """`record_submits` for one batch: the SQLite store's per-report rules, in memory."""

    def __init__(self, max_attempts: int, channel: Callable[[str], str]) -> None:
        self._max_attempts = max_attempts
        self._channel = channel
        self.changes = Changes()

    async def run(self, conn: Conn, schema: str, reports: Sequence[SubmitReport]) -> None:
        submits = [r for r in reports if r.outcome is SubmitOutcome.SUBMITTED]
        # Receipts in these scopes must not slip between our read and our commit.
        await lock_connections(conn, schema, (r.receipt_scope for r in submits))
        messages = await lock_messages(conn, (r.message_id for r in reports))
        orphans = await load_orphans(
            conn,
            (
                (r.receipt_scope, key)
                for r in submits
                for sid in r.smsc_message_ids
                for key in id_candidates(sid)
            ),
        )
        for report in reports:
            msg = messages.get(report.message_id)
            if msg is None:
                log.warning("submit report for unknown message %s ignored", report.message_id)
                continue
            self._one(msg, report, orphans)
        await self.changes.flush(conn, self._channel(WEBHOOK_WAKE))

    def _one(self, msg: MessageRow, report: SubmitReport, orphans: Any) -> None:
        detail: dict[str, Any] = {"outcome": report.outcome.value}
        if report.command_status is not None:
            detail["command_status"] = report.command_status
        if report.error:
            detail["error"] = report.error
        if msg.state not in (State.DISPATCHING, State.QUEUED):
            # Already submitted or final: a duplicate or stale report must not undo that.
            self.changes.event(msg.id, report.at, "report_ignored", None, report.connection, detail)
            return
        if report.outcome is SubmitOutcome.SUBMITTED:
            self._submitted(msg, report, detail, orphans)
        elif report.outcome is SubmitOutcome.REQUEUE:
            self._requeue(msg, report, detail)
        else:
            status = (
                MessageStatus.REJECTED
                if report.outcome is SubmitOutcome.REJECTED
                else MessageStatus.FAILED
            )
            finalize(
                self.changes, msg, status, report.at, report.error or f"{status.value} on submit",
                report.command_status, report.connection, detail,
            )  # fmt: skip

    def _submitted(
        self, msg: MessageRow, report: SubmitReport, detail: dict[str, Any], orphans: Any
    ) -> None:
        changes, connection = self.changes, report.connection
        msg.state = State.SUBMITTED.value
        msg.connection = connection
        msg.updated_at = report.at
        msg.command_status = report.command_status
        msg.error = None
        if report.trace_context:
            msg.trace_context = dumps(report.trace_context)
            msg.trace_changed = True
        changes.touch(msg)
        parts = [
            PartRow(msg.id, n, connection, sid, canonical_smsc_id(sid), None, None, report.at)
            for n, sid in enumerate(report.smsc_message_ids, start=1)
        ]
        scope = report.receipt_scope  # part_keys.connection: where receipts look
        for part in parts:
            changes.put_part(part)
            for key in id_candidates(part.smsc_id):
                changes.part_keys.add((scope, key, msg.id, part.part))
        detail["smsc_ids"] = list(report.smsc_message_ids)
        changes.event(msg.id, report.at, "submitted", MessageStatus.SUBMITTED, connection, detail)
        apply_orphans(changes, msg, parts, orphans, scope)

    def _requeue(self, msg: MessageRow, report: SubmitReport, detail: dict[str, Any]) -> None:
        changes = self.changes
        reason = report.error or "requeued"
        if not report.attempted:
            msg.attempts -= 1  # the claim counted an attempt that never left
            detail["attempted"] = False
        if msg.attempts >= self._max_attempts:
            detail["attempts"] = msg.attempts
            error = f"gave up after {msg.attempts} attempts: {reason}"
            finalize(
                changes, msg, MessageStatus.FAILED, report.at, error, report.command_status,
                report.connection, detail,
            )  # fmt: skip
            return
        not_before = report.retry_at if report.retry_at is not None else report.at
        detail["retry_at"] = not_before
        connection = report.connection
        target_index = msg.target_index
        if report.failover:
            target_index += 1
            if target_index >= len(msg.targets):
                error = f"no target left after {report.connection}: {reason}"
                finalize(
                    changes, msg, MessageStatus.FAILED, report.at, error, report.command_status,
                    report.connection, detail,
                )  # fmt: skip
                return
            connection = msg.targets[target_index]
            detail["failover_to"] = connection
            changes.wake.add(self._channel(connection))
        msg.state = State.QUEUED.value
        msg.connection = connection
        msg.target_index = target_index
        msg.not_before = not_before
        msg.updated_at = report.at
        msg.error = reason
        msg.command_status = report.command_status
        changes.touch(msg)
        changes.event(msg.id, report.at, "requeued", None, report.connection, detail)


# -- inbound, connection state, timeline ------------------------------------------------

_INBOUND = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::float8[], $7::text[], $8::text[], $9::text[], $10::text[],
                         $11::text[])
        WITH ORDINALITY AS t(id, connection, source, destination, text, received_at,
                             application, trace_context, webhook_url, payload, detail, ord)
),
inserted AS (
    INSERT INTO inbound (id, connection, source, destination, text, received_at,
                         application, trace_context)
    SELECT id, connection, source, destination, text, received_at, application,
           trace_context::jsonb
    FROM input ORDER BY ord
    ON CONFLICT (id) DO NOTHING
    RETURNING id
),
logged AS (
    INSERT INTO events (message_id, at, kind, connection, detail)
    SELECT input.id, input.received_at, 'inbound', input.connection, input.detail::jsonb
    FROM input JOIN inserted ON inserted.id = input.id ORDER BY input.ord
),
jobs AS (
    INSERT INTO webhooks (kind, url, payload, message_id, attempts, due_at, state,
                          trace_context, created_at, updated_at)
    SELECT 'message.inbound', input.webhook_url, input.payload::jsonb, input.id, 0,
           input.received_at, 'pending', input.trace_context::jsonb, input.received_at,
           input.received_at
    FROM input JOIN inserted ON inserted.id = input.id
    WHERE input.webhook_url IS NOT NULL
    ORDER BY input.ord
)
SELECT count(*) FROM inserted
"""


async def record_inbound(
    conn: Conn, messages: Sequence[InboundMessage], webhook_channel: str
) -> None:
    unique: dict[str, InboundMessage] = {}
    for m in messages:
        unique.setdefault(m.id, m)  # the same MO twice in one batch: the first counts
    columns: list[list[Any]] = [[] for _ in range(11)]
    for m in unique.values():
        payload = None
        if m.webhook_url:
            payload = dumps(
                inbound_payload(
                    message_id=m.id,
                    connection=m.connection,
                    source=m.source,
                    destination=m.destination,
                    text=m.text,
                    received_at=m.received_at,
                    application=m.application,
                )
            )
        values = (
            m.id, m.connection, m.source, m.destination, m.text, m.received_at, m.application,
            dumps(m.trace_context), m.webhook_url or None, payload,
            dumps({"application": m.application}),
        )  # fmt: skip
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    await conn.execute(_INBOUND, *columns)
    if webhook_channel and any(m.webhook_url for m in unique.values()):
        # After the statement committed, so the dispatcher it wakes finds the jobs.
        await conn.execute("SELECT pg_notify($1, '')", webhook_channel)


async def publish_connection_state(conn: Conn, state: ConnectionState) -> None:
    await conn.execute(
        """INSERT INTO connections (name, state, updated_at) VALUES ($1, $2::jsonb, $3)
           ON CONFLICT (name) DO UPDATE
           SET state = excluded.state, updated_at = excluded.updated_at""",
        state.connection,
        dumps(dataclasses.asdict(state)),
        state.updated_at,
    )


async def connection_states(conn: Conn) -> dict[str, ConnectionState]:
    rows = await conn.fetch("SELECT name, state::text FROM connections")
    known = {f.name for f in dataclasses.fields(ConnectionState)}
    out: dict[str, ConnectionState] = {}
    for name, state in rows:
        # Tolerate fields written by a newer or older smsmesh during a rolling upgrade.
        values = {k: v for k, v in json.loads(state).items() if k in known}
        out[name] = ConnectionState(**values)
    return out


async def add_events(conn: Conn, events: Sequence[tuple[str, Event]]) -> None:
    changes = Changes()
    for message_id, e in events:
        changes.event(message_id, e.at, e.kind, e.status, e.connection, e.detail)
    await changes.flush(conn)


# -- webhooks -----------------------------------------------------------------------------

_CLAIM_WEBHOOKS = """
WITH picked AS MATERIALIZED (
    SELECT id FROM webhooks
    WHERE state = 'pending' AND due_at <= $1 AND coalesce(lease_until, 0) <= $1
    ORDER BY due_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE webhooks w SET lease_until = $3, updated_at = $1
FROM picked WHERE w.id = picked.id
RETURNING w.id, w.kind, w.url, w.payload::text, w.message_id, w.attempts,
          w.trace_context::text, w.due_at
"""


async def claim_webhooks(conn: Conn, limit: int, now: float, lease: float) -> list[WebhookJob]:
    rows = await conn.fetch(_CLAIM_WEBHOOKS, now, limit, now + lease)
    rows = sorted(rows, key=lambda r: (r["due_at"], r["id"]))
    return [
        WebhookJob(
            id=r["id"],
            kind=WebhookKind(r["kind"]),
            url=r["url"],
            payload=json.loads(r["payload"]),
            message_id=r["message_id"],
            attempts=r["attempts"],
            trace_context=json.loads(r["trace_context"]),
        )
        for r in rows
    ]


_COMPLETE_WEBHOOK = """
WITH before AS (SELECT state FROM webhooks WHERE id = $1),
done AS (
    UPDATE webhooks w
    SET state = $2, attempts = w.attempts + $3, due_at = coalesce($4, w.due_at),
        lease_until = NULL, last_error = $5, updated_at = $6
    WHERE w.id = $1 AND w.state = 'pending'
    RETURNING w.id, w.kind, w.message_id, w.attempts
),
logged AS (
    INSERT INTO events (message_id, at, kind, connection, detail)
    SELECT message_id, $6, 'webhook', NULL,
           jsonb_build_object('job', id, 'kind', kind, 'attempt', attempts + 1 - $3)
               || $7::jsonb
    FROM done
)
SELECT (SELECT state FROM before) AS found, (SELECT count(*) FROM done) AS completed
"""


async def complete_webhook(
    conn: Conn,
    job_id: int,
    ok: bool,
    now: float,
    retry_at: float | None,
    error: str | None,
) -> None:
    detail: dict[str, Any]
    if ok:
        state, failed, due_at, detail = "done", 0, None, {"result": "delivered"}
    elif retry_at is not None:
        state, failed, due_at = "pending", 1, retry_at
        detail = {"result": "failed", "retry_at": retry_at}
    else:
        state, failed, due_at, detail = "gave_up", 1, None, {"result": "gave_up"}
    if error and not ok:
        detail["error"] = error
    row = await conn.fetchrow(
        _COMPLETE_WEBHOOK,
        job_id,
        state,
        failed,
        due_at,
        None if ok else error,
        now,
        dumps(detail),
    )
    if row is None or row["found"] is None:
        raise StoreError(f"complete_webhook: no webhook job {job_id}")


_FINISH_WEBHOOKS = """
WITH done AS (
    UPDATE webhooks w
    SET state = u.state, attempts = u.attempts, due_at = u.due_at, lease_until = NULL,
        last_error = u.last_error, updated_at = u.updated_at
    FROM unnest($1::int8[], $2::text[], $3::int4[], $4::float8[], $5::text[], $6::float8[])
        AS u(id, state, attempts, due_at, last_error, updated_at)
    WHERE w.id = u.id
),
logged AS (
    INSERT INTO events (message_id, at, kind, connection, detail)
    SELECT message_id, at, 'webhook', NULL, detail::jsonb
    FROM unnest($7::text[], $8::float8[], $9::text[]) WITH ORDINALITY
        AS e(message_id, at, detail, ord)
    ORDER BY ord
)
SELECT 1
"""


async def complete_webhooks(conn: Conn, results: Sequence[WebhookResult]) -> None:
    """Finish many leased jobs in one transaction: lock them, apply in order, write once.

    The same rules as `complete_webhook`, one result after the other (a job named twice
    sees the first result); an unknown job fails the whole batch.
    """
    async with conn.transaction():
        rows = await conn.fetch(
            """SELECT id, state, attempts, message_id, kind, due_at FROM webhooks
               WHERE id = ANY($1::int8[]) ORDER BY id FOR UPDATE""",
            sorted({r.job_id for r in results}),
        )
        jobs = {r["id"]: dict(r) for r in rows}
        changed: dict[int, tuple[Any, ...]] = {}
        events: list[tuple[str, float, str]] = []
        for result in results:
            job = jobs.get(result.job_id)
            if job is None:
                raise StoreError(f"complete_webhook: no webhook job {result.job_id}")
            if job["state"] != "pending":
                continue  # completed already (a re-leased copy finished first)
            attempt = job["attempts"] + 1
            detail: dict[str, Any] = {"job": job["id"], "kind": job["kind"], "attempt": attempt}
            if result.ok:
                job["state"] = "done"
                detail["result"] = "delivered"
            elif result.retry_at is not None:
                job.update(state="pending", attempts=attempt, due_at=result.retry_at)
                detail.update(result="failed", retry_at=result.retry_at)
            else:
                job.update(state="gave_up", attempts=attempt)
                detail["result"] = "gave_up"
            if result.error and not result.ok:
                detail["error"] = result.error
            last_error = None if result.ok else result.error
            changed[job["id"]] = (
                job["id"], job["state"], job["attempts"], job["due_at"], last_error, result.at
            )  # fmt: skip
            events.append((job["message_id"], result.at, dumps(detail)))
        if changed:
            updates = list(changed.values())
            await conn.execute(
                _FINISH_WEBHOOKS,
                *([u[i] for u in updates] for i in range(6)),
                *([e[i] for e in events] for i in range(3)),
            )


# -- retention ------------------------------------------------------------------------------

# The doomed ids travel as one array (`= ANY(...)`): the planner then probes the primary
# keys per id instead of hashing whole tables, whatever LIMIT a generic plan assumes.
_PURGE_MESSAGES = f"""
WITH doomed AS MATERIALIZED (
    SELECT coalesce(array_agg(id), '{{}}') AS ids FROM (
        SELECT m.id FROM messages m
        WHERE m.state IN ({FINAL_STATES_SQL}) AND m.updated_at < $1
          AND NOT EXISTS (SELECT 1 FROM webhooks w
                          WHERE w.message_id = m.id AND w.state = 'pending')
        ORDER BY m.updated_at
        LIMIT $2
        FOR UPDATE OF m SKIP LOCKED
    ) picked
),
gone_parts AS (
    DELETE FROM parts WHERE message_id = ANY((SELECT ids FROM doomed)::text[])
    RETURNING message_id, part, smsc_id
),
gone_events AS (DELETE FROM events WHERE message_id = ANY((SELECT ids FROM doomed)::text[])),
gone AS (DELETE FROM messages WHERE id = ANY((SELECT ids FROM doomed)::text[]) RETURNING id)
SELECT (SELECT count(*) FROM gone) AS messages,
       ARRAY(SELECT message_id FROM gone_parts) AS part_message,
       ARRAY(SELECT part FROM gone_parts) AS part_no,
       ARRAY(SELECT smsc_id FROM gone_parts) AS part_smsc_id
"""


async def purge_messages_batch(conn: Conn, older_than: float, limit: int) -> int:
    """Delete up to `limit` final messages with their parts, keys and events.

    Their finished webhook jobs go by their own age (`purge_others_batch`), through an
    index, rather than by message id (which would need another index on every job).
    """
    async with conn.transaction():
        r = await conn.fetchrow(_PURGE_MESSAGES, older_than, limit)
        assert r is not None
        parts = list(zip(r["part_message"], r["part_no"], r["part_smsc_id"], strict=True))
        scopes = [row[0] for row in await conn.fetch(RECEIPT_SCOPES_SQL)] if parts else []
        keys = part_key_rows(parts, scopes)
        if keys:
            await conn.execute(
                """DELETE FROM part_keys k
                   USING unnest($1::text[], $2::text[], $3::text[], $4::int[])
                       AS u(connection, key, message_id, part)
                   WHERE k.connection = u.connection AND k.key = u.key
                     AND k.message_id = u.message_id AND k.part = u.part""",
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [k[3] for k in keys],
            )
    return int(r["messages"])


_PURGE_OTHERS = """
WITH inbound_doomed AS MATERIALIZED (
    SELECT coalesce(array_agg(id), '{}') AS ids FROM (
        SELECT i.id FROM inbound i
        WHERE i.received_at < $1
          AND NOT EXISTS (SELECT 1 FROM webhooks w
                          WHERE w.message_id = i.id AND w.state = 'pending')
        ORDER BY i.received_at LIMIT $2
    ) picked
),
gone_inbound AS (
    DELETE FROM inbound WHERE id = ANY((SELECT ids FROM inbound_doomed)::text[]) RETURNING id
),
gone_inbound_events AS (
    DELETE FROM events WHERE message_id = ANY((SELECT ids FROM inbound_doomed)::text[])
),
hooks_doomed AS MATERIALIZED (
    SELECT coalesce(array_agg(id), '{}') AS ids FROM (
        SELECT id FROM webhooks WHERE state <> 'pending' AND updated_at < $1
        ORDER BY updated_at LIMIT $2
    ) picked
),
gone_hooks AS (
    DELETE FROM webhooks WHERE id = ANY((SELECT ids FROM hooks_doomed)::int8[]) RETURNING id
)
SELECT (SELECT count(*) FROM gone_inbound) AS inbound, (SELECT count(*) FROM gone_hooks) AS hooks
"""


async def purge_others_batch(conn: Conn, older_than: float, limit: int) -> tuple[int, int]:
    """Delete up to `limit` old inbound messages (and events) and finished webhook jobs."""
    r = await conn.fetchrow(_PURGE_OTHERS, older_than, limit)
    assert r is not None
    return int(r["inbound"]), int(r["hooks"])

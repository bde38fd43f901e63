"""What one PostgreSQL write transaction changes, collected in memory and written at once.

The multi-step writes (submit reports, receipts, expiry) follow the same rules as the
SQLite store, one report or receipt after the other, each seeing what the previous
one did. Doing that with a statement per step would cost a network round trip per
message. Instead a transaction loads (and locks) the rows it needs, applies the rules
to in-memory `MessageRow`/`PartRow` values, and `Changes.flush` writes every changed
row, event, webhook job, early receipt and wake-up in ONE statement: data-modifying
CTEs fed by arrays (`unnest`), one per table, only for the tables that changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smsmesh.model import MessageStatus, Receipt, WebhookKind
from smsmesh.smpp.receipt import id_candidates
from smsmesh.store.rules import TimelineRows, dumps, status_payload

if TYPE_CHECKING:
    from typing import TypeAlias

    from asyncpg import Connection, Record
    from asyncpg.pool import PoolConnectionProxy

    # A session of our own or one lent by the pool: both run statements the same way.
    Conn: TypeAlias = Connection[Record] | PoolConnectionProxy[Record]


MESSAGE_COLUMNS = """id, state, targets, target_index, attempts, connection, not_before,
    updated_at, error, command_status, callback_url, client_ref, destination,
    trace_context::text"""


@dataclass(slots=True)
class MessageRow:
    """The columns of a message that the rules read or change."""

    id: str
    state: str
    targets: list[str]
    target_index: int
    attempts: int
    connection: str
    not_before: float
    updated_at: float
    error: str | None
    command_status: int | None
    callback_url: str | None
    client_ref: str | None
    destination: str
    trace_context: str  # JSON text, copied into webhook jobs as it is
    trace_changed: bool = False  # trace_context was replaced (a submit): write it back

    @classmethod
    def from_record(cls, r: Record) -> MessageRow:
        return cls(*r.values())


@dataclass(slots=True)
class PartRow:
    message_id: str
    part: int
    connection: str
    smsc_id: str
    smsc_key: str
    state: str | None
    error_code: str | None
    updated_at: float


@dataclass(slots=True)
class Changes(TimelineRows):
    """Everything one transaction will write, in the order it happened."""

    messages: dict[str, MessageRow] = field(default_factory=dict)
    parts: dict[tuple[str, int], PartRow] = field(default_factory=dict)
    part_keys: set[tuple[str, str, str, int]] = field(default_factory=set)
    events: list[tuple[str, float, str, str | None, str | None, str]] = field(default_factory=list)
    webhooks: list[tuple[str, str, str, str, float, str]] = field(default_factory=list)
    new_orphans: list[Receipt] = field(default_factory=list)
    used_orphans: set[int] = field(default_factory=set)
    wake: set[str] = field(default_factory=set)  # channel names

    def touch(self, row: MessageRow) -> None:
        self.messages[row.id] = row

    def put_part(self, row: PartRow) -> None:
        self.parts[(row.message_id, row.part)] = row

    def webhook(
        self, kind: WebhookKind, url: str, payload: dict[str, Any], message_id: str, at: float,
        trace_context: str,
    ) -> None:  # fmt: skip
        self.webhooks.append((kind.value, url, dumps(payload), message_id, at, trace_context))

    def __bool__(self) -> bool:
        return bool(
            self.messages or self.parts or self.part_keys or self.events or self.webhooks
            or self.new_orphans or self.used_orphans or self.wake
        )  # fmt: skip

    async def flush(self, conn: Conn, webhook_channel: str = "") -> None:
        """Write everything collected, in one statement (one round trip); notify
        `webhook_channel` (at commit) when webhook jobs were added."""
        if self.webhooks and webhook_channel:
            self.wake.add(webhook_channel)
        if self:
            sql, args = self.statement()
            await conn.execute(sql, *args)

    def statement(self) -> tuple[str, list[Any]]:
        args: list[Any] = []

        def arg(value: Any, pg_type: str) -> str:
            args.append(value)
            return f"${len(args)}::{pg_type}"

        def columns(rows: Sequence[Sequence[Any]], types: Sequence[str]) -> str:
            return ", ".join(arg([r[i] for r in rows], t) for i, t in enumerate(types))

        ctes: list[str] = []
        rows: list[tuple[Any, ...]]
        types: tuple[str, ...]
        if self.messages:
            rows = [
                (m.id, m.state, m.connection, m.target_index, m.not_before, m.updated_at,
                 m.error, m.command_status, m.attempts,
                 m.trace_context if m.trace_changed else None)
                for m in self.messages.values()
            ]  # fmt: skip
            types = ("text[]", "text[]", "text[]", "int[]", "float8[]", "float8[]", "text[]")
            ctes.append(f"""m AS (
                UPDATE messages t SET state = u.state, connection = u.connection,
                    target_index = u.target_index, not_before = u.not_before,
                    updated_at = u.updated_at, error = u.error, command_status = u.command_status,
                    attempts = u.attempts,
                    trace_context = COALESCE(u.trace_context::jsonb, t.trace_context)
                FROM unnest({columns(rows, (*types, "int8[]", "int[]", "text[]"))})
                    AS u(id, state, connection, target_index, not_before, updated_at, error,
                         command_status, attempts, trace_context)
                WHERE t.id = u.id)""")
        if self.parts:
            rows = [
                (p.message_id, p.part, p.connection, p.smsc_id, p.smsc_key, p.state,
                 p.error_code, p.updated_at)
                for p in self.parts.values()
            ]  # fmt: skip
            types = ("text[]", "int[]", "text[]", "text[]", "text[]", "text[]", "text[]")
            ctes.append(f"""p AS (
                INSERT INTO parts (message_id, part, connection, smsc_id, smsc_key, state,
                                   error_code, updated_at)
                SELECT * FROM unnest({columns(rows, (*types, "float8[]"))})
                ON CONFLICT (message_id, part) DO UPDATE SET
                    connection = excluded.connection, smsc_id = excluded.smsc_id,
                    smsc_key = excluded.smsc_key, state = excluded.state,
                    error_code = excluded.error_code, updated_at = excluded.updated_at)""")
        if self.part_keys:
            rows = sorted(self.part_keys)  # a stable order: fewer lock conflicts
            ctes.append(f"""k AS (
                INSERT INTO part_keys (connection, key, message_id, part)
                SELECT * FROM unnest({columns(rows, ("text[]", "text[]", "text[]", "int[]"))})
                ON CONFLICT DO NOTHING)""")
        if self.events:
            types = ("text[]", "float8[]", "text[]", "text[]", "text[]", "text[]")
            ctes.append(f"""e AS (
                INSERT INTO events (message_id, at, kind, status, connection, detail)
                SELECT message_id, at, kind, status, connection, detail::jsonb
                FROM unnest({columns(self.events, types)}) WITH ORDINALITY
                    AS u(message_id, at, kind, status, connection, detail, ord)
                ORDER BY ord)""")
        if self.webhooks:
            types = ("text[]", "text[]", "text[]", "text[]", "float8[]", "text[]")
            ctes.append(f"""w AS (
                INSERT INTO webhooks (kind, url, payload, message_id, attempts, due_at, state,
                                      trace_context, created_at, updated_at)
                SELECT kind, url, payload::jsonb, message_id, 0, at, 'pending',
                       trace_context::jsonb, at, at
                FROM unnest({columns(self.webhooks, types)}) WITH ORDINALITY
                    AS u(kind, url, payload, message_id, at, trace_context, ord)
                ORDER BY ord)""")
        if self.used_orphans:
            used = arg(sorted(self.used_orphans), "int8[]")
            ctes.append(f"ok_del AS (DELETE FROM orphan_keys WHERE orphan_id = ANY({used}))")
            ctes.append(f"o_del AS (DELETE FROM orphan_receipts WHERE id = ANY({used}))")
        if self.new_orphans:
            rows = [
                (r.connection, r.smsc_message_id, r.state.value, r.at, r.error_code, r.raw)
                for r in self.new_orphans
            ]
            types = ("text[]", "text[]", "text[]", "float8[]", "text[]", "text[]")
            # Keys go under the receipt's scope; an orphan is told apart by its smsc id
            # and the connection it arrived on.
            keys: list[tuple[Any, ...]] = sorted(
                {(r.smsc_message_id, r.connection, r.receipt_scope, key) for r in self.new_orphans
                 for key in id_candidates(r.smsc_message_id)}
            )  # fmt: skip
            ctes.append(f"""o AS (
                INSERT INTO orphan_receipts (connection, smsc_id, state, at, error_code, raw,
                                             received_at)
                SELECT connection, smsc_id, state, at, error_code, raw, at
                FROM unnest({columns(rows, types)}) WITH ORDINALITY
                    AS u(connection, smsc_id, state, at, error_code, raw, ord)
                ORDER BY ord
                RETURNING id, connection, smsc_id)""")
            # An early receipt's keys are a function of its smsc id alone.
            ctes.append(f"""ok AS (
                INSERT INTO orphan_keys (connection, key, orphan_id)
                SELECT k.scope, k.key, o.id
                FROM o JOIN unnest({columns(keys, ("text[]",) * 4)})
                        AS k(smsc_id, connection, scope, key)
                    ON k.smsc_id = o.smsc_id AND k.connection = o.connection
                ON CONFLICT DO NOTHING)""")
        # pg_notify in the committing statement: delivered at COMMIT, never before.
        final = f"SELECT count(pg_notify(c, '')) FROM unnest({arg(sorted(self.wake), 'text[]')}) c"
        if not ctes:
            return final, args
        return "WITH " + ",\n".join(ctes) + "\n" + final, args


def finalize(
    changes: Changes,
    msg: MessageRow,
    status: MessageStatus,
    at: float,
    error: str | None,
    command_status: int | None,
    connection: str | None,
    detail: dict[str, Any] | None = None,
    parts: Sequence[PartRow] = (),
) -> None:
    """Give a message its final status, its timeline event and its webhook job."""
    msg.state = status.value
    msg.error = error
    msg.updated_at = at
    if command_status is not None:
        msg.command_status = command_status
    changes.touch(msg)
    event_detail = dict(detail or {})
    if error:
        event_detail.setdefault("reason", error)
    changes.event(msg.id, at, status.value, status, connection, event_detail)
    if not msg.callback_url:
        return
    payload = status_payload(
        message_id=msg.id,
        status=status,
        client_ref=msg.client_ref,
        destination=msg.destination,
        parts=[(p.part, p.smsc_id, p.state) for p in sorted(parts, key=lambda p: p.part)],
        error=error,
        at=at,
    )
    changes.webhook(WebhookKind.STATUS, msg.callback_url, payload, msg.id, at, msg.trace_context)

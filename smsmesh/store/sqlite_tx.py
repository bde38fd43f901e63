"""One SQLite write transaction and the steps every kind of write shares.

A `Tx` collects the timeline events and the connections to wake while a store
method runs; `finalize` is the one way a message reaches a final status (status,
event and webhook job together), whichever path got it there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from smsmesh.model import MessageStatus, WebhookKind
from smsmesh.store.base import WEBHOOK_WAKE
from smsmesh.store.rules import TimelineRows, dumps, status_payload


def qmarks(n: int) -> str:
    return ",".join("?" * n)


def padded_chunks(values: Sequence[str], size: int) -> Iterator[list[str]]:
    """`values` in chunks of at most `size`, each padded (its last value repeated) to a
    power of two: an `IN (...)` over them has a few statement texts for every batch
    size, which stay in the connection's statement cache."""
    for start in range(0, len(values), size):
        chunk = list(values[start : start + size])
        chunk += chunk[-1:] * ((1 << (len(chunk) - 1).bit_length()) - len(chunk))
        yield chunk


class StalePlan(Exception):
    """A batch worked out from a read outside the write lock no longer holds (another
    writer got there first): its transaction must be rolled back and the batch redone
    inside the lock."""


class Tx(TimelineRows):
    """One write transaction: the connection plus what to do once it committed."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.events = []
        self.wake: set[str] = set()
        self.orphans_possible: bool | None = None


ORPHANS_KEPT = "SELECT EXISTS (SELECT 1 FROM orphan_receipts)"


def orphans_possible(tx: Tx) -> bool:
    """Whether any receipt is kept for a submit still to come (asked once a transaction:
    nearly always none, and then no submit has to look for one)."""
    if tx.orphans_possible is None:
        found = tx.conn.execute(ORPHANS_KEPT).fetchone()
        tx.orphans_possible = bool(found[0])
    return tx.orphans_possible


INSERT_EVENT = (
    "INSERT INTO events (message_id, at, kind, status, connection, detail) VALUES (?,?,?,?,?,?)"
)
INSERT_MESSAGE = """
INSERT INTO messages (
    id, application, source, destination, text, route, targets, target_index, connection,
    state, priority, segments, attempts, not_before, expires_at, created_at, updated_at,
    client_ref, callback_url, idempotency_key, trace_context
) VALUES (?,?,?,?,?,?,?,0,?,'queued',?,?,0,0,?,?,?,?,?,?,?)
"""
INSERT_WEBHOOK = """
INSERT INTO webhooks (
    kind, url, payload, message_id, attempts, due_at, state, trace_context, created_at, updated_at
) VALUES (?,?,?,?,0,?,'pending',?,?,?)
"""


FINALIZE_MESSAGE = """
UPDATE messages SET state = ?, error = ?, updated_at = ?,
                    command_status = coalesce(?, command_status)
WHERE id = ?
"""


def finalize(
    tx: Tx,
    message_id: str,
    status: MessageStatus,
    at: float,
    error: str | None,
    command_status: int | None,
    connection: str | None,
    detail: dict[str, Any] | None = None,
    parts: Sequence[tuple[int, str, str | None]] | None = None,
    message: tuple[str | None, str | None, str, str] | None = None,
) -> None:
    """Give a message its final status, its timeline event and its webhook job.

    `parts` are (part, smsc id, state) and `message` its (callback_url, client_ref,
    destination, trace_context) when the caller has just read them.
    """
    tx.conn.execute(FINALIZE_MESSAGE, (status.value, error, at, command_status, message_id))
    tx.event(message_id, at, status.value, status, connection, final_detail(detail, error))
    if message is None:
        message = tx.conn.execute(
            "SELECT callback_url, client_ref, destination, trace_context "
            "FROM messages WHERE id = ?",
            (message_id,),
        ).fetchone()
    if not message[0]:
        return
    if parts is None:
        parts = tx.conn.execute(
            "SELECT part, smsc_id, state FROM parts WHERE message_id = ? ORDER BY part",
            (message_id,),
        ).fetchall()
    tx.conn.execute(INSERT_WEBHOOK, webhook_row(message_id, status, at, error, parts, message))
    tx.wake.add(WEBHOOK_WAKE)


def final_detail(detail: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    """The detail of a message's final timeline event: the caller's, with the reason."""
    event_detail = dict(detail or {})
    if error:
        event_detail.setdefault("reason", error)
    return event_detail


def webhook_row(
    message_id: str,
    status: MessageStatus,
    at: float,
    error: str | None,
    parts: Sequence[tuple[int, str, str | None]],
    message: tuple[str | None, str | None, str, str],
) -> tuple[Any, ...]:
    """`INSERT_WEBHOOK`'s parameters for a message's status webhook; `message` is its
    (callback_url, client_ref, destination, trace_context), with a callback_url."""
    callback_url, client_ref, destination, trace_context = message
    payload = status_payload(
        message_id=message_id,
        status=status,
        client_ref=client_ref,
        destination=destination,
        parts=parts,
        error=error,
        at=at,
    )
    return (
        WebhookKind.STATUS.value, callback_url, dumps(payload), message_id, at,
        trace_context, at, at,
    )  # fmt: skip

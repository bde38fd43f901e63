"""Delivery receipt correlation on PostgreSQL: the SQLite store's rules, batched.

Matching is the same as `sqlite_receipts` (every id form of every part is a key in
part_keys under its receipt scope; among several candidates the reading the scope has
shown before wins, then the closest id, then a part still waiting, then the latest
submit; a receipt that matches nothing yet waits in orphan_receipts for its submit).
What differs is how it meets the database: one query finds the candidates of a whole
batch, one locks their messages, one loads their parts; the rules then run in memory,
one receipt after the other, and `Changes.flush` writes the outcome.

Receipts of one scope (a connection, or its receipt group) and the submits they may
belong to are serialised by a transaction-scoped advisory lock per scope
(`lock_connections`, named for the common case), taken by both `record_receipts` and
`record_submits` before they read: otherwise a receipt and its submit committed at the
same moment by two sessions could each miss the other, and the receipt would wait
forever. Scopes are locked in sorted order (no deadlock).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smsmesh.model import MessageStatus, Receipt, ReceiptMatch, ReceiptState
from smsmesh.smpp.receipt import id_candidates
from smsmesh.store.postgres_tx import MESSAGE_COLUMNS, Changes, MessageRow, PartRow, finalize
from smsmesh.store.rules import (
    MatchMode,
    State,
    canonical_smsc_id,
    final_outcome,
    has_several_readings,
    match_mode,
    match_quality,
    public_status,
    receipt_detail,
)

if TYPE_CHECKING:
    from smsmesh.store.postgres_tx import Conn

PART_COLUMNS = "message_id, part, connection, smsc_id, smsc_key, state, error_code, updated_at"


def lock_key(schema: str, connection: str) -> int:
    """A stable signed 64-bit advisory lock key for one connection's receipts."""
    digest = hashlib.sha256(f"smsmesh.receipts\0{schema}\0{connection}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def lock_connections(conn: Conn, schema: str, names: Iterable[str]) -> None:
    keys = sorted({lock_key(schema, name) for name in names})
    if keys:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) WITH ORDINALITY "
            "AS u(k, ord) ORDER BY ord",
            keys,
        )


async def lock_messages(conn: Conn, ids: Iterable[str]) -> dict[str, MessageRow]:
    """Lock and load messages (in id order, like every other locker: no deadlocks)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await conn.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
        wanted,
    )
    return {r["id"]: MessageRow.from_record(r) for r in rows}


async def load_parts(conn: Conn, ids: Iterable[str]) -> dict[str, list[PartRow]]:
    out: dict[str, list[PartRow]] = {}
    wanted = sorted(set(ids))
    if wanted:
        rows = await conn.fetch(
            f"SELECT {PART_COLUMNS} FROM parts WHERE message_id = ANY($1::text[]) "
            "ORDER BY message_id, part",
            wanted,
        )
        for r in rows:
            out.setdefault(r["message_id"], []).append(PartRow(*r.values()))
    return out


@dataclass(slots=True)
class Orphan:
    id: int
    connection: str
    smsc_id: str
    state: str
    at: float
    error_code: str | None
    raw: str | None


class Correlator:
    """Receipt matching for one store; holds what each connection taught about its ids."""

    def __init__(self) -> None:
        # Per receipt scope (a connection or its receipt group): how often each
        # hex/decimal reading decided an unambiguous receipt. What this process learned
        # from the receipts its own bind received; binds of a group learn alike.
        self._modes: dict[str, dict[MatchMode, int]] = {}

    async def record(
        self, conn: Conn, schema: str, receipts: Sequence[Receipt]
    ) -> tuple[list[ReceiptMatch], Changes]:
        """Match and apply a batch of receipts inside the caller's transaction."""
        changes = Changes()
        keyed = [(i, r, id_candidates(r.smsc_message_id)) for i, r in enumerate(receipts)]
        keyed = [(i, r, c) for i, r, c in keyed if c[0]]  # no id: nothing could ever match
        results = [ReceiptMatch(r, None, None, None) for r in receipts]
        if not keyed:
            return results, changes
        await lock_connections(conn, schema, (r.receipt_scope for _, r, _ in keyed))
        probe = [(i, r.receipt_scope, key) for i, r, cands in keyed for key in cands]
        found = await conn.fetch(
            """SELECT DISTINCT q.ord, k.message_id, k.part
               FROM unnest($1::int[], $2::text[], $3::text[]) AS q(ord, connection, key)
               JOIN part_keys k ON k.connection = q.connection AND k.key = q.key""",
            [p[0] for p in probe],
            [p[1] for p in probe],
            [p[2] for p in probe],
        )
        messages = await lock_messages(conn, (r["message_id"] for r in found))
        parts = await load_parts(conn, messages)
        by_key = {(p.message_id, p.part): p for rows in parts.values() for p in rows}
        candidates: dict[int, list[PartRow]] = {}
        for r in found:
            part = by_key.get((r["message_id"], r["part"]))
            if part is not None:  # keys of a purged message are no match
                candidates.setdefault(r["ord"], []).append(part)
        for i, receipt, cands in keyed:
            rows = candidates.get(i)
            if not rows:
                changes.new_orphans.append(receipt)
                continue
            part = self._choose(receipt.receipt_scope, cands[0], rows)
            msg = messages[part.message_id]
            status = apply_receipt(changes, msg, parts[msg.id], part, receipt, late=False)
            trace_context = json.loads(msg.trace_context)
            results[i] = ReceiptMatch(receipt, msg.id, part.part, status, trace_context)
        return results, changes

    def _choose(self, connection: str, received: str, rows: list[PartRow]) -> PartRow:
        seen = self._modes.setdefault(connection, {})
        if len(rows) == 1 and has_several_readings(received):
            # An unambiguous match of an id that hex and decimal read differently
            # teaches how this connection's SMSC writes its ids.
            mode = match_mode(rows[0].smsc_key, received)
            seen[mode] = seen.get(mode, 0) + 1

        def rank(p: PartRow) -> tuple[int, int, bool, float, str, int]:
            evidence = seen.get(match_mode(p.smsc_key, received), 0)
            final = p.state is not None and ReceiptState(p.state).is_final
            return (
                -evidence,
                match_quality(p.smsc_key, received),
                final,
                -p.updated_at,
                p.message_id,
                p.part,
            )

        return min(rows, key=rank)


def apply_receipt(
    changes: Changes,
    msg: MessageRow,
    parts: list[PartRow],
    part: PartRow,
    receipt: Receipt,
    *,
    late: bool,
) -> MessageStatus:
    """Record a matched receipt on its part; finalise the message when all parts are."""
    if part.state is not None and (
        ReceiptState(part.state).is_final or part.state == receipt.state.value
    ):
        return public_status(msg.state)  # a repeat: nothing changes
    part.state = receipt.state.value
    part.error_code = receipt.error_code
    part.updated_at = receipt.at
    changes.put_part(part)
    detail = receipt_detail(part.part, receipt, late=late)
    changes.event(msg.id, receipt.at, "receipt", None, receipt.connection, detail)
    if msg.state != State.SUBMITTED or not receipt.state.is_final:
        return public_status(msg.state)
    outcome = final_outcome([(p.part, p.state, p.error_code) for p in parts])
    if outcome is None:
        return MessageStatus.SUBMITTED
    status, error = outcome
    finalize(changes, msg, status, receipt.at, error, None, receipt.connection, parts=parts)
    return status


async def load_orphans(
    conn: Conn, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[Orphan]]:
    """Early receipts waiting under any of the (scope, key) pairs, by pair."""
    pairs = sorted(set(wanted))
    out: dict[tuple[str, str], list[Orphan]] = {}
    if not pairs:
        return out
    rows = await conn.fetch(
        """SELECT DISTINCT k.connection, o.id, o.connection, o.smsc_id, o.state, o.at,
                           o.error_code, o.raw
           FROM unnest($1::text[], $2::text[]) AS q(scope, key)
           JOIN orphan_keys k ON k.connection = q.scope AND k.key = q.key
           JOIN orphan_receipts o ON o.id = k.orphan_id""",
        [c for c, _ in pairs],
        [k for _, k in pairs],
    )
    for r in rows:
        scope, *fields = r.values()
        orphan = Orphan(*fields)
        for key in id_candidates(orphan.smsc_id):
            out.setdefault((scope, key), []).append(orphan)
    return out


def apply_orphans(
    changes: Changes,
    msg: MessageRow,
    parts: list[PartRow],
    orphans: dict[tuple[str, str], list[Orphan]],
    scope: str,
) -> None:
    """Apply receipts that arrived (in `scope`) before this message's submit was recorded."""
    best: dict[int, tuple[int, PartRow, Orphan]] = {}  # orphan id -> quality, part, orphan
    for part in parts:
        candidates = id_candidates(part.smsc_id)
        for key in candidates:
            for orphan in orphans.get((scope, key), ()):
                if orphan.id in changes.used_orphans:
                    continue  # an earlier submit in this batch took it
                quality = match_quality(candidates[0], canonical_smsc_id(orphan.smsc_id))
                if orphan.id not in best or quality < best[orphan.id][0]:
                    best[orphan.id] = (quality, part, orphan)
    for orphan_id in sorted(best):  # in arrival order
        _, part, o = best[orphan_id]
        receipt = Receipt(o.connection, o.smsc_id, ReceiptState(o.state), o.at, o.error_code, o.raw)
        apply_receipt(changes, msg, parts, part, receipt, late=True)
        changes.used_orphans.add(orphan_id)

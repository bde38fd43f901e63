"""Delivery receipt correlation on SQLite: matching ids, applying states, orphans.

Each part's smsc id is stored under every form `id_candidates` gives (table
part_keys), so a receipt quoting any of its own forms finds the part with one
indexed lookup: hex vs decimal in both directions, with or without leading zeros.
Keys are kept per receipt scope (`smsmesh.model.receipt_scope`: the connection, or
its receipt group), the `connection` column of part_keys and orphan_keys. When
several parts match (hex/decimal readings are ambiguous for short ids), the
reading this scope has shown before wins, then the closest id. A receipt that
matches nothing yet is kept (orphan_receipts) and applied by the record_submits that
stores its part: SMSCs often send the receipt right after submit_sm_resp, before the
connector has recorded the submit.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from smsmesh.model import Event, MessageStatus, Receipt, ReceiptMatch, ReceiptState
from smsmesh.smpp.receipt import id_candidates
from smsmesh.store.base import WEBHOOK_WAKE
from smsmesh.store.rules import (
    MatchMode,
    State,
    TimelineRows,
    canonical_smsc_id,
    final_outcome,
    has_several_readings,
    match_mode,
    match_quality,
    part_outcome,
    public_status,
    receipt_detail,
)
from smsmesh.store.sqlite_submits import SubmittedRows
from smsmesh.store.sqlite_tx import (
    FINALIZE_MESSAGE,
    INSERT_WEBHOOK,
    ORPHANS_KEPT,
    StalePlan,
    Tx,
    final_detail,
    finalize,
    orphans_possible,
    padded_chunks,
    qmarks,
    webhook_row,
)

# A batch's receipts are looked up with one query per this many candidate keys: one
# statement per receipt cost more than the lookups themselves (12 vs 5 us a receipt).
_KEYS_PER_LOOKUP = 512

# A planned receipt's writes find nothing to update (and so tell the plan is stale)
# unless the part still has no receipt and its message is still submitted: a final
# receipt's message update checks the message, an intermediate one's part update does.
_APPLY_TO_PART = """
UPDATE parts SET state = ?, error_code = ?, updated_at = ?
WHERE message_id = ? AND part = ? AND state IS NULL
"""
_APPLY_TO_PART_OF_SUBMITTED = (
    _APPLY_TO_PART + "  AND EXISTS (SELECT 1 FROM messages WHERE id = ? AND state = 'submitted')"
)
_FINALIZE_SUBMITTED = FINALIZE_MESSAGE + "  AND state = 'submitted'"

# Everything a receipt's match needs, per part the key leads to. The part count tells
# whether a final receipt finalises its message.
_LOOKUP = """
SELECT k.key, k.message_id, k.part, p.smsc_key, p.state, p.updated_at, m.state,
       m.trace_context, p.smsc_id, m.callback_url, m.client_ref, m.destination,
       (SELECT count(*) FROM parts q WHERE q.message_id = k.message_id)
FROM part_keys k
JOIN parts p ON p.message_id = k.message_id AND p.part = k.part
JOIN messages m ON m.id = k.message_id
WHERE k.connection = ? AND k.key IN ({})
"""


# The detail key under which a final status event keeps the receipt that caused it, when
# the two share one row (`plan`); never a key of a detail the API shows (`timeline`).
_FINALISING_RECEIPT = "~receipt"


def timeline(rows: Sequence[tuple[float, str, str | None, str | None, str]]) -> list[Event]:
    """A message's timeline from its event rows (at, kind, status, connection, detail),
    in order. A final status row that carries its receipt (one row instead of two saves
    ~7 us a receipt) becomes the "receipt" event followed by the status event, exactly
    as if both had been stored."""
    events: list[Event] = []
    for at, kind, status, connection, detail_json in rows:
        detail = json.loads(detail_json)
        receipt = detail.pop(_FINALISING_RECEIPT, None) if status else None
        if receipt is not None:
            events.append(Event(at, "receipt", None, connection, receipt))
        events.append(
            Event(at, kind, MessageStatus(status) if status else None, connection, detail)
        )
    return events


class ReceiptPlan(TimelineRows):
    """The writes and results `ReceiptCorrelator.plan` worked out for a receipt batch."""

    def __init__(self, receipts: Sequence[Receipt]) -> None:
        self.receipts = receipts
        self.results: list[ReceiptMatch | None] = []  # None: left to `record`
        self.later: list[int] = []  # indexes of the receipts left to `record`
        self.part_updates: list[tuple[str, str | None, float, str, int]] = []  # final
        self.intermediate_updates: list[tuple[str, str | None, float, str, int, str]] = []
        self.finals: list[tuple[str, str | None, float, None, str]] = []
        self.events = []
        self.webhooks: list[tuple[Any, ...]] = []
        self.lessons: list[tuple[str, str, str]] = []  # (scope, stored key, received key)


@dataclass(frozen=True, slots=True)
class _Known:
    """Facts about a matched part that the match query read along the way."""

    smsc_id: str
    only_part: bool  # the message has this one part
    message: tuple[str | None, str | None, str, str]  # callback_url, client_ref, to, trace


def _add_fresh(
    found: dict[tuple[str, str], list[tuple[Any, ...]]],
    fresh: SubmittedRows,
    scopes: Sequence[str],
    candidates: Sequence[tuple[str, ...]],
) -> None:
    """Add to `found` the lookup rows (as `_LOOKUP` will read them once written) of the
    parts of the planned submits `fresh`, under the keys the batch's receipts ask for."""
    wanted = {(scope, key) for scope, keys in zip(scopes, candidates, strict=True) for key in keys}
    parts = {(row[0], row[1]): row for row in fresh.parts}
    counts = {message_id: len(parts_) for message_id, _, parts_ in fresh.submitted}
    for scope, key, message_id, part in fresh.keys:
        message = fresh.fresh.get(message_id)
        if message is None or (scope, key) not in wanted:
            continue
        _, _, _, smsc_id, smsc_key, _, _, at = parts[message_id, part]
        callback_url, client_ref, destination, trace = message
        found.setdefault((scope, key), []).append(
            (key, message_id, part, smsc_key, None, at, State.SUBMITTED, trace, smsc_id,
             callback_url, client_ref, destination, counts[message_id])
        )  # fmt: skip


class ReceiptCorrelator:
    """Receipt matching for one store; lives on the store's thread with its transactions."""

    def __init__(self) -> None:
        # Per receipt scope (a connection or its receipt group): how often each
        # hex/decimal reading decided an unambiguous receipt. What this process learned
        # from the receipts its own bind received; binds of a group learn alike.
        self._modes: dict[str, dict[MatchMode, int]] = {}

    def plan(
        self,
        conn: sqlite3.Connection,
        receipts: Sequence[Receipt],
        fresh: SubmittedRows | None = None,
    ) -> ReceiptPlan:
        """Work out a batch of receipts from a read: what to write, and the results.

        The common case, a receipt whose id leads to one part that has no receipt yet,
        of a one-part submitted message no other receipt of the batch touches, is
        decided here from one lookup for the whole batch. Every other receipt (unknown
        id, several candidate parts, a repeat, a multi-part message, two receipts for
        one message) is left to `record`, one at a time, inside the write.

        Called outside a write transaction (a read needs no lock in WAL mode), so the
        write lock that the routers' accepts wait for is held only for the writes; the
        writes check that what was read still holds (see `apply`).

        `fresh` are the planned submits of the same transaction, written before these
        receipts: a receipt that came right behind its submit_sm_resp finds its part
        among them, as if they were stored already.
        """
        candidates = [id_candidates(r.smsc_message_id) for r in receipts]
        scopes = [r.receipt_scope for r in receipts]
        found = self._lookup(conn, scopes, candidates)
        # A fresh message's final receipt is written with its submit (`finish`) unless
        # a receipt kept for a later submit might be its own and must come first.
        finishing: SubmittedRows | None = None
        if fresh is not None and fresh.fresh:
            _add_fresh(found, fresh, scopes, candidates)
            if not conn.execute(ORPHANS_KEPT).fetchone()[0]:
                finishing = fresh
        matched: list[dict[tuple[str, int], tuple[Any, ...]]] = []
        receipts_per_message: dict[str, int] = {}
        for scope, keys in zip(scopes, candidates, strict=True):
            parts: dict[tuple[str, int], tuple[Any, ...]] = {}
            for key in keys:
                for row in found.get((scope, key), ()):
                    parts[row[1], row[2]] = row
            matched.append(parts)
            for message_id in {message_id for message_id, _ in parts}:
                receipts_per_message[message_id] = receipts_per_message.get(message_id, 0) + 1

        plan = ReceiptPlan(receipts)
        for n, (receipt, scope, keys, parts) in enumerate(
            zip(receipts, scopes, candidates, matched, strict=True)
        ):
            only = next(iter(parts.values())) if len(parts) == 1 else None
            if (
                only is None
                or not keys[0]
                or only[4] is not None  # the part has a receipt already
                or only[6] != State.SUBMITTED
                or only[12] != 1  # several parts: the message's outcome needs them all
                or receipts_per_message[only[1]] > 1
            ):
                plan.results.append(None)
                plan.later.append(n)
                continue
            _, message_id, part, smsc_key, _, _, _, trace_json, smsc_id = only[:9]
            plan.lessons.append((scope, smsc_key, keys[0]))
            state = receipt.state
            update = (state.value, receipt.error_code, receipt.at, message_id, part)
            detail = receipt_detail(part, receipt, late=False)
            status = MessageStatus.SUBMITTED
            if not state.is_final:
                plan.intermediate_updates.append((*update, message_id))
                plan.event(message_id, receipt.at, "receipt", None, receipt.connection, detail)
            else:
                outcome = part_outcome(part, state, receipt.error_code)
                assert outcome is not None  # final
                status, error = outcome
                if finishing is not None and message_id in finishing.fresh:
                    finishing.finish(
                        message_id, state.value, receipt.error_code, receipt.at,
                        status.value, error,
                    )  # fmt: skip
                else:
                    plan.part_updates.append(update)
                    plan.finals.append((status.value, error, receipt.at, None, message_id))
                # The receipt and the status it gives the message: one stored row, read
                # back as the two timeline events (see `timeline`).
                merged = {**final_detail(None, error), _FINALISING_RECEIPT: detail}
                plan.event(message_id, receipt.at, status.value, status, receipt.connection, merged)
                if only[9]:  # callback_url
                    plan.webhooks.append(
                        webhook_row(
                            message_id, status, receipt.at, error,
                            [(part, smsc_id, state.value)], (*only[9:12], trace_json),
                        )
                    )  # fmt: skip
            match = ReceiptMatch(receipt, message_id, part, status, json.loads(trace_json))
            plan.results.append(match)
        return plan

    def apply(self, tx: Tx, plan: ReceiptPlan) -> list[ReceiptMatch]:
        """Write a plan; raises StalePlan, to be rolled back, when a part or message it
        decided on has changed since it was read (another writer got there first)."""
        for sql, rows in (
            (_APPLY_TO_PART_OF_SUBMITTED, plan.intermediate_updates),
            (_APPLY_TO_PART, plan.part_updates),
            (_FINALIZE_SUBMITTED, plan.finals),
        ):
            if rows and tx.conn.executemany(sql, rows).rowcount != len(rows):
                raise StalePlan
        if plan.webhooks:
            tx.conn.executemany(INSERT_WEBHOOK, plan.webhooks)
            tx.wake.add(WEBHOOK_WAKE)
        tx.events.extend(plan.events)
        # What the batch's unambiguous matches taught, before the receipts left to
        # `record` are ranked: as if the batch had been taken one receipt at a time.
        for scope, stored_key, received in plan.lessons:
            self._learn(scope, stored_key, received)
        results = plan.results
        for n in plan.later:
            results[n] = self.record(tx, plan.receipts[n])
        return [r for r in results if r is not None]

    def _lookup(
        self,
        conn: sqlite3.Connection,
        scopes: Sequence[str],
        candidates: Sequence[tuple[str, ...]],
    ) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
        """The lookup rows of every candidate key of a batch, by (scope, key)."""
        keys_by_scope: dict[str, set[str]] = {}
        for scope, keys in zip(scopes, candidates, strict=True):
            if keys[0]:
                keys_by_scope.setdefault(scope, set()).update(keys)
        found: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for scope, key_set in keys_by_scope.items():
            for chunk in padded_chunks(sorted(key_set), _KEYS_PER_LOOKUP):
                sql = _LOOKUP.format(qmarks(len(chunk)))
                for row in conn.execute(sql, (scope, *chunk)):
                    found.setdefault((scope, row[0]), []).append(row)
        return found

    def _learn(self, scope: str, stored_key: str, received: str) -> None:
        """An unambiguous match of an id that hex and decimal read differently teaches
        how this scope's SMSC writes its ids."""
        if has_several_readings(received):
            seen = self._modes.setdefault(scope, {})
            mode = match_mode(stored_key, received)
            seen[mode] = seen.get(mode, 0) + 1

    def record(self, tx: Tx, receipt: Receipt) -> ReceiptMatch:
        """Match one receipt to a part and apply it, or keep it for a later submit."""
        candidates = id_candidates(receipt.smsc_message_id)
        received = candidates[0]
        if not received:
            return ReceiptMatch(receipt, None, None, None)  # no id: nothing could ever match
        found = self._lookup(tx.conn, [receipt.receipt_scope], [candidates])
        # One row per part, whichever of its keys led to it, without the key.
        by_part = {(row[1], row[2]): row[1:] for rows in found.values() for row in rows}
        rows = list(by_part.values())
        if not rows:
            self._keep_orphan(tx, receipt, candidates)
            return ReceiptMatch(receipt, None, None, None)
        if len(rows) == 1:
            self._learn(receipt.receipt_scope, rows[0][2], received)
        seen = self._modes.get(receipt.receipt_scope, {})

        def rank(row: tuple[Any, ...]) -> tuple[int, int, bool, float]:
            # The reading this connection has shown most, then the closest id; among
            # equals a part still waiting beats a finished one (SMSCs reuse ids), then
            # the most recent submit.
            evidence = seen.get(match_mode(row[2], received), 0)
            final = row[3] is not None and ReceiptState(row[3]).is_final
            return (-evidence, match_quality(row[2], received), final, -row[4])

        best = min(rows, key=rank)
        message_id, part, _, part_state, _, message_state, trace_json, smsc_id = best[:8]
        # What finalising needs, read with the match: a one-part message's parts are
        # this part alone, and the message's callback fields are at hand.
        known = _Known(smsc_id, best[11] == 1, (*best[8:11], trace_json))
        status = self._apply_receipt(
            tx, message_id, part, receipt, part_state, message_state, late=False, known=known
        )
        return ReceiptMatch(receipt, message_id, part, status, json.loads(trace_json))

    def _keep_orphan(self, tx: Tx, receipt: Receipt, candidates: Sequence[str]) -> None:
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
            [(receipt.receipt_scope, key, cursor.lastrowid) for key in candidates],
        )
        tx.orphans_possible = True

    def _apply_receipt(
        self,
        tx: Tx,
        message_id: str,
        part: int,
        receipt: Receipt,
        part_state: str | None,
        message_state: str,
        *,
        late: bool,
        known: _Known | None = None,
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
        detail = receipt_detail(part, receipt, late=late)
        tx.event(message_id, receipt.at, "receipt", None, receipt.connection, detail)
        if message_state != State.SUBMITTED or not receipt.state.is_final:
            return public_status(message_state)
        if known is not None and known.only_part:
            parts = [(part, known.smsc_id, receipt.state.value, receipt.error_code)]
        else:
            parts = tx.conn.execute(
                "SELECT part, smsc_id, state, error_code FROM parts "
                "WHERE message_id = ? ORDER BY part",
                (message_id,),
            ).fetchall()
        outcome = final_outcome([(p, state, err) for p, _, state, err in parts])
        if outcome is None:
            return MessageStatus.SUBMITTED
        status, error = outcome
        finalize(
            tx, message_id, status, receipt.at, error, None, receipt.connection,
            parts=[(p, sid, state) for p, sid, state, _ in parts],
            message=known.message if known is not None else None,
        )  # fmt: skip
        return status

    def apply_orphans(
        self, tx: Tx, message_id: str, scope: str, parts: list[tuple[int, str]]
    ) -> None:
        """Apply receipts that arrived (in `scope`) before this submit was recorded."""
        if not orphans_possible(tx):
            return
        best: dict[int, tuple[int, int, tuple[Any, ...]]] = {}  # orphan id -> quality, part, row
        for part, smsc_id in parts:
            candidates = id_candidates(smsc_id)
            rows = tx.conn.execute(
                f"""SELECT DISTINCT o.id, o.smsc_id, o.state, o.at, o.error_code, o.raw,
                           o.connection
                    FROM orphan_keys k JOIN orphan_receipts o ON o.id = k.orphan_id
                    WHERE k.connection = ? AND k.key IN ({qmarks(len(candidates))})""",
                (scope, *candidates),
            ).fetchall()
            for row in rows:
                quality = match_quality(candidates[0], canonical_smsc_id(row[1]))
                if row[0] not in best or quality < best[row[0]][0]:
                    best[row[0]] = (quality, part, row)
        for orphan_id in sorted(best):  # in arrival order
            _, part, (_, smsc_id, state, at, error_code, raw, received_on) = best[orphan_id]
            receipt = Receipt(received_on, smsc_id, ReceiptState(state), at, error_code, raw)
            part_state, message_state = tx.conn.execute(
                """SELECT p.state, m.state FROM parts p JOIN messages m ON m.id = p.message_id
                   WHERE p.message_id = ? AND p.part = ?""",
                (message_id, part),
            ).fetchone()
            self._apply_receipt(tx, message_id, part, receipt, part_state, message_state, late=True)
            tx.conn.execute("DELETE FROM orphan_keys WHERE orphan_id = ?", (orphan_id,))
            tx.conn.execute("DELETE FROM orphan_receipts WHERE id = ?", (orphan_id,))

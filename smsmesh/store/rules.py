"""Backend-independent rules of a message's life, shared by every `Store` implementation.

The SQL differs between SQLite and PostgreSQL; what a message's status becomes, how a
receipt is matched to a part and what a webhook carries must not. Keeping these rules
here, as pure functions, is what lets both backends pass one conformance suite.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from smsmesh.model import (
    MessageStatus,
    NewMessage,
    Receipt,
    ReceiptState,
    SubmitOutcome,
    SubmitReport,
)
from smsmesh.smpp.receipt import id_candidates

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")

# Compact JSON for stored details and payloads; one encoder, not one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def dumps(value: Any) -> str:
    """Compact JSON (unknown types as their str()) for what the store keeps."""
    return _ENCODER.encode(value)


EventRow = tuple[str, float, str, str | None, str | None, str]


def event_row(
    message_id: str,
    at: float,
    kind: str,
    status: MessageStatus | None = None,
    connection: str | None = None,
    detail: dict[str, Any] | None = None,
) -> EventRow:
    """A timeline event as a row of the events table's columns (message_id, at, kind,
    status, connection, detail): one shape on every backend."""
    status_value = status.value if status is not None else None
    return (message_id, at, kind, status_value, connection, dumps(detail) if detail else "{}")


class TimelineRows:
    """The timeline events a write collects, as `event_row`s."""

    __slots__ = ()
    events: list[EventRow]

    def event(
        self,
        message_id: str,
        at: float,
        kind: str,
        status: MessageStatus | None = None,
        connection: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.events.append(event_row(message_id, at, kind, status, connection, detail))


class State(StrEnum):
    """A message's internal state; final states share their value with `MessageStatus`."""

    QUEUED = "queued"  # waiting for a claim on `connection`
    DISPATCHING = "dispatching"  # claimed by a connector, outcome not yet reported
    SUBMITTED = "submitted"  # every part accepted by the SMSC, waiting for receipts
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"
    FAILED = "failed"


def public_status(state: str) -> MessageStatus:
    """The `MessageStatus` an API client sees for an internal state."""
    if state in (State.QUEUED, State.DISPATCHING):
        return MessageStatus.ACCEPTED
    return MessageStatus(state)


def canonical_smsc_id(smsc_id: str) -> str:
    """The form a part's smsc id is stored under (stripped, lower case)."""
    return id_candidates(smsc_id)[0]


def match_quality(stored_key: str, received_key: str) -> int:
    """How closely a receipt's id matches a stored part id (both canonical): lower is better.

    0: the same id; 1: the same after dropping leading zeros; 2: equal only when one
    side is read as hex and the other as decimal. Hex/decimal matching is inherently
    ambiguous ("10" may be ten or sixteen), so a backend that finds several candidate
    parts prefers the reading its connection has shown before (`match_mode`), then
    the closest match.
    """
    if stored_key == received_key:
        return 0
    if (stored_key.lstrip("0") or "0") == (received_key.lstrip("0") or "0"):
        return 1
    return 2


class MatchMode(StrEnum):
    """How an SMSC wrote the same id in submit_sm_resp and in the receipt."""

    SAME = "same"  # same digits (case and leading zeros aside)
    HEX_TO_DEC = "hex_to_dec"  # hex in submit_sm_resp, decimal in the receipt
    DEC_TO_HEX = "dec_to_hex"  # decimal in submit_sm_resp, hex in the receipt


def match_mode(stored_key: str, received_key: str) -> MatchMode:
    """Which reading makes a stored id and a receipt id (canonical forms) equal."""
    if match_quality(stored_key, received_key) < 2:
        return MatchMode.SAME
    if received_key.isdigit() and _as_hex(stored_key) == int(received_key):
        return MatchMode.HEX_TO_DEC
    return MatchMode.DEC_TO_HEX


def has_several_readings(received_key: str) -> bool:
    """Whether an id (canonical form) reads differently as hex and as decimal, so that a
    match of it can teach a mode; the same as `len(id_candidates(stripped)) > 1`,
    without building them: digits read differently from two digits on (hex "10" is
    sixteen), other hex ids always do, as long as they are not too long to convert."""
    stripped = received_key.lstrip("0") or "0"
    if stripped.isdigit():
        return len(stripped) > 1
    return len(stripped) <= 32 and _HEX_DIGITS.issuperset(stripped)


def _as_hex(key: str) -> int | None:
    try:
        return int(key, 16)
    except ValueError:
        return None


def final_outcome(
    part_states: Sequence[tuple[int, str | None, str | None]],
) -> tuple[MessageStatus, str | None] | None:
    """The final status of a message from its parts `(part, receipt state, error code)`.

    None while any part lacks a final receipt. All delivered: `delivered`. Otherwise
    the status of the first failed part in part order, with a reason naming it.
    """
    if len(part_states) == 1:  # most messages: no sorting, no list
        part, state, error_code = part_states[0]
        return part_outcome(part, ReceiptState(state), error_code) if state else None
    parsed = [(part, ReceiptState(s) if s else None, err) for part, s, err in sorted(part_states)]
    if not parsed or any(s is None or not s.is_final for _, s, _ in parsed):
        return None
    for part, state, error_code in parsed:
        assert state is not None
        if state is not ReceiptState.DELIVERED:
            return part_outcome(part, state, error_code)
    return MessageStatus.DELIVERED, None


def part_outcome(
    part: int, state: ReceiptState, error_code: str | None
) -> tuple[MessageStatus, str | None] | None:
    """What one part's receipt state means for its message: None while not final,
    else the status and, for anything but delivered, a reason naming the part."""
    if not state.is_final:
        return None
    if state is ReceiptState.DELIVERED:
        return MessageStatus.DELIVERED, None
    reason = f"part {part}: {state.value}"
    if error_code:
        reason += f" (err {error_code})"
    return state.message_status(), reason


def status_payload(
    *,
    message_id: str,
    status: MessageStatus,
    client_ref: str | None,
    destination: str,
    parts: Sequence[tuple[int, str, str | None]],
    error: str | None,
    at: float,
) -> dict[str, Any]:
    """The JSON body of a `message.status` webhook; `parts` are (part, smsc id, state)."""
    # Field names follow the HTTP API (`to`, `from`), so an application reads one vocabulary.
    return {
        "event": "message.status",
        "id": message_id,
        "status": status.value,
        "client_ref": client_ref,
        "to": destination,
        "parts": [{"part": p, "smsc_id": sid, "state": st} for p, sid, st in parts],
        "error": error,
        "at": at,
    }


def inbound_payload(
    *,
    message_id: str,
    connection: str,
    source: str,
    destination: str,
    text: str,
    received_at: float,
    application: str | None,
) -> dict[str, Any]:
    """The JSON body of a `message.inbound` webhook."""
    return {
        "event": "message.inbound",
        "id": message_id,
        "connection": connection,
        "from": source,
        "to": destination,
        "text": text,
        "received_at": received_at,
        "application": application,
    }


def check_messages(messages: Sequence[NewMessage]) -> None:
    """Refuse input no backend could store sensibly (a bug in the caller, not bad data)."""
    for m in messages:
        if not m.id:
            raise ValueError("accept: a message has an empty id")
        if not m.targets:
            raise ValueError(f"accept: message {m.id} has no target connection")


def check_reports(reports: Sequence[SubmitReport]) -> None:
    """A SUBMITTED report must name one SMSC id per part, or receipts could never match."""
    for r in reports:
        if r.outcome is SubmitOutcome.SUBMITTED and (
            not r.smsc_message_ids or any(not sid.strip() for sid in r.smsc_message_ids)
        ):
            raise ValueError(
                f"record_submits: SUBMITTED report for {r.message_id} needs one non-empty "
                "smsc message id per part"
            )


def receipt_detail(part: int, receipt: Receipt, *, late: bool) -> dict[str, Any]:
    """The timeline detail of a receipt applied to a part (same on every backend)."""
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
    return detail


# Retention: the message states that are final, as an SQL list for `state IN (...)`.
FINAL_STATES_SQL = ", ".join(f"'{status.value}'" for status in MessageStatus if status.is_final)


# Retention: the distinct receipt scopes in part_keys' leading key column, one index
# probe each (a loose index scan; the same SQL on SQLite and PostgreSQL). Keys are
# stored under the scope (the connection or `group:<name>`), which parts do not record.
RECEIPT_SCOPES_SQL = """
WITH RECURSIVE scope(name) AS (
    SELECT (SELECT min(connection) FROM part_keys)
    UNION ALL
    SELECT (SELECT min(connection) FROM part_keys WHERE connection > scope.name)
    FROM scope WHERE scope.name IS NOT NULL
)
SELECT name FROM scope WHERE name IS NOT NULL
"""


def part_key_rows(
    parts: Sequence[tuple[str, int, str]], scopes: Sequence[str]
) -> list[tuple[str, str, str, int]]:
    """(scope, key, message_id, part) of every key the parts (message_id, part, smsc_id)
    may be stored under: each id form, in each scope."""
    return [
        (scope, key, message_id, part)
        for message_id, part, smsc_id in parts
        for key in id_candidates(smsc_id)
        for scope in scopes
    ]

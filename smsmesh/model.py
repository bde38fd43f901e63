"""Domain types of a message's life, shared by router, connector and store.

These are plain, immutable values: no I/O, no framework. The store persists them,
the router creates them, the connector reports what happened to them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any


class MessageStatus(StrEnum):
    """Where a message (all of its parts taken together) stands."""

    ACCEPTED = "accepted"  # durable, waiting for (or being handed to) a connection
    SUBMITTED = "submitted"  # every part accepted by the SMSC, waiting for receipts
    DELIVERED = "delivered"  # every part delivered to the handset
    UNDELIVERABLE = "undeliverable"  # the network could not deliver it
    EXPIRED = "expired"  # validity ran out before delivery
    REJECTED = "rejected"  # refused by the SMSC or the network, will not be retried
    FAILED = "failed"  # smsmesh gave up (no route left, attempts exhausted)

    @property
    def is_final(self) -> bool:
        return self not in (MessageStatus.ACCEPTED, MessageStatus.SUBMITTED)


FINAL_STATUSES = frozenset(s for s in MessageStatus if s.is_final)


class ReceiptState(StrEnum):
    """A delivery receipt's state, normalised from SMPP message_state / `stat:` text."""

    ENROUTE = "enroute"
    DELIVERED = "delivered"
    EXPIRED = "expired"
    DELETED = "deleted"
    UNDELIVERABLE = "undeliverable"
    ACCEPTED = "accepted"
    UNKNOWN = "unknown"
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self not in (ReceiptState.ENROUTE, ReceiptState.ACCEPTED, ReceiptState.UNKNOWN)

    def message_status(self) -> MessageStatus:
        """The message status a final receipt state leads to."""
        return _RECEIPT_TO_STATUS.get(self, MessageStatus.SUBMITTED)


_RECEIPT_TO_STATUS = {
    ReceiptState.DELIVERED: MessageStatus.DELIVERED,
    ReceiptState.EXPIRED: MessageStatus.EXPIRED,
    ReceiptState.DELETED: MessageStatus.UNDELIVERABLE,
    ReceiptState.UNDELIVERABLE: MessageStatus.UNDELIVERABLE,
    ReceiptState.REJECTED: MessageStatus.REJECTED,
}


class Priority(IntEnum):
    """Priority lanes: a higher value is claimed first."""

    BULK = 0
    NORMAL = 1
    HIGH = 2  # one-time passwords, alerts


def new_message_id() -> str:
    """A sortable, unique message id: 48-bit milliseconds + 80 random bits, 26 base32 chars."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    out = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        out.append(alphabet[rem])
    return "".join(reversed(out))


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message the router has validated and routed, to be made durable."""

    id: str
    application: str
    source: str  # sender address as it will go on the wire (digits, or alphanumeric)
    destination: str  # E.164 digits without '+'
    text: str
    route: str  # name of the SmsRoute that matched
    targets: tuple[str, ...]  # ordered SmppConnection names; targets[0] is tried first
    expires_at: float  # unix seconds
    created_at: float  # unix seconds
    priority: Priority = Priority.NORMAL
    segments: int = 1  # number of SMS parts the text needs (informational)
    client_ref: str | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    trace_context: dict[str, str] = field(default_factory=dict)  # W3C traceparent etc.


@dataclass(frozen=True, slots=True)
class AcceptResult:
    message_id: str
    duplicate: bool  # True when the idempotency key was already used: id is the earlier one


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """A message handed to a connector for submission."""

    id: str
    application: str
    source: str
    destination: str
    text: str
    priority: Priority
    expires_at: float
    attempts: int  # submission attempts before this one
    client_ref: str | None
    trace_context: dict[str, str]


class SubmitOutcome(StrEnum):
    SUBMITTED = "submitted"  # every part got submit_sm_resp ESME_ROK
    REQUEUE = "requeue"  # try again later on the same target (or the next, see failover)
    REJECTED = "rejected"  # permanent refusal by the SMSC (e.g. invalid destination)
    FAILED = "failed"  # give up for another reason


@dataclass(frozen=True, slots=True)
class SubmitReport:
    """What a connector learned about one claimed message."""

    message_id: str
    connection: str
    at: float
    outcome: SubmitOutcome
    smsc_message_ids: tuple[str, ...] = ()  # one per part, in part order (SUBMITTED)
    command_status: int | None = None  # the SMPP status that decided the outcome
    error: str | None = None  # human-readable reason, no secrets, no message text
    retry_at: float | None = None  # REQUEUE: not before this time
    failover: bool = False  # REQUEUE: move to the next target instead of retrying this one
    # REQUEUE: False when nothing was sent (stopping, session lost before sending), so the
    # claim does not use up one of the message's attempts.
    attempted: bool = True
    # SUBMITTED: when not empty, becomes the message's stored trace context (the submit
    # span's W3C context and submit time), which later receipts are linked to.
    trace_context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt received on a connection, before correlation."""

    connection: str
    smsc_message_id: str  # as the SMSC wrote it in the receipt
    state: ReceiptState
    at: float
    error_code: str | None = None  # network error code / `err:` field, as text
    raw: str | None = None  # the receipt text, for the timeline


@dataclass(frozen=True, slots=True)
class ReceiptMatch:
    receipt: Receipt
    message_id: str | None  # None while no submit with that id is known (kept for later)
    part: int | None
    message_status: MessageStatus | None  # the message's status after this receipt
    # The matched message's stored trace context (see SubmitReport.trace_context).
    trace_context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A mobile-originated message received on a connection."""

    id: str
    connection: str
    source: str
    destination: str
    text: str
    received_at: float
    application: str | None  # whose webhook gets it; None if no application claims it
    trace_context: dict[str, str] = field(default_factory=dict)
    # The application's MO webhook URL; the store queues a message.inbound job only when set.
    webhook_url: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One entry in a message's timeline."""

    at: float
    kind: str  # accepted, claimed, submitted, requeued, receipt, delivered, expired, webhook, ...
    status: MessageStatus | None = None  # message status after the event, when it changed
    connection: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A message as `GET /v1/messages/{id}` shows it."""

    id: str
    application: str
    source: str
    destination: str
    status: MessageStatus
    route: str
    targets: tuple[str, ...]
    connection: str  # current or last target
    priority: Priority
    segments: int
    attempts: int
    created_at: float
    updated_at: float
    expires_at: float
    client_ref: str | None
    callback_url: str | None
    smsc_message_ids: tuple[str, ...]
    events: tuple[Event, ...]


class WebhookKind(StrEnum):
    STATUS = "message.status"  # a message reached a final status
    INBOUND = "message.inbound"  # a mobile-originated message


@dataclass(frozen=True, slots=True)
class WebhookJob:
    """A durable outbox entry: one JSON POST to an application's URL."""

    id: int
    kind: WebhookKind
    url: str
    payload: dict[str, Any]
    message_id: str
    attempts: int  # failed attempts so far
    trace_context: dict[str, str]


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """How one leased webhook job ended: delivered, to retry at `retry_at`, or given up."""

    job_id: int
    ok: bool
    at: float
    retry_at: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """Live state a connector publishes about its bind (read by routers for failover)."""

    connection: str
    bound: bool
    updated_at: float
    window_in_use: int = 0
    window_size: int = 0
    tps_limit: float | None = None
    throttled_until: float | None = None
    last_error: str | None = None

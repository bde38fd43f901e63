"""Domain types of a message's life, shared by router, connector and store.

These are plain, immutable values: no I/O, no framework. The store persists them,
the router creates them, the connector reports what happened to them.
"""

from __future__ import annotations

import base64
import json
import math
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


_B32_TO_SORTABLE = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz"
)


def new_message_id(at: float | None = None) -> str:
    """A unique id that sorts by creation time: 48-bit milliseconds + 80 random bits.

    26 characters of Crockford's base32 (lower case, no i/l/o/u), in an alphabet whose
    ASCII order matches the value order, so ids sort like the moments they were made
    (`at`, unix seconds, default now). The stores rely on it: a message's id is never
    later than its `created_at`, so retention bounds its scans by id.
    """
    return _sortable_id(time.time() if at is None else at, os.urandom(10))


def first_message_id_at(at: float) -> str:
    """The smallest id `new_message_id` can make at `at` (to the millisecond): every id
    made earlier sorts below it."""
    return _sortable_id(at, bytes(10))


def _sortable_id(at: float, tail: bytes) -> str:
    millis = max(0, int(at * 1000)).to_bytes(6, "big")
    return base64.b32encode(millis + tail)[:26].translate(_B32_TO_SORTABLE).decode()


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
    # SUBMITTED: the connection's receipt group (SmppConnection `receiptGroup`); its
    # receipts may come back on any bind of the group. Empty: this connection alone.
    receipt_group: str = ""

    @property
    def receipt_scope(self) -> str:
        """Where this submit's receipts are looked for (see `receipt_scope`)."""
        return receipt_scope(self.connection, self.receipt_group)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt received on a connection, before correlation."""

    connection: str
    smsc_message_id: str  # as the SMSC wrote it in the receipt
    state: ReceiptState
    at: float
    error_code: str | None = None  # network error code / `err:` field, as text
    raw: str | None = None  # the receipt text, for the timeline
    receipt_group: str = ""  # the receiving connection's receipt group, if any

    @property
    def receipt_scope(self) -> str:
        """The submits this receipt may belong to (see `receipt_scope`)."""
        return receipt_scope(self.connection, self.receipt_group)


def receipt_scope(connection: str, receipt_group: str) -> str:
    """The key under which submits and receipts are matched.

    SMSC message ids are only unique per SMSC, so a receipt is matched against the
    submits of its own connection, or of every connection in its receipt group (binds
    of one SMSC account, such as a transmitter and a receiver). Connection names are
    Kubernetes names, which never contain ':', so a group can never pose as one.
    """
    return f"group:{receipt_group}" if receipt_group else connection


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


# -- search and statistics ------------------------------------------------------------------

SEARCH_DEFAULT_LIMIT = 50
SEARCH_MAX_LIMIT = 500
_CURSOR_MAX_CHARS = 200


class QueryError(ValueError):
    """A search or statistics request that cannot run; `field` names the bad parameter.

    Raised while building the query, before any store is touched, so the API can answer
    400 with the parameter's name and every backend sees only valid queries.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def encode_cursor(created_at: float, message_id: str) -> str:
    """The opaque position after (created_at, id) in newest-first order.

    Base64 of a JSON pair: floats round-trip exactly through `repr`, so the next page
    starts precisely after the last row returned, whichever backend stored it.
    """
    raw = json.dumps([created_at, message_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (created_at, id) a cursor from `encode_cursor` names; `QueryError` if it is not one."""
    if not cursor or len(cursor) > _CURSOR_MAX_CHARS:
        raise QueryError("cursor", "cursor is not one this API returned")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise QueryError("cursor", "cursor is not one this API returned") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or isinstance(value[0], bool)
        or not isinstance(value[0], int | float)
        or not isinstance(value[1], str)
        or not value[1]
        or not math.isfinite(value[0])
    ):
        raise QueryError("cursor", "cursor is not one this API returned")
    return float(value[0]), value[1]


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """A search over one application's messages, newest first, a page at a time.

    Every filter is optional except the application: an application only ever sees its
    own messages, and the store's search indexes lead with it. `statuses` are public
    statuses (any of them matches); `connection` is the current or last target;
    `since` (inclusive) and `until` (exclusive) bound `created_at`. `cursor` is
    `MessagePage.next_cursor` of the previous page (keyset pagination on
    (created_at, id), so pages stay stable while new messages arrive). Invalid values
    raise `QueryError` here, not in a backend.
    """

    application: str
    destination: str | None = None
    statuses: frozenset[MessageStatus] = frozenset()
    connection: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = SEARCH_DEFAULT_LIMIT
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not self.application:
            raise QueryError("application", "a search is always within one application")
        if isinstance(self.limit, bool) or not 1 <= self.limit <= SEARCH_MAX_LIMIT:
            raise QueryError("limit", f"limit must be 1 to {SEARCH_MAX_LIMIT}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise QueryError(name, f"{name} must be a finite time")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise QueryError("until", "until must be later than since")
        if self.cursor is not None:
            decode_cursor(self.cursor)

    @property
    def after(self) -> tuple[float, str] | None:
        """The decoded cursor: return only messages older than this (created_at, id)."""
        return None if self.cursor is None else decode_cursor(self.cursor)


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """One search hit: a message's current state without its timeline."""

    id: str
    application: str
    source: str
    destination: str
    status: MessageStatus
    route: str
    connection: str  # current or last target
    priority: Priority
    segments: int
    attempts: int
    created_at: float
    updated_at: float
    client_ref: str | None


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One page of a search; `next_cursor` is None on the last page."""

    messages: tuple[MessageSummary, ...]
    next_cursor: str | None


# Status changes counted by `Store.message_stats`, in the order charts show them.
STATS_STATUSES: tuple[MessageStatus, ...] = tuple(MessageStatus)
STATS_MAX_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class StatsBucket:
    """How many messages reached each status in [start, start + bucket_seconds)."""

    start: float
    counts: dict[MessageStatus, int]  # every status of STATS_STATUSES, zeros included


def check_stats_window(since: float, until: float, bucket_seconds: float) -> int:
    """The number of buckets in [since, until); `QueryError` for a window nobody should ask."""
    if not (math.isfinite(since) and math.isfinite(until)):
        raise QueryError("window", "since and until must be finite times")
    if not math.isfinite(bucket_seconds) or bucket_seconds <= 0:
        raise QueryError("bucket", "bucket_seconds must be positive")
    if until <= since:
        raise QueryError("window", "until must be later than since")
    count = math.ceil((until - since) / bucket_seconds)
    if count > STATS_MAX_BUCKETS:
        raise QueryError("window", f"at most {STATS_MAX_BUCKETS} buckets per request")
    return count

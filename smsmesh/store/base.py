"""The store interface: every durable fact about a message goes through here.

One interface, several backends (embedded SQLite for local mode, PostgreSQL in a
cluster). All methods take and return batches so that a backend can turn many
messages into one transaction: callers group work (see `smsmesh.batching`) and the
store commits it once. Every method that changes state is atomic: either the whole
batch is durable when it returns, or it raised and nothing changed.

A message moves through these internal states (the public `MessageStatus` is
derived from them):

    queued --claim--> dispatching --record_submits(SUBMITTED)--> submitted
      ^                    |                                        |
      +---- REQUEUE -------+      receipts (all parts final) ------> final
                           +-- REJECTED/FAILED -> final
    queued/dispatching past expires_at --expire--> expired

Exactly one connector serves a connection at a time (the operator guarantees it),
so `recover(connection)` at connector start may safely put back what a dead
predecessor left in `dispatching`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from smsmesh.model import (
    AcceptResult,
    ClaimedMessage,
    ConnectionState,
    Event,
    InboundMessage,
    MessagePage,
    MessageQuery,
    MessageRecord,
    NewMessage,
    Receipt,
    ReceiptMatch,
    StatsBucket,
    SubmitReport,
    WebhookJob,
    WebhookResult,
)

# The wake-up name for "a webhook job may be due": not a connection name (those are
# Kubernetes names, which never contain '@'), so it cannot collide with one.
WEBHOOK_WAKE = "@webhooks"


class StoreError(Exception):
    """The store could not do what was asked (connection lost, disk full, ...)."""


class Store(abc.ABC):
    """Durable message lifecycle. Implementations: `SqliteStore`, (later) `PostgresStore`."""

    # -- lifecycle -------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create/migrate the schema. Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and wake-up resources."""

    # -- router side ------------------------------------------------------------------

    @abc.abstractmethod
    async def accept(self, messages: Sequence[NewMessage]) -> list[AcceptResult]:
        """Make messages durable as `queued` on `targets[0]`, in one transaction.

        A message whose (application, idempotency_key) was already accepted is not
        stored again: its result carries the earlier id and `duplicate=True`.
        Results are in input order. Wakes the connectors of the affected connections.
        """

    @abc.abstractmethod
    async def get_message(
        self, message_id: str, application: str | None = None
    ) -> MessageRecord | None:
        """The message with its timeline; None if unknown or owned by another application."""

    @abc.abstractmethod
    async def search_messages(self, query: MessageQuery) -> MessagePage:
        """One page of an application's messages matching `query`, newest first.

        Ordered by (created_at, id) descending; `next_cursor` is set when more match.
        Served by indexes that lead with the application (and its destination), so a
        page costs a bounded index range, not a scan of the table.
        """

    @abc.abstractmethod
    async def message_stats(
        self, application: str, since: float, until: float, bucket_seconds: float
    ) -> list[StatsBucket]:
        """How many of an application's messages reached each status, per time bucket.

        One bucket per `bucket_seconds` from `since` (inclusive) to `until` (exclusive),
        empty ones included, in time order. A message counts in the bucket of the
        timeline event that gave it the status (accepted, submitted, a final status).
        Check the window with `smsmesh.model.check_stats_window` first.
        """

    @abc.abstractmethod
    async def connection_throughput(self, since: float, until: float) -> dict[str, int]:
        """Messages submitted per connection in [since, until), every application together."""

    @abc.abstractmethod
    async def queue_depths(self) -> dict[str, int]:
        """Number of `queued` messages per connection (connections with none may be absent)."""

    @abc.abstractmethod
    async def expire(self, now: float, receipt_grace: float) -> int:
        """End every message whose validity has passed.

        `queued` messages past `expires_at`, and `submitted` messages still without
        final receipts at `expires_at + receipt_grace`, become `expired` (with a
        webhook job when they have a callback). `dispatching` messages are left to
        their connector. Returns how many messages expired.
        """

    # -- connector side ---------------------------------------------------------------

    @abc.abstractmethod
    async def recover(self, connection: str) -> int:
        """Put `dispatching` messages of `connection` back to `queued`.

        Called once by a connector when it starts, before claiming: whatever its
        predecessor claimed but never reported is sent again (possible duplicates,
        bounded by the predecessor's window). Returns how many were recovered.
        """

    @abc.abstractmethod
    async def claim(self, connection: str, limit: int, now: float) -> list[ClaimedMessage]:
        """Move up to `limit` `queued` messages of `connection` to `dispatching`.

        Only messages with `not_before <= now` and `expires_at > now`; highest
        priority first, then oldest first. Increments their attempt counter.
        """

    @abc.abstractmethod
    async def wait_for_work(self, connection: str, timeout: float) -> bool:
        """Return when work for `connection` may have arrived (True) or after `timeout` (False).

        A wake-up is a hint, not a promise: the caller always claims afterwards. A
        backend must not busy-poll: it waits on a notification (LISTEN/NOTIFY, a
        datagram socket, ...), with `timeout` as the safety net.
        """

    async def wait_for_webhooks(self, timeout: float) -> bool:
        """Return when a new webhook job may be due (True) or after `timeout` (False).

        Every write that adds a webhook job sends this wake-up once it committed, so a
        dispatcher sends a receipt's webhook at once instead of on its next poll.
        """
        return await self.wait_for_work(WEBHOOK_WAKE, timeout)

    @abc.abstractmethod
    async def record_submits(self, reports: Sequence[SubmitReport]) -> None:
        """Record what happened to claimed messages, in one transaction.

        SUBMITTED: status `submitted`, one part per smsc id (the ids receipts will
        quote); receipts that arrived before this call for those ids are applied now.
        REQUEUE: back to `queued` with `not_before = retry_at`; with `failover`, on
        the next target (none left: `failed`). After the store's attempt limit the
        message becomes `failed`. REJECTED / FAILED: final, with a webhook job.
        """

    @abc.abstractmethod
    async def record_receipts(self, receipts: Sequence[Receipt]) -> list[ReceiptMatch]:
        """Correlate delivery receipts with submitted parts, in one transaction.

        The smsc id is matched on the receipt's connection in any of the forms of
        `smsmesh.smpp.receipt.id_candidates` (hex vs decimal, leading zeros). An
        unmatched receipt is kept and applied when its submit is recorded. When every
        part has a final state, the message gets its final status (all delivered:
        `delivered`; otherwise the first failure's status) and a webhook job.
        Results are in input order. Idempotent for a repeated receipt.
        """

    async def record_outcomes(
        self, reports: Sequence[SubmitReport], receipts: Sequence[Receipt]
    ) -> list[ReceiptMatch]:
        """`record_submits(reports)`, then `record_receipts(receipts)`; results as the
        latter's. A connector's receipts often come right behind its submit reports:
        a backend should write both in one transaction, in which a receipt finds the
        part its report writes (SQLite does). This default takes two; if the second
        fails, the reports are recorded already, and recording them again when the
        caller retries changes nothing (a report for a message no longer open is
        ignored)."""
        await self.record_submits(reports)
        return await self.record_receipts(receipts)

    @abc.abstractmethod
    async def record_inbound(self, messages: Sequence[InboundMessage]) -> None:
        """Store mobile-originated messages and queue their webhooks, in one transaction."""

    @abc.abstractmethod
    async def publish_connection_state(self, state: ConnectionState) -> None:
        """Upsert the live state of a connection's bind."""

    @abc.abstractmethod
    async def connection_states(self) -> dict[str, ConnectionState]:
        """The last published state of every connection."""

    # -- webhooks ---------------------------------------------------------------------

    @abc.abstractmethod
    async def claim_webhooks(self, limit: int, now: float, lease: float) -> list[WebhookJob]:
        """Lease up to `limit` due webhook jobs for `lease` seconds (others won't see them)."""

    @abc.abstractmethod
    async def complete_webhook(
        self, job_id: int, ok: bool, now: float, retry_at: float | None, error: str | None
    ) -> None:
        """Finish a leased job: delivered (ok), retry at `retry_at`, or given up (None)."""

    @abc.abstractmethod
    async def purge_finished(self, older_than: float) -> int:
        """Delete messages that reached a final state before `older_than` (unix seconds),
        with their timelines, and old MO messages and finished webhook jobs; how many.

        Retention keeps the tables from growing forever; the router calls it every ten
        minutes (`--retention-days`). A message whose webhook is still pending stays.
        """

    async def complete_webhooks(self, results: Sequence[WebhookResult]) -> None:
        """Finish many leased jobs; a backend should do it in one transaction.

        A dispatcher delivering hundreds of webhooks a second must not spend a commit
        on each. This default falls back to `complete_webhook` one by one.
        """
        for r in results:
            await self.complete_webhook(r.job_id, r.ok, r.at, r.retry_at, r.error)

    # -- timeline ---------------------------------------------------------------------

    @abc.abstractmethod
    async def add_events(self, events: Sequence[tuple[str, Event]]) -> None:
        """Append free-form timeline events (message id, event), e.g. throttling, webhook."""

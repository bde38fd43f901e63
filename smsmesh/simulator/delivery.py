"""Getting delivery receipts to the client: when, over which session, and again on failure.

A receipt waits for its delay in one heap driven by one timer (`Scheduler`), not in a
task of its own, so thousands per second cost a heap push and pop each. When due it
goes to a *receiver* (a bound session that can take deliveries):

* the session that submitted the message, if it can receive and is still open;
* otherwise its system_id's shared queue, served by every receiver of that system_id
  (a transmitter-only bind's receipts reach a receiver bind of the same account);
* while none is bound the shared queue keeps them (bounded, oldest dropped first) until
  one binds, as real SMSCs do.

Sending is driven by callbacks, not coroutines: a receiver with a free slot sends a
receipt's deliver_sm at once (`AsyncSession.start_request`) and the response Future's
done-callback accounts for the answer and sends the next queued receipt, so a receipt
costs no task and no coroutine resumption (the simulator shares a machine with the
gateway it tests, and every microsecond it spends is taken from the gateway). At most
`window` deliver_sm are outstanding per session. Receipts become due inside a submit's
handler; the receiver sends them from a callback of the next loop iteration (one per
burst of submits), so a receipt never overtakes its submit_sm_resp on the wire.

A receipt the client refuses (any error status) or does not answer within
`deliver_timeout` is retried after `retry_delay`, doubling, until `receipt_attempts`
attempts were made. One lost with its connection is queued again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Generic, TypeVar

from smsmesh.simulator.counters import Counters
from smsmesh.simulator.messages import PendingReceipt, receipt_pdu
from smsmesh.simulator.settings import SimulatorSettings
from smsmesh.smpp.aio import AsyncSession, ResponseTimeout, SessionClosed
from smsmesh.smpp.codec import PduError
from smsmesh.smpp.pdu import CommandStatus, Pdu
from smsmesh.smpp.session import LocalProtocolError

__all__ = ["ReceiptDelivery", "Receiver", "Scheduler"]

log = logging.getLogger("smsmesh.simulator")

T = TypeVar("T")

# Items due within this much of the timer firing go out with it, so a timer that fires a
# hair early does not re-arm itself for the same instant.
_EARLY = 0.0005


class Scheduler(Generic[T]):
    """Calls `fire(item)` once each item's time (loop.time()) has come, in time order,
    from a single loop timer re-armed for the earliest item."""

    def __init__(self, fire: Callable[[T], None]) -> None:
        self._fire = fire
        self._loop = asyncio.get_running_loop()
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, when: float, item: T) -> None:
        heapq.heappush(self._heap, (when, next(self._order), item))
        if self._timer is None or when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._arm(when)

    def cancel(self) -> list[T]:
        """Stop; return the items that were still waiting."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items = [item for _, _, item in sorted(self._heap)]
        self._heap.clear()
        return items

    def _arm(self, when: float) -> None:
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._run)

    def _run(self) -> None:
        self._timer = None
        heap = self._heap
        limit = self._loop.time() + _EARLY
        while heap and heap[0][0] <= limit:
            item = heapq.heappop(heap)[2]
            try:
                self._fire(item)
            except Exception:
                log.exception("scheduled delivery failed")
        if heap and self._timer is None:
            self._arm(heap[0][0])


class _Account:
    __slots__ = ("receivers", "shared")

    def __init__(self) -> None:
        self.shared: deque[PendingReceipt] = deque()
        self.receivers: list[Receiver] = []


class Receiver:
    """A bound session that can take deliveries, with the receipts routed to it.

    `own` holds receipts of messages this session submitted; `outstanding` counts its
    deliver_sm not answered yet. The other fields belong to ReceiptDelivery.
    """

    __slots__ = (
        "account",
        "kick",
        "kicked",
        "on_ready",
        "outstanding",
        "own",
        "session",
        "system_id",
        "waiting_ready",
    )

    def __init__(self, session: AsyncSession, system_id: str, account: _Account) -> None:
        self.session = session
        self.system_id = system_id
        self.account = account
        self.own: deque[PendingReceipt] = deque()
        self.outstanding = 0
        self.kicked = False  # a pump is scheduled for the next loop iteration
        self.waiting_ready = False  # waiting for the session's when_ready
        self.kick: Callable[[], None] = _nothing
        self.on_ready: Callable[[], None] = _nothing

    @property
    def closed(self) -> bool:
        return self.session.closed


def _nothing() -> None:
    pass


class ReceiptDelivery:
    """Schedules, routes, sends and retries receipts. See the module docstring.

    `settings` may be replaced at any time (live behaviour changes); `notify` is called
    whenever a counter that tests wait on changes.
    """

    def __init__(
        self, settings: SimulatorSettings, counters: Counters, notify: Callable[[], None]
    ) -> None:
        self.settings = settings
        self.counters = counters
        self._notify = notify
        self._loop = asyncio.get_running_loop()
        self._scheduler: Scheduler[PendingReceipt] = Scheduler(self._dispatch)
        self._accounts: dict[str, _Account] = {}
        self._closed = False

    # --- scheduling -----------------------------------------------------------------

    def schedule(self, receipt: PendingReceipt, delay: float) -> None:
        """Send `receipt` after `delay` seconds (dropped, counted, if too many wait)."""
        if delay <= 0:  # an instant receipt: straight to its receiver
            self._dispatch(receipt)
            return
        if len(self._scheduler) >= self.settings.max_scheduled_receipts:
            self.counters.receipts_dropped += 1
            return
        self._scheduler.at(self._loop.time() + delay, receipt)

    @property
    def scheduled(self) -> int:
        """Receipts still waiting for their delay (or for a retry)."""
        return len(self._scheduler)

    def queued(self, system_id: str) -> int:
        """Receipts due for `system_id` that no session has taken yet."""
        account = self._accounts.get(system_id)
        if account is None:
            return 0
        return len(account.shared) + sum(len(r.own) for r in account.receivers)

    def _account(self, system_id: str) -> _Account:
        account = self._accounts.get(system_id)
        if account is None:
            account = self._accounts[system_id] = _Account()
        return account

    def _dispatch(self, receipt: PendingReceipt) -> None:
        """Queue a due receipt for its receiver and have that receiver send soon."""
        origin = receipt.origin
        limit = self.settings.max_queued_receipts
        if isinstance(origin, Receiver) and not origin.closed and len(origin.own) < limit:
            origin.own.append(receipt)
            self._kick(origin)  # the pump notifies when it runs
            return
        account = self._account(receipt.system_id)
        shared = account.shared
        if len(shared) >= limit:
            shared.popleft()
            self.counters.receipts_dropped += 1
        shared.append(receipt)
        kicked = False
        for receiver in account.receivers:
            if not receiver.closed:
                self._kick(receiver)
                kicked = True
        if not kicked:  # it stays queued: nothing else will say so
            self._notify()

    # --- receivers --------------------------------------------------------------------

    def add_receiver(self, session: AsyncSession) -> Receiver:
        """Start delivering to a session bound as receiver or transceiver."""
        system_id = session.system_id or ""
        account = self._account(system_id)
        receiver = Receiver(session, system_id, account)
        receiver.kick = partial(self._run_kick, receiver)
        receiver.on_ready = partial(self._run_ready, receiver)
        account.receivers.append(receiver)
        if account.shared:
            self._kick(receiver)
        return receiver

    def remove_receiver(self, receiver: Receiver) -> None:
        """The session is gone: its undelivered receipts go back to the shared queue.

        Those it had sent but not seen answered come back on their own: their Futures
        fail with SessionClosed and are queued again from their callbacks.
        """
        account = receiver.account
        if receiver in account.receivers:
            account.receivers.remove(receiver)
        while receiver.own:
            receipt = receiver.own.pop()
            receipt.origin = None
            account.shared.appendleft(receipt)
        if account.shared:
            for other in account.receivers:
                self._kick(other)

    def receivers(self, system_id: str | None = None) -> list[Receiver]:
        """Open receivers, of one system_id or of all."""
        if system_id is not None:
            account = self._accounts.get(system_id)
            found = [] if account is None else account.receivers
        else:
            found = [r for a in self._accounts.values() for r in a.receivers]
        return [r for r in found if not r.closed]

    async def close(self) -> None:
        """Stop the timer and all sending. Receipts not yet delivered are abandoned."""
        self._closed = True
        self._scheduler.cancel()

    # --- sending ----------------------------------------------------------------------

    def _kick(self, receiver: Receiver) -> None:
        """Have `receiver` send what it can at the next loop iteration (once however
        many receipts arrive before then)."""
        if not receiver.kicked:
            receiver.kicked = True
            self._loop.call_soon(receiver.kick)

    def _run_kick(self, receiver: Receiver) -> None:
        receiver.kicked = False
        self._pump(receiver)
        self._notify()

    def _run_ready(self, receiver: Receiver) -> None:
        receiver.waiting_ready = False
        self._pump(receiver)
        self._notify()

    def _pump(self, receiver: Receiver) -> None:
        """Send queued receipts (the receiver's own first, then its account's) while it
        has fewer than `window` outstanding and its session can take a request."""
        if self._closed:
            return
        session = receiver.session
        own = receiver.own
        shared = receiver.account.shared
        settings = self.settings
        window = settings.window
        while receiver.outstanding < window and (own or shared):
            if not session.can_request:
                # A window slot held by an MO message, or the socket's buffer is full:
                # go on when the session says so (our own answers may never come).
                if not session.closed and not receiver.waiting_ready:
                    receiver.waiting_ready = True
                    session.when_ready(receiver.on_ready)
                return
            self._send(receiver, own.popleft() if own else shared.popleft(), settings)

    def _send(
        self, receiver: Receiver, receipt: PendingReceipt, settings: SimulatorSettings
    ) -> None:
        receipt.attempts += 1
        try:
            future = receiver.session.start_request(
                receipt_pdu(receipt, settings.receipt_mode), settings.deliver_timeout
            )
        except (LocalProtocolError, PduError) as exc:
            log.error("cannot send receipt %s: %s", receipt.receipt_id, exc)
            self.counters.receipts_failed += 1
            return
        self.counters.receipts_sent += 1
        receiver.outstanding += 1
        future.add_done_callback(partial(self._answered, receiver, receipt))

    def _answered(
        self, receiver: Receiver, receipt: PendingReceipt, future: asyncio.Future[Pdu]
    ) -> None:
        """The deliver_sm's answer (or its timeout, or the session's end) is in: count
        it, retry or queue it again, and send the next receipt in its place."""
        receiver.outstanding -= 1
        if self._closed:
            return
        if future.cancelled() or isinstance(exc := future.exception(), SessionClosed):
            # Not the client's refusal: the connection went away. Not an attempt.
            receipt.attempts -= 1
            receipt.origin = None
            self._dispatch(receipt)
        elif exc is None:
            status = future.result().command_status
            if status == CommandStatus.ESME_ROK:
                self.counters.receipts_acked += 1
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "receipt %s acknowledged by %s", receipt.receipt_id, receipt.system_id
                    )
            else:
                self._retry(receipt, CommandStatus.describe(status))
        elif isinstance(exc, ResponseTimeout):
            self._retry(receipt, "no deliver_sm_resp")
        else:
            log.error("cannot send receipt %s: %s", receipt.receipt_id, exc)
            self.counters.receipts_failed += 1
        self._pump(receiver)
        self._notify()

    def _retry(self, receipt: PendingReceipt, why: str) -> None:
        settings = self.settings
        if receipt.attempts >= settings.receipt_attempts:
            log.warning(
                "giving up on receipt %s for %s after %d attempts (%s)",
                receipt.receipt_id,
                receipt.system_id,
                receipt.attempts,
                why,
            )
            self.counters.receipts_failed += 1
            return
        log.debug("receipt %s refused (%s): retrying", receipt.receipt_id, why)
        self.schedule(receipt, settings.retry_delay * 2 ** (receipt.attempts - 1))

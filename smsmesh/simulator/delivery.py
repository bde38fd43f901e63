"""Getting delivery receipts to the client: when, over which session, and again on failure.

A receipt waits for its delay in one heap driven by one timer (`Scheduler`), not in a
task of its own, so thousands per second cost a heap push and pop each. When due it
goes to a *receiver* (a bound session that can take deliveries):

* the session that submitted the message, if it can receive and is still open;
* otherwise its system_id's shared queue, served by every receiver of that system_id
  (a transmitter-only bind's receipts reach a receiver bind of the same account);
* while none is bound the shared queue keeps them (bounded, oldest dropped first) until
  one binds, as real SMSCs do.

Each receiver runs `window` worker coroutines, so at most `window` deliver_sm are
outstanding per session. A receipt the client refuses (any error status) or does not
answer within `deliver_timeout` is retried after `retry_delay`, doubling, until
`receipt_attempts` attempts were made. One lost with its connection is queued again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from smsmesh.simulator.counters import Counters
from smsmesh.simulator.messages import PendingReceipt, receipt_pdu
from smsmesh.simulator.settings import SimulatorSettings
from smsmesh.smpp.aio import AsyncSession, ResponseTimeout, SessionClosed
from smsmesh.smpp.codec import PduError
from smsmesh.smpp.pdu import CommandStatus
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


class Receiver:
    """A bound session that can take deliveries, with the receipts routed to it."""

    __slots__ = ("_idle", "own", "session", "system_id", "workers")

    def __init__(self, session: AsyncSession, system_id: str) -> None:
        self.session = session
        self.system_id = system_id
        self.own: deque[PendingReceipt] = deque()
        self.workers: list[asyncio.Task[None]] = []
        self._idle: deque[asyncio.Future[None]] = deque()

    @property
    def closed(self) -> bool:
        return self.session.closed

    def wake_one(self) -> bool:
        """Wake one idle worker; False if none was idle."""
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    def wake_all(self) -> None:
        while self.wake_one():
            pass

    async def idle(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        await waiter


class _Account:
    __slots__ = ("receivers", "shared")

    def __init__(self) -> None:
        self.shared: deque[PendingReceipt] = deque()
        self.receivers: list[Receiver] = []


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
        self._workers: set[asyncio.Task[None]] = set()

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
        origin = receipt.origin
        limit = self.settings.max_queued_receipts
        if isinstance(origin, Receiver) and not origin.closed and len(origin.own) < limit:
            origin.own.append(receipt)
            origin.wake_one()
            self._notify()
            return
        account = self._account(receipt.system_id)
        shared = account.shared
        if len(shared) >= limit:
            shared.popleft()
            self.counters.receipts_dropped += 1
        shared.append(receipt)
        for receiver in account.receivers:
            if receiver.wake_one():
                break
        self._notify()

    # --- receivers --------------------------------------------------------------------

    def add_receiver(self, session: AsyncSession) -> Receiver:
        """Start delivering to a session bound as receiver or transceiver."""
        system_id = session.system_id or ""
        receiver = Receiver(session, system_id)
        self._account(system_id).receivers.append(receiver)
        for _ in range(self.settings.window):
            task = asyncio.ensure_future(self._work(receiver))
            receiver.workers.append(task)
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)
        return receiver

    def remove_receiver(self, receiver: Receiver) -> None:
        """The session is gone: its undelivered receipts go back to the shared queue."""
        account = self._account(receiver.system_id)
        if receiver in account.receivers:
            account.receivers.remove(receiver)
        receiver.wake_all()
        while receiver.own:
            receipt = receiver.own.pop()
            receipt.origin = None
            account.shared.appendleft(receipt)
        if account.shared:
            for other in account.receivers:
                other.wake_all()

    def receivers(self, system_id: str | None = None) -> list[Receiver]:
        """Open receivers, of one system_id or of all."""
        if system_id is not None:
            account = self._accounts.get(system_id)
            found = [] if account is None else account.receivers
        else:
            found = [r for a in self._accounts.values() for r in a.receivers]
        return [r for r in found if not r.closed]

    async def close(self) -> None:
        """Stop the timer and every worker. Receipts not yet delivered are abandoned."""
        self._scheduler.cancel()
        workers = list(self._workers)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    # --- sending ----------------------------------------------------------------------

    async def _work(self, receiver: Receiver) -> None:
        account = self._account(receiver.system_id)
        while not receiver.closed:
            if receiver.own:
                receipt = receiver.own.popleft()
            elif account.shared:
                receipt = account.shared.popleft()
            else:
                await receiver.idle()
                continue
            await self._send(receiver, receipt)

    async def _send(self, receiver: Receiver, receipt: PendingReceipt) -> None:
        settings = self.settings
        counters = self.counters
        receipt.attempts += 1
        counters.receipts_sent += 1
        self._notify()
        try:
            response = await receiver.session.request(
                receipt_pdu(receipt, settings.receipt_mode), settings.deliver_timeout
            )
        except SessionClosed:
            # Not the client's refusal: the connection went away. Not an attempt.
            receipt.attempts -= 1
            receipt.origin = None
            self._dispatch(receipt)
            return
        except ResponseTimeout:
            self._retry(receipt, "no deliver_sm_resp")
            return
        except (LocalProtocolError, PduError) as exc:
            log.error("cannot send receipt %s: %s", receipt.receipt_id, exc)
            counters.receipts_failed += 1
            self._notify()
            return
        status = response.command_status
        if status == CommandStatus.ESME_ROK:
            counters.receipts_acked += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("receipt %s acknowledged by %s", receipt.receipt_id, receipt.system_id)
            self._notify()
            return
        self._retry(receipt, CommandStatus.describe(status))

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
            self._notify()
            return
        log.debug("receipt %s refused (%s): retrying", receipt.receipt_id, why)
        self.schedule(receipt, settings.retry_delay * 2 ** (receipt.attempts - 1))

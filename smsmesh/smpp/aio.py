"""asyncio adapter over the sans-I/O session, for both roles.

`AsyncSession` is an `asyncio.Protocol` (callbacks, no StreamReader copies) that owns
one `Session` and adds what needs a clock or tasks:

* a window: at most `window` of our requests outstanding; `request()` waits for a slot,
  and a request that times out gives its slot back. `start_request()` is the same
  without a coroutine, for a caller sending many requests from callbacks: it sends at
  once when `can_request` says a slot is free and returns the response's Future, and
  `when_ready()` tells such a caller when it may send again;
* per-request response timeouts, and `SessionClosed` for every waiter the moment the
  connection drops. Requests sent with the same timeout expire in the order sent, so
  their deadlines wait in one queue behind one loop timer instead of a timer each
  (creating and cancelling a uvloop timer costs more than the rest of a request's
  bookkeeping); a request with a shorter timeout than the one before gets its own;
* inbound requests handed to `on_request`, at most `inbound_limit` at once (then the
  socket is not read: TCP pushes back on the peer), the handler's response sent when it
  is ready, so a receipt can be made durable before it is acknowledged. The handler
  returns the response itself (answered at once), an `asyncio.Future` of it (answered
  from its callback), or a coroutine (run in a task of its own); the first two spare
  a task per request on a busy bind;
* enquire_link after `enquire_link_interval` seconds without a byte from the peer; no
  answer within `enquire_link_timeout` means the peer is dead and the connection is
  closed;
* write flow control: when the transport's buffer is full, new requests wait and the
  socket is not read, so a slow peer creates backpressure instead of an unbounded buffer;
* graceful `unbind()`.

`connect()` + `bind()` give an ESME session; `serve()` runs the SMSC role with an
`authenticate` hook deciding each bind.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import ssl as _ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

from smsmesh.smpp.codec import DEFAULT_MAX_PDU_SIZE, PduError
from smsmesh.smpp.pdu import (
    BindType,
    CommandStatus,
    EnquireLink,
    Pdu,
    Unbind,
    make_response,
)
from smsmesh.smpp.session import (
    BOUND_STATES,
    BindRequested,
    LocalProtocolError,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    Role,
    Session,
    State,
    UnbindRequested,
)

__all__ = [
    "AsyncSession",
    "BindError",
    "ResponseTimeout",
    "SessionClosed",
    "bind",
    "connect",
    "serve",
]

log = logging.getLogger("smsmesh.smpp")

# The response, a Future of it, or a coroutine making it (see the module docstring).
RequestHandler = Callable[[Pdu], Pdu | Awaitable[Pdu | None] | None]
Authenticator = Callable[[str, str, BindType, Any], Awaitable[int]]


class SessionClosed(ConnectionError):
    """The connection is gone (or closing): the request was not, or may not have been, answered."""


class ResponseTimeout(TimeoutError):
    """No response within the timeout. The request may still have been processed."""

    def __init__(self, request: Pdu, timeout: float) -> None:
        super().__init__(
            f"no response to {type(request).__name__} "
            f"(sequence_number {request.sequence_number}) within {timeout:g}s"
        )
        self.request = request


class BindError(Exception):
    """The SMSC refused the bind with `status`."""

    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {CommandStatus.describe(status)}")
        self.status = status


_EAGER_FLUSH = 64 * 1024
# A deadline timer that fires this much early still expires what is due, rather than
# re-arming itself for the same instant.
_EARLY = 0.001

# A request waiting for its response: its Future; its own timer, if it has one; whether
# it holds a window slot to give back with the answer (start_request's do; request's
# coroutine gives its slot back itself); its deadline when queued in _deadlines, else 0.
_Waiter = tuple[asyncio.Future[Pdu], asyncio.TimerHandle | None, bool, float]
_PAUSED_INBOUND = "inbound"
_PAUSED_WRITE = "write"


class AsyncSession(asyncio.Protocol):
    """One SMPP connection on an asyncio transport. See the module docstring."""

    def __init__(
        self,
        role: Role,
        *,
        window: int = 10,
        on_request: RequestHandler | None = None,
        inbound_limit: int = 100,
        response_timeout: float = 30.0,
        enquire_link_interval: float | None = 30.0,
        enquire_link_timeout: float = 10.0,
        unbind_grace: float = 5.0,
        max_pdu_size: int = DEFAULT_MAX_PDU_SIZE,
    ) -> None:
        if window < 1 or inbound_limit < 1:
            raise ValueError("window and inbound_limit must be at least 1")
        self.session = Session(role, max_pdu_size=max_pdu_size)
        self.role = role
        self.window = window
        self.on_request = on_request
        self.inbound_limit = inbound_limit
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.enquire_link_timeout = enquire_link_timeout
        self.unbind_grace = unbind_grace
        self.peer: Any = None
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._waiters: dict[int, _Waiter] = {}  # by sequence_number
        # (deadline, sequence_number, timeout) in deadline order, behind one timer. An
        # answered request's entry stays until it reaches the head and is dropped there.
        self._deadlines: deque[tuple[float, int, float]] = deque()
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_at = 0.0
        self._in_flight = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._ready_callbacks: list[Callable[[], object]] = []
        self._idle_waiter: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._write_paused = False
        self._read_paused: set[str] = set()
        self._handlers_active = 0
        self._backlog: deque[Pdu] = deque()  # requests read while at inbound_limit
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flush_pending = False
        self._closing = False
        self._lost = False
        self._closed_future: asyncio.Future[None] = self._loop.create_future()
        self._last_rx = self._loop.time()
        self._keepalive: asyncio.TimerHandle | None = None
        self._probing = False
        self._grace: asyncio.TimerHandle | None = None
        # SMSC role: decides a bind (set by serve()); None refuses every bind.
        self.on_bind: Callable[[Pdu], Awaitable[None]] | None = None

    # --- public API -------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.session.state

    @property
    def bind_type(self) -> BindType | None:
        return self.session.bind_type

    @property
    def system_id(self) -> str | None:
        """The peer's system_id once bound."""
        return self.session.system_id

    @property
    def window_in_use(self) -> int:
        """How many window slots our requests hold now."""
        return self._in_flight

    @property
    def closed(self) -> bool:
        """True once close/unbind began or the connection is gone."""
        return self._closing or self._lost

    @property
    def can_request(self) -> bool:
        """True when `start_request` would send now: open, a window slot free with no
        `request()` queued for one, and the transport not asking us to stop writing."""
        return (
            self._in_flight < self.window
            and not self._slot_waiters
            and not self._write_paused
            and not self._closing
            and not self._lost
        )

    # The timeouts below are SMPP response deadlines (one per request that, once passed,
    # frees its window slot and tells the session to forget it), not cancel scopes.
    async def request(self, pdu: Pdu, timeout: float | None = None) -> Pdu:
        """Send a request and return its response (which may carry an error status).

        Waits for a window slot first. Raises ResponseTimeout after `timeout` seconds
        (default: response_timeout), SessionClosed if the connection is or goes away,
        LocalProtocolError if the PDU is not allowed now, PduError if it cannot be
        encoded. A generic_nack from the peer is returned like any other response.
        """
        if self._closing or self._lost:
            raise SessionClosed("session is closed")
        await self._acquire_slot()
        try:
            return await self._roundtrip(pdu, self.response_timeout if timeout is None else timeout)
        finally:
            self._release_slot()

    def start_request(self, pdu: Pdu, timeout: float | None = None) -> asyncio.Future[Pdu]:
        """Send a request now and return the Future of its response; no coroutine, no task.

        For callers that send many requests from callbacks (the simulator's receipts):
        call it only while `can_request` is true, else it raises SessionClosed (closed)
        or RuntimeError (no free slot, or writing paused: see `when_ready`). The request
        holds a window slot until its Future is done: with the response (which may carry
        an error status), ResponseTimeout after `timeout` seconds (default:
        response_timeout; 0 waits for ever), or SessionClosed when the connection goes.
        The slot is given back before the Future's done-callbacks run, so one may send
        the next request. Cancelling the Future does not free the slot early: the
        answer, the timer or the connection's end still does. Raises LocalProtocolError
        or PduError (slot not taken) like `request`.
        """
        if self._closing or self._lost:
            raise SessionClosed("session is closed")
        if not self.can_request:
            raise RuntimeError(
                "start_request needs a free window slot and a writable transport "
                "(check can_request, or wait for when_ready)"
            )
        _, future = self._send_request(
            pdu, self.response_timeout if timeout is None else timeout, True
        )
        return future

    def when_ready(self, callback: Callable[[], object]) -> None:
        """Call `callback()` once, from the loop, as soon as `can_request` is true: at
        the next iteration if it is now, else when a window slot frees or writing
        resumes. Never called if the session closes first."""
        self._ready_callbacks.append(callback)
        if self.can_request:
            self._call_ready()

    def send(self, pdu: Pdu) -> int:
        """Queue a PDU without waiting: a response, or a request whose answer you ignore."""
        if self._lost:
            raise SessionClosed("session is closed")
        seq = self.session.send(pdu)
        self._schedule_flush()
        self._close_if_done()
        return seq

    async def unbind(self, timeout: float = 10.0) -> None:
        """End the session politely: no new requests, wait for outstanding ones, unbind.

        Whatever happens within `timeout` (peer silent, connection lost) the connection
        is closed when this returns.
        """
        if self._lost:
            return
        self._closing = True
        deadline = self._loop.time() + timeout
        try:
            if self._waiters:
                self._idle_waiter = self._loop.create_future()
                await asyncio.wait_for(self._idle_waiter, max(0.0, deadline - self._loop.time()))
            if self.session.state in BOUND_STATES:
                await self._roundtrip(Unbind(), max(0.001, deadline - self._loop.time()))
        except (TimeoutError, SessionClosed, LocalProtocolError) as exc:
            log.info("unbind from %s did not complete cleanly: %s", self.peer, exc)
        finally:
            self._idle_waiter = None
        self.close()
        try:
            await asyncio.wait_for(self.wait_closed(), max(0.1, deadline - self._loop.time()))
        except TimeoutError:
            self.abort()

    def close(self) -> None:
        """Close after sending what is queued. Waiting requests fail with SessionClosed."""
        self._closing = True
        self._flush()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection at once, discarding anything unsent."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self) -> None:
        """Return once the connection is gone."""
        await asyncio.shield(self._closed_future)

    # --- window -------------------------------------------------------------------------

    async def _acquire_slot(self) -> None:
        if self._in_flight < self.window and not self._slot_waiters:
            self._in_flight += 1
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._slot_waiters.append(waiter)
        try:
            await waiter  # the releaser hands its slot over: _in_flight stays the same
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release_slot()  # we were given a slot but will not use it
            raise

    def _release_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_flight -= 1
        if self._ready_callbacks and self.can_request:
            self._call_ready()

    def _call_ready(self) -> None:
        callbacks, self._ready_callbacks = self._ready_callbacks, []
        for callback in callbacks:
            self._loop.call_soon(callback)

    # --- requests and responses ----------------------------------------------------

    async def _roundtrip(
        self,
        pdu: Pdu,
        timeout: float,
        *,
        wait_writable: bool = True,
    ) -> Pdu:
        if self._write_paused and wait_writable:
            await self._wait_writable()
        seq, future = self._send_request(pdu, timeout, False)
        try:
            return await future
        except asyncio.CancelledError:
            entry = self._waiters.pop(seq, None)
            if entry is not None:  # the caller gave up: stop expecting the answer
                if entry[1] is not None:
                    entry[1].cancel()
                self.session.forget(seq)
                self._check_idle()
            raise

    def _send_request(
        self, pdu: Pdu, timeout: float, holds_slot: bool
    ) -> tuple[int, asyncio.Future[Pdu]]:
        """Queue a request and register the Future (and timer) its response resolves."""
        if self._lost:
            raise SessionClosed("session is closed")
        seq = self.session.send(pdu)
        if holds_slot:  # taken once the PDU is accepted: a refused one holds nothing
            self._in_flight += 1
        future: asyncio.Future[Pdu] = self._loop.create_future()
        handle = None
        deadline = 0.0
        if timeout:
            deadline = self._loop.time() + timeout
            deadlines = self._deadlines
            if not deadlines or deadlines[-1][0] <= deadline:
                deadlines.append((deadline, seq, timeout))
                if self._deadline_timer is None or deadline < self._deadline_at:
                    self._arm_deadlines(deadline)  # the timer is kept <= every deadline
            else:  # due before requests already queued: a timer of its own
                handle = self._loop.call_at(deadline, self._expire, seq, timeout)
                deadline = 0.0
        self._waiters[seq] = (future, handle, holds_slot, deadline)
        if self.session.pending_output >= _EAGER_FLUSH:
            self._flush()  # lets the transport call pause_writing before more is queued
        else:
            self._schedule_flush()
        return seq, future

    def _expire_due(self) -> None:
        """The deadline timer: expire every queued request now due, re-arm for the next."""
        self._deadline_timer = None
        self._drop_answered_deadlines()
        deadlines = self._deadlines
        now = self._loop.time() + _EARLY
        while deadlines and deadlines[0][0] <= now:
            _, seq, timeout = deadlines.popleft()
            self._expire(seq, timeout)
            self._drop_answered_deadlines()
        if deadlines and not self._lost:
            self._arm_deadlines(deadlines[0][0])

    def _arm_deadlines(self, when: float) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_at = when
        self._deadline_timer = self._loop.call_at(when, self._expire_due)

    def _drop_answered_deadlines(self) -> None:
        """Drop the queue's head entries whose request is no longer waiting."""
        deadlines = self._deadlines
        waiters = self._waiters
        while deadlines:
            deadline, seq, _ = deadlines[0]
            entry = waiters.get(seq)
            if entry is not None and entry[3] == deadline:
                return
            deadlines.popleft()

    def _expire(self, seq: int, timeout: float) -> None:
        entry = self._waiters.pop(seq, None)
        if entry is None:
            return
        if entry[2]:
            self._release_slot()
        request = self.session.forget(seq)
        future = entry[0]
        if not future.done():
            future.set_exception(
                ResponseTimeout(request if request is not None else EnquireLink(seq), timeout)
            )
        self._check_idle()
        self._close_if_done()

    def _check_idle(self) -> None:
        if self._idle_waiter is not None and not self._waiters and not self._idle_waiter.done():
            self._idle_waiter.set_result(None)

    # --- inbound requests ------------------------------------------------------------

    def _failure_status(self) -> int:
        # An ESME that cannot take a delivery now asks the SMSC to retry later.
        if self.role is Role.ESME:
            return CommandStatus.ESME_RX_T_APPN
        return CommandStatus.ESME_RSYSERR

    def _start_handler(self, pdu: Pdu) -> None:
        if self._handlers_active >= self.inbound_limit:
            # One read can hold many PDUs; those beyond the limit wait their turn here
            # while the socket is not read, so at most inbound_limit handlers ever run.
            self._backlog.append(pdu)
            return
        handler = self.on_request
        if handler is None:
            if pdu.response_class is not None:
                self.session.send(make_response(pdu, self._failure_status()))
            return
        self._handlers_active += 1
        if self._handlers_active >= self.inbound_limit:
            self._pause_reading(_PAUSED_INBOUND)
        try:
            result = handler(pdu)
        except Exception:
            log.exception("on_request failed for %s from %s", type(pdu).__name__, self.peer)
            result = self._fallback(pdu)
        if isinstance(result, asyncio.Future):
            result.add_done_callback(functools.partial(self._future_answered, pdu))
        elif inspect.isawaitable(result):
            self._spawn(self._run_handler(result, pdu))
        else:  # answered in order, before any request waiting behind it is started
            self._answer(pdu, result)
            self._handler_done()

    def _fallback(self, pdu: Pdu) -> Pdu | None:
        """The answer to a request whose handler failed: ours is a temporary failure."""
        return make_response(pdu, self._failure_status()) if pdu.response_class else None

    def _future_answered(self, pdu: Pdu, future: asyncio.Future[Pdu | None]) -> None:
        if future.cancelled():
            response = self._fallback(pdu)
        elif (exc := future.exception()) is not None:
            log.error("on_request failed for %s from %s", type(pdu).__name__, self.peer,
                      exc_info=exc)  # fmt: skip
            response = self._fallback(pdu)
        else:
            response = future.result()
        self._answer(pdu, response)
        self._handler_done()

    def _handler_done(self) -> None:
        self._handlers_active -= 1
        backlog = self._backlog
        while backlog and self._handlers_active < self.inbound_limit and not self._lost:
            self._start_handler(backlog.popleft())
        if self._handlers_active < self.inbound_limit and not backlog:
            self._resume_reading(_PAUSED_INBOUND)

    async def _run_handler(self, pending: Awaitable[Pdu | None], pdu: Pdu) -> None:
        response: Pdu | None
        try:
            response = await pending
        except Exception:
            log.exception("on_request failed for %s from %s", type(pdu).__name__, self.peer)
            response = self._fallback(pdu)
        finally:
            self._handler_done()
        self._answer(pdu, response)

    def _answer(self, pdu: Pdu, response: Pdu | None) -> None:
        """Send a handler's response (nothing for None, or once the session is gone)."""
        if response is None or self._lost or self.session.state is State.CLOSED:
            return
        try:
            self.session.send(response)
        except (LocalProtocolError, PduError) as exc:
            log.error("cannot send the answer to %s: %s", type(pdu).__name__, exc)
            if isinstance(exc, PduError) and pdu.response_class is not None:
                self.session.send(make_response(pdu, self._failure_status()))
                self._schedule_flush()
            return
        self._schedule_flush()
        self._close_if_done()

    async def _answer_bind(self, pdu: Pdu) -> None:
        if self.on_bind is None:
            self.send(make_response(pdu, CommandStatus.ESME_RBINDFAIL))
            self.close()
            return
        await self.on_bind(pdu)

    # --- protocol callbacks -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self.peer = self._transport.get_extra_info("peername")
        self._last_rx = self._loop.time()
        if self.enquire_link_interval:
            self._keepalive = self._loop.call_later(
                self.enquire_link_interval, self._keepalive_tick
            )

    def data_received(self, data: bytes) -> None:
        self._last_rx = self._loop.time()
        events = self.session.receive_data(data)
        for event in events:
            kind = type(event)
            if kind is ResponseReceived:
                request = event.request  # type: ignore[attr-defined]
                if request is None:
                    log.warning("generic_nack from %s: %s", self.peer, event.response)  # type: ignore[attr-defined]
                    continue
                entry = self._waiters.pop(request.sequence_number, None)
                if entry is not None:
                    future, handle, holds_slot, deadline = entry
                    if handle is not None:
                        handle.cancel()
                    elif deadline and self._deadlines[0][1] == request.sequence_number:
                        self._drop_answered_deadlines()  # answered in order: the usual
                    if holds_slot:
                        self._release_slot()
                    if not future.done():
                        future.set_result(event.response)  # type: ignore[attr-defined]
                    if self._idle_waiter is not None:
                        self._check_idle()
            elif kind is RequestReceived:
                self._start_handler(event.pdu)  # type: ignore[attr-defined]
            elif kind is BindRequested:
                self._spawn(self._answer_bind(event.pdu))  # type: ignore[attr-defined]
            elif kind is UnbindRequested:
                self._closing = True
                if self.session.state is State.UNBIND_RECEIVED:
                    self._grace = self._loop.call_later(self.unbind_grace, self._force_unbind)
            elif kind is ProtocolError:
                log.warning(
                    "protocol error from %s: %s%s",
                    self.peer,
                    event.detail,  # type: ignore[attr-defined]
                    " (closing)" if event.fatal else "",  # type: ignore[attr-defined]
                )
        self._flush()
        self._close_if_done()

    def eof_received(self) -> bool:
        self.session.receive_data(b"")
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._closing = True
        if exc is not None:
            log.info("connection to %s lost: %s", self.peer, exc)
        if self.session.state is not State.CLOSED:
            self.session.receive_data(b"")
        for handle in (self._keepalive, self._grace, self._deadline_timer):
            if handle is not None:
                handle.cancel()
        self._deadline_timer = None
        self._deadlines.clear()
        waiters, self._waiters = self._waiters, {}
        self._ready_callbacks.clear()
        for future, timer, holds_slot, _ in waiters.values():
            if timer is not None:
                timer.cancel()
            if holds_slot:
                self._in_flight -= 1  # not handed over: every slot waiter fails below
            if not future.done():
                future.set_exception(SessionClosed(f"connection to {self.peer} closed"))
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_exception(SessionClosed("connection closed"))
        self._wake_writers()
        self._check_idle()
        if not self._closed_future.done():
            self._closed_future.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause_reading(_PAUSED_WRITE)

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()
        self._resume_reading(_PAUSED_WRITE)
        if self._ready_callbacks and self.can_request:
            self._call_ready()

    # --- plumbing -----------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task for %s failed", self.peer, exc_info=task.exception())

    def _schedule_flush(self) -> None:
        # Coalesce everything queued in one loop iteration into one write.
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        data = self.session.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _close_if_done(self) -> None:
        if self.session.state is State.CLOSED and not self._lost:
            if self._grace is not None:
                self._grace.cancel()
            self.close()

    def _force_unbind(self) -> None:
        log.warning(
            "on_request handlers still busy %gs after unbind; answering it", self.unbind_grace
        )
        self.session.finish_unbind()
        self._close_if_done()

    async def _wait_writable(self) -> None:
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _pause_reading(self, reason: str) -> None:
        if not self._read_paused and self._transport is not None and not self._lost:
            self._transport.pause_reading()
        self._read_paused.add(reason)

    def _resume_reading(self, reason: str) -> None:
        if reason not in self._read_paused:
            return
        self._read_paused.discard(reason)
        if not self._read_paused and self._transport is not None and not self._lost:
            self._transport.resume_reading()

    def _keepalive_tick(self) -> None:
        interval = self.enquire_link_interval
        if self._lost or not interval:
            return
        idle = self._loop.time() - self._last_rx
        if idle < interval:
            self._keepalive = self._loop.call_later(interval - idle, self._keepalive_tick)
            return
        if not self._probing and self.session.state not in (State.CLOSED, State.UNBINDING):
            self._probing = True
            self._spawn(self._probe())
        self._keepalive = self._loop.call_later(interval, self._keepalive_tick)

    async def _probe(self) -> None:
        try:
            # Not held back by write flow control: a peer that stopped reading must
            # still be found dead by the probe's timer.
            await self._roundtrip(EnquireLink(), self.enquire_link_timeout, wait_writable=False)
        except ResponseTimeout:
            log.warning(
                "%s did not answer enquire_link within %gs: closing",
                self.peer,
                self.enquire_link_timeout,
            )
            self.abort()
        except (SessionClosed, LocalProtocolError):
            pass
        finally:
            self._probing = False


# --- ESME role ------------------------------------------------------------------------


async def connect(
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    connect_timeout: float = 10.0,
    **session_options: Any,
) -> AsyncSession:
    """Open a TCP (or TLS) connection to an SMSC; the session is OPEN, not bound yet.

    `session_options` are AsyncSession's keyword arguments (window, on_request...).
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(connect_timeout):
        _, protocol = await loop.create_connection(
            lambda: AsyncSession(Role.ESME, **session_options),
            host,
            port,
            ssl=ssl,
            server_hostname=server_hostname if ssl is not None else None,
        )
    return protocol


async def bind(
    session: AsyncSession,
    bind_type: BindType,
    system_id: str,
    password: str,
    system_type: str = "",
    timeout: float = 10.0,
    *,
    interface_version: int = 0x34,
    addr_ton: int = 0,
    addr_npi: int = 0,
    address_range: str = "",
) -> Pdu:
    """Bind and return the bind response.

    Raises BindError if refused, ResponseTimeout if unanswered; either way the
    connection is closed, since an unbound connection is of no further use.
    """
    request = bind_type.request_class(
        system_id=system_id,  # type: ignore[call-arg]
        password=password,
        system_type=system_type,
        interface_version=interface_version,
        addr_ton=addr_ton,
        addr_npi=addr_npi,
        address_range=address_range,
    )
    try:
        response = await session.request(request, timeout)
    except ResponseTimeout:
        session.abort()
        raise
    if response.command_status != CommandStatus.ESME_ROK or session.state not in BOUND_STATES:
        session.close()
        raise BindError(response.command_status or CommandStatus.ESME_RBINDFAIL)
    return response


# --- SMSC role ------------------------------------------------------------------------


async def serve(
    on_session: Callable[[AsyncSession], Any],
    host: str,
    port: int,
    *,
    authenticate: Authenticator,
    ssl: _ssl.SSLContext | None = None,
    system_id: str = "smsmesh",
    bind_timeout: float = 10.0,
    **session_options: Any,
) -> asyncio.Server:
    """Accept ESMEs. Each bind is answered with `authenticate(system_id, password,
    bind_type, peer)`'s status; once bound, `on_session(session)` is called (it may be a
    coroutine function). Set `session.on_request` there, or pass `on_request` in
    `session_options` for every session.

    A connection that has not bound within `bind_timeout` seconds is closed.
    """
    loop = asyncio.get_running_loop()

    def factory() -> AsyncSession:
        session = AsyncSession(Role.SMSC, **session_options)

        async def decide(pdu: Pdu) -> None:
            bind_type = BindType.of(pdu)
            assert bind_type is not None
            try:
                status = await authenticate(
                    getattr(pdu, "system_id", ""),
                    getattr(pdu, "password", ""),
                    bind_type,
                    session.peer,
                )
            except Exception:
                log.exception("authenticate failed for a bind from %s", session.peer)
                status = CommandStatus.ESME_RBINDFAIL
            if session._lost:
                return
            session.send(make_response(pdu, status, system_id=system_id))
            if status != CommandStatus.ESME_ROK:
                log.info(
                    "refused %s bind from %s: %s",
                    bind_type.value,
                    session.peer,
                    CommandStatus.describe(status),
                )
                session.close()
                return
            try:
                result = on_session(session)
            except Exception:
                log.exception("on_session failed for %s", session.peer)
                session.close()
                return
            if inspect.isawaitable(result):
                session._spawn(result)

        session.on_bind = decide

        def unbound_timeout() -> None:
            if session.state not in BOUND_STATES and not session.closed:
                log.info("%s did not bind within %gs: closing", session.peer, bind_timeout)
                session.close()

        loop.call_later(bind_timeout, unbound_timeout)
        return session

    return await loop.create_server(factory, host, port, ssl=ssl)

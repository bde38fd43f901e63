"""The SMSC simulator: smsmesh's own stand-in for a carrier, in local mode and in tests.

It accepts binds (checking credentials if configured), answers submit_sm with a message
id, or with ESME_RTHROTTLED above `throttle_tps`, or ESME_RSYSERR for an `error_rate`
share; it sends a delivery receipt per accepted message after `receipt_delay` (see
`delivery`), can inject mobile-originated messages, and can drop every connection on
demand. `Simulator` runs it in-process (tests, benchmarks); `serve()` runs it as the
`smsmesh simulate` process.

    async with Simulator(SimulatorSettings(port=0, receipt_delay=0)) as sim:
        ...connect to sim.port, bind, submit...
        await sim.wait_for(lambda: sim.counters.receipts_acked >= 1, timeout=5)
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from smsmesh.model import ReceiptState
from smsmesh.simulator.behaviour import ErrorInjector, MessageIds, TokenBucket, choose_outcome
from smsmesh.simulator.counters import Counters
from smsmesh.simulator.delivery import ReceiptDelivery, Receiver
from smsmesh.simulator.messages import ReceivedSubmit, mo_pdus, pending_receipt, read_submit
from smsmesh.simulator.settings import (
    BEHAVIOUR_FIELDS,
    SettingsError,
    SimulatorSettings,
    settings_from_args,
)
from smsmesh.smpp.aio import AsyncSession, ResponseTimeout, SessionClosed
from smsmesh.smpp.aio import serve as smpp_serve
from smsmesh.smpp.pdu import (
    BindType,
    CommandStatus,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    make_response,
)

__all__ = [
    "MoRejected",
    "NoReceiver",
    "ReceivedSubmit",
    "Simulator",
    "SimulatorSettings",
    "serve",
    "settings_from_args",
]

log = logging.getLogger("smsmesh.simulator")

S = CommandStatus
# registered_delivery bits 1-0: 01 receipt on success or failure, 10 on failure only
# (11 is reserved in 3.4; treated as 01, the common reading).
_RECEIPT_REQUESTED = 0x03
_RECEIPT_ON_FAILURE = 0x02
# The answer to requests a simple SMSC does not support.
_UNSUPPORTED = S.ESME_RINVCMDID


class NoReceiver(LookupError):
    """No bound receiver/transceiver session can take the MO message."""


class MoRejected(Exception):
    """The client answered an MO deliver_sm with an error status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"client refused the MO: {CommandStatus.describe(status)}")
        self.status = status


class Simulator:
    """One simulated SMSC on one listening socket. See the module docstring.

    Not thread-safe: use it from the event loop it was started on.
    """

    def __init__(self, settings: SimulatorSettings | None = None, **changes: Any) -> None:
        base = settings if settings is not None else SimulatorSettings()
        self.settings = base.with_changes(**changes) if changes else base
        self.counters = Counters()
        self.received: deque[ReceivedSubmit] = deque(maxlen=self.settings.keep_received)
        self._server: asyncio.Server | None = None
        self._delivery: ReceiptDelivery | None = None
        self._sessions: dict[AsyncSession, Receiver | None] = {}
        self._ids = MessageIds(self.settings.id_style, self.settings.first_message_id)
        self._errors = ErrorInjector(self.settings.error_rate, self.settings.seed)
        self._buckets: dict[str, TokenBucket] = {}
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._mo_reference = itertools.count()
        self._mo_task: asyncio.Task[None] | None = None
        self._last_addresses: dict[str, tuple[str, str]] = {}
        self._port = self.settings.port
        self._stopping = False

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Listen. Raises OSError if the address cannot be bound."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        settings = self.settings
        self._stopping = False
        self._delivery = ReceiptDelivery(settings, self.counters, self._notify)
        self._server = await smpp_serve(
            self._on_session,
            settings.host,
            settings.port,
            authenticate=self._authenticate,
            system_id=settings.system_name,
            window=settings.window,
            response_timeout=settings.deliver_timeout,
            enquire_link_interval=settings.enquire_link_interval,
        )
        sockets = self._server.sockets
        self._port = sockets[0].getsockname()[1] if sockets else settings.port
        if settings.mo_interval is not None:
            self._mo_task = asyncio.create_task(self._mo_generator(settings.mo_interval))
        log.info(
            "SMSC simulator listening on %s:%d (receipts %s after %gs, ids %s%s%s)",
            settings.host,
            self._port,
            settings.receipt_outcome if settings.receipts_enabled else "off",
            settings.receipt_delay,
            settings.id_style,
            f", throttle {settings.throttle_tps:g}/s" if settings.throttle_tps else "",
            f", error rate {settings.error_rate:g}" if settings.error_rate else "",
        )

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, unbind every session (waiting up to `timeout` for each), close."""
        server = self._server
        if server is None:
            return
        self._stopping = True  # binds from now on are refused
        server.close()
        if self._mo_task is not None:
            self._mo_task.cancel()
            await asyncio.gather(self._mo_task, return_exceptions=True)
            self._mo_task = None
        sessions = list(self._sessions)
        if sessions:
            await asyncio.gather(*(s.unbind(timeout) for s in sessions), return_exceptions=True)
        if self._delivery is not None:
            await self._delivery.close()
        try:
            async with asyncio.timeout(timeout):
                await server.wait_closed()
        except TimeoutError:
            log.warning("connections still open %gs after stop", timeout)
        self._server = None
        log.info("SMSC simulator on port %d stopped", self._port)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port listened on (the real one when settings.port was 0)."""
        return self._port

    @property
    def sessions(self) -> int:
        """How many bound sessions are open now."""
        return sum(1 for s in self._sessions if not s.closed)

    def queued_receipts(self, system_id: str) -> int:
        """Receipts due for `system_id` that no session has taken yet."""
        return 0 if self._delivery is None else self._delivery.queued(system_id)

    # --- live changes and faults ----------------------------------------------------

    def set_behaviour(self, **changes: Any) -> None:
        """Change how submits are answered and receipts sent, for sessions already bound.

        Accepts receipt_delay, receipt_outcome, receipts_enabled, throttle_tps,
        error_rate, id_style, receipt_mode. Raises SettingsError for anything else.
        """
        not_live = sorted(set(changes) - BEHAVIOUR_FIELDS)
        if not_live:
            raise SettingsError(f"cannot change {', '.join(not_live)} while running")
        settings = self.settings.with_changes(**changes)
        self.settings = settings
        if self._delivery is not None:
            self._delivery.settings = settings
        if "throttle_tps" in changes:
            self._buckets.clear()
        if "error_rate" in changes:
            self._errors.rate = settings.error_rate
        if "id_style" in changes:
            self._ids.style = settings.id_style
        log.info("simulator behaviour changed: %s", ", ".join(sorted(changes)))

    def drop_connections(self) -> int:
        """Abort every session's TCP connection at once (no unbind); how many."""
        dropped = 0
        for session in list(self._sessions):
            session.abort()
            dropped += 1
        log.info("dropped %d connection(s)", dropped)
        return dropped

    # --- waiting, for tests -----------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Return once `predicate()` is true; re-checked whenever counters, sessions or
        `received` change. Raises TimeoutError (with the counters) after `timeout`."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            raise TimeoutError(
                f"condition not met within {timeout:g}s; sessions={self.sessions} "
                f"counters={self.counters.as_dict()}"
            ) from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def wait_submits(self, n: int, timeout: float = 10.0) -> None:
        """Return once at least `n` submit_sm have been received (answered either way)."""
        await self.wait_for(lambda: self.counters.submits >= n, timeout)

    async def wait_sessions(self, n: int, timeout: float = 10.0) -> None:
        """Return once exactly `n` bound sessions are open."""
        await self.wait_for(lambda: self.sessions == n, timeout)

    def _notify(self) -> None:
        if not self._waiters:
            return
        for predicate, future in list(self._waiters):
            if future.done():
                continue
            try:
                if predicate():
                    future.set_result(None)
            except Exception as exc:
                future.set_exception(exc)

    # --- binds and sessions -----------------------------------------------------------

    async def _authenticate(
        self, system_id: str, password: str, bind_type: BindType, peer: Any
    ) -> int:
        settings = self.settings
        status: int = S.ESME_ROK
        if self._stopping:
            status = S.ESME_RBINDFAIL
        elif settings.system_id is not None and not hmac.compare_digest(
            system_id.encode("latin-1", "replace"),
            settings.system_id.encode("latin-1", "replace"),
        ):
            status = S.ESME_RINVSYSID
        elif settings.password is not None and not hmac.compare_digest(
            password.encode("latin-1", "replace"), settings.password.encode("latin-1", "replace")
        ):
            status = S.ESME_RINVPASWD
        if status != S.ESME_ROK:
            self.counters.binds_refused += 1
            log.info(
                "refused %s bind of system_id %r from %s: %s",
                bind_type.value,
                system_id,
                peer,
                CommandStatus.describe(status),
            )
        return status

    def _on_session(self, session: AsyncSession) -> Any:
        assert self._delivery is not None
        if self._stopping:  # bound while stop() was unbinding the others
            session.abort()
            return None
        system_id = session.system_id or ""
        bind_type = session.bind_type
        receiver = (
            self._delivery.add_receiver(session)
            if bind_type is not None and bind_type.can_receive
            else None
        )
        self._sessions[session] = receiver

        def on_request(pdu: Pdu) -> Pdu | None:  # answered at once: no task per submit
            if type(pdu) is SubmitSm:
                return self._on_submit(session, receiver, pdu)
            if pdu.response_class is None:
                return None
            return make_response(pdu, _UNSUPPORTED)

        session.on_request = on_request
        self.counters.binds += 1
        log.info(
            "bound %s: system_id %r from %s",
            bind_type.value if bind_type else "?",
            system_id,
            session.peer,
        )
        self._notify()
        return self._watch(session, receiver)

    async def _watch(self, session: AsyncSession, receiver: Receiver | None) -> None:
        await session.wait_closed()
        self._sessions.pop(session, None)
        if receiver is not None and self._delivery is not None:
            self._delivery.remove_receiver(receiver)
        log.info("session of system_id %r from %s closed", session.system_id, session.peer)
        self._notify()

    # --- submits --------------------------------------------------------------------

    def _on_submit(
        self, session: AsyncSession, receiver: Receiver | None, pdu: SubmitSm
    ) -> SubmitSmResp:
        counters = self.counters
        settings = self.settings
        counters.submits += 1
        system_id = session.system_id or ""
        status: int = S.ESME_ROK
        if not pdu.destination_addr:
            status = S.ESME_RINVDSTADR
            counters.invalid += 1
        elif settings.throttle_tps is not None and not self._bucket(system_id).take(
            time.monotonic()
        ):
            status = S.ESME_RTHROTTLED
            counters.throttled += 1
        elif self._errors.fails():
            status = S.ESME_RSYSERR
            counters.errors += 1
        message_id = receipt_id = ""
        if status == S.ESME_ROK:
            message_id, receipt_id = self._ids.next()
            counters.accepted += 1
        now = time.time()
        text, concat = read_submit(pdu)
        registered = pdu.registered_delivery
        self.received.append(
            ReceivedSubmit(
                at=now,
                system_id=system_id,
                source=pdu.source_addr,
                destination=pdu.destination_addr,
                esm_class=pdu.esm_class,
                data_coding=pdu.data_coding,
                short_message=pdu.short_message,
                text=text,
                concat=concat,
                message_id=message_id,
                command_status=int(status),
                registered_delivery=registered,
            )
        )
        if status == S.ESME_ROK:
            self._last_addresses[system_id] = (pdu.source_addr, pdu.destination_addr)
            wanted = registered & _RECEIPT_REQUESTED
            if wanted and settings.receipts_enabled:
                state = choose_outcome(settings.receipt_outcome, message_id)
                if wanted != _RECEIPT_ON_FAILURE or state is not ReceiptState.DELIVERED:
                    assert self._delivery is not None
                    self._delivery.schedule(
                        pending_receipt(pdu, system_id, receiver, receipt_id, state, text, now),
                        settings.receipt_delay,
                    )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "submit_sm from %r: %s %s",
                system_id,
                CommandStatus.describe(status),
                message_id,
            )
        self._notify()
        return SubmitSmResp(
            sequence_number=pdu.sequence_number, command_status=status, message_id=message_id
        )

    def _bucket(self, system_id: str) -> TokenBucket:
        bucket = self._buckets.get(system_id)
        if bucket is None:
            rate = self.settings.throttle_tps
            assert rate is not None
            bucket = self._buckets[system_id] = TokenBucket(rate, now=time.monotonic())
        return bucket

    # --- mobile-originated messages ------------------------------------------------------

    async def inject_mo(
        self,
        source: str,
        destination: str,
        text: str,
        *,
        system_id: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Deliver an MO message (deliver_sm, esm_class 0) to a bound receiver of
        `system_id` (any receiver when None) and return once the client acknowledged
        every part. UCS-2 when the text is not GSM 7-bit; long text as UDH parts.

        Raises NoReceiver if none is bound, MoRejected if the client answers with an
        error, TimeoutError/SessionClosed if it does not answer or goes away.
        """
        if self._delivery is None:
            raise NoReceiver("the simulator is not running")
        receivers = self._delivery.receivers(system_id)
        if not receivers:
            raise NoReceiver(
                f"no receiver bound{'' if system_id is None else f' for {system_id!r}'}"
            )
        receiver = min(receivers, key=lambda r: r.session.window_in_use)
        parts = mo_pdus(source, destination, text, next(self._mo_reference) % 256)
        for part in parts:
            try:
                response = await receiver.session.request(part, timeout)
            except ResponseTimeout as exc:
                raise TimeoutError(str(exc)) from exc
            if response.command_status != S.ESME_ROK:
                raise MoRejected(response.command_status)
        self.counters.mo_sent += 1
        log.debug("MO (%d part(s)) acknowledged by %r", len(parts), receiver.system_id)
        self._notify()

    async def _mo_generator(self, interval: float) -> None:
        """Every `interval` seconds, one MO to every system_id with a receiver, as if a
        handset answered the last message that account sent."""
        sent = 0
        while True:
            await asyncio.sleep(interval)
            assert self._delivery is not None
            system_ids = {r.system_id for r in self._delivery.receivers()}
            for system_id in sorted(system_ids):
                sender, handset = self._last_addresses.get(system_id, ("12345", "15550100"))
                sent += 1
                try:
                    await self.inject_mo(
                        handset or "15550100",
                        sender or "12345",
                        f"Simulated reply #{sent}",
                        system_id=system_id,
                    )
                except (NoReceiver, MoRejected, TimeoutError, SessionClosed) as exc:
                    log.info("simulated MO to %r not delivered: %s", system_id, exc)


async def serve(
    settings: SimulatorSettings, stop: asyncio.Event, *, ready: asyncio.Event | None = None
) -> int:
    """Run the simulator until `stop` is set, then unbind every session and close.

    `ready` (if given) is set once the socket listens. Returns 0, or 1 if the address
    could not be listened on.
    """
    simulator = Simulator(settings)
    try:
        await simulator.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return 1
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await simulator.stop()
    return 0

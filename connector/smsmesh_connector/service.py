"""The connector process: one SmppConnection, one bind, from start to graceful stop.

    store.open -> store.recover(name) once -> loop:
        connect (+TLS) and bind; on failure wait (capped exponential backoff, jitter)
        bound: submitter (claim -> submit -> report) and inbound handler (receipts, MOs)
        session lost: everything unresolved goes back to the store; reconnect
    stop (SIGTERM): stop claiming, requeue what was not sent, wait up to drain_timeout
        for responses, unbind, flush the write-behind queues, publish bound=False, close.

The bind state is published to the store on every change and every `state_interval`
seconds, for the routers' failover decisions. `last_error` is short and never holds a
secret (bind errors quote the SMPP status, never the credentials).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from pathlib import Path

from smsmesh.batching import WriteBehind
from smsmesh.model import Event
from smsmesh.smpp.aio import AsyncSession, BindError, ResponseTimeout, bind, connect
from smsmesh.smpp.pdu import CommandStatus
from smsmesh.store import Store, StoreError, open_store
from smsmesh.telemetry import metrics, tracing
from smsmesh.telemetry.http import (
    DEFAULT_METRICS_HOST,
    METRICS_HOST_ENV,
    MetricsServer,
    metrics_port_from_env,
)
from smsmesh_connector.backoff import Backoff
from smsmesh_connector.inbound import InboundHandler
from smsmesh_connector.ratelimit import RateLimiter
from smsmesh_connector.settings import ConnectorSettings, load_settings
from smsmesh_connector.state import ConnectorState, StatePublisher
from smsmesh_connector.submitter import Submitter

log = logging.getLogger("smsmesh.connector")

UNBIND_TIMEOUT = 5.0
FLUSH_TIMEOUT = 10.0  # for the last reports on stop; what is left, recover() requeues


def settings_from_resources(
    folder: Path, connection_name: str, store_url: str
) -> ConnectorSettings:
    """Settings for the SmppConnection `connection_name` in a folder of resource YAML."""
    return load_settings(folder, connection_name, store_url)


async def serve(
    settings: ConnectorSettings, stop: asyncio.Event, *, metrics_port: int | None = None
) -> int:
    """Run the connector until `stop` is set; 0 after a graceful stop, 1 if the store
    cannot be used at start-up (the supervisor restarts the process).

    Also serves /metrics, /healthz and /readyz on `metrics_port` (default
    $SMSMESH_METRICS_PORT or 9464; 0: none) at $SMSMESH_METRICS_HOST (default
    127.0.0.1; a pod sets 0.0.0.0), and exports traces when OTEL_* asks for it.
    """
    port = metrics_port_from_env() if metrics_port is None else metrics_port
    tracing.setup_tracing("smsmesh-connector", **{tracing.CONNECTION: settings.name})
    metrics.set_build_info("connector")
    try:
        connector = Connector(settings)
        server: MetricsServer | None = None
        if port:
            host = os.environ.get(METRICS_HOST_ENV, DEFAULT_METRICS_HOST)
            server = MetricsServer(host, port, ready=connector.bound.is_set)
            if not await server.start():
                server = None
        try:
            return await connector.run(stop)
        finally:
            if server is not None:
                await server.stop()
    except StoreError as exc:
        log.error("%s: store unavailable: %s", settings.name, exc)
        return 1
    finally:
        tracing.shutdown_tracing()  # flush the last spans (the SIGTERM path ends here)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


class Connector:
    """One bind's life. `store` may be given (tests); otherwise it is opened from the URL."""

    def __init__(self, settings: ConnectorSettings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or open_store(settings.store_url, max_attempts=settings.max_attempts)
        self.state = ConnectorState(settings.name, settings.window)
        self.limiter = RateLimiter(settings.tps)
        self.state.tps_limit = lambda: self.limiter.rate
        self._unscrape = metrics.on_scrape(lambda: self.state.scrape(self.limiter.limit))
        self.events: WriteBehind[tuple[str, Event]] = WriteBehind(
            self.store.add_events, name=f"{settings.name}-events"
        )
        self.publisher = StatePublisher(self.store, self.state, settings.state_interval)
        self.submitter = Submitter(settings, self.store, self.state, self.limiter, self.events)
        self.inbound = InboundHandler(settings, self.store, self.state, self.submitter.outcomes)
        self.session: AsyncSession | None = None
        self.bound = asyncio.Event()  # set while bound (for tests and health checks)
        self.recovered = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        settings = self.settings
        await self.store.open()
        try:
            self.recovered = await self.store.recover(settings.name)
            if self.recovered:
                log.info("%s: requeued %d messages a previous run left in flight",
                         settings.name, self.recovered)  # fmt: skip
            log.info(
                "%s: connector for %s:%d (%s bind, window %d, %s)",
                settings.name,
                settings.host,
                settings.port,
                settings.bind_type.value,
                settings.window,
                f"{settings.tps:g} tps" if settings.tps else "no tps limit",
            )
            await self.publisher.publish()
            self.publisher.start()
            await self._bind_loop(stop)
        finally:
            await self._shutdown()
        return 0

    async def _bind_loop(self, stop: asyncio.Event) -> None:
        settings = self.settings
        backoff = Backoff(
            settings.reconnect_initial, settings.reconnect_max, settings.reconnect_multiplier
        )
        while not stop.is_set():
            session = await self._connect(stop)
            if session is not None:
                started = time.monotonic()
                await self._serve(session, stop)
                if time.monotonic() - started >= settings.stable_bind_seconds:
                    backoff.reset()
                if stop.is_set():
                    return
                self.state.counters.reconnects += 1
                self.state.metrics.reconnects.inc()
            delay = backoff.next_delay()
            log.info("%s: binding again in %.1f s", settings.name, delay)
            await _sleep_unless(stop, delay)

    async def _connect(self, stop: asyncio.Event) -> AsyncSession | None:
        """Connect and bind; None (with state.last_error set) on failure or stop."""
        attempt = asyncio.create_task(self._connect_and_bind(), name="connect")
        stopped = asyncio.create_task(stop.wait(), name="connect-stop")
        try:
            await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not attempt.done():
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await attempt
            return None
        error = attempt.exception()
        if error is None:
            return attempt.result()
        self.state.counters.bind_failures += 1
        self.state.metrics.bind_failures.inc()
        self.state.set_error(self._describe(error))
        log.warning("%s: %s", self.settings.name, self.state.last_error)
        self.publisher.changed()
        return None

    async def _connect_and_bind(self) -> AsyncSession:
        settings = self.settings
        tls = settings.tls
        session = await connect(
            settings.host,
            settings.port,
            ssl=tls.context(),
            server_hostname=(tls.server_name or settings.host) if tls.enabled else None,
            connect_timeout=settings.connect_timeout,
            window=settings.window,
            on_request=self.inbound.handle,
            response_timeout=settings.response_timeout,
            enquire_link_interval=settings.enquire_link_interval,
            enquire_link_timeout=settings.response_timeout,
        )
        try:
            await bind(
                session,
                settings.bind_type,
                settings.system_id,
                settings.password,
                settings.system_type,
                timeout=settings.response_timeout,
            )
        except BaseException:
            session.abort()
            raise
        return session

    def _describe(self, error: BaseException) -> str:
        where = f"{self.settings.host}:{self.settings.port}"
        if isinstance(error, BindError):
            return f"bind refused by {where}: {CommandStatus.describe(error.status)}"
        if isinstance(error, ResponseTimeout):
            return f"no bind response from {where} within {self.settings.response_timeout:g} s"
        if isinstance(error, ssl.SSLCertVerificationError):
            return f"TLS certificate of {where} not trusted: {error.verify_message}"
        if isinstance(error, ssl.SSLError):
            return f"TLS with {where} failed: {error.reason or error}"
        if isinstance(error, TimeoutError):
            return f"connecting to {where} timed out"
        if isinstance(error, OSError):
            reason = error.strerror or str(error) or type(error).__name__
            return f"cannot connect to {where}: {reason}"
        return f"bind to {where} failed: {type(error).__name__}"

    async def _serve(self, session: AsyncSession, stop: asyncio.Event) -> None:
        settings, state = self.settings, self.state
        self.session = session
        state.bound = True
        state.bound_since = time.time()
        state.last_error = None
        state.window_in_use = lambda: session.window_in_use
        self.bound.set()
        self.publisher.changed()
        log.info("%s: bound to %s:%d as %s", settings.name, settings.host, settings.port,
                 settings.bind_type.value)  # fmt: skip
        try:
            if settings.bind_type.can_submit:
                await self.submitter.run(session, stop)
            else:
                waits = [
                    asyncio.create_task(stop.wait()),
                    asyncio.create_task(session.wait_closed()),
                ]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in waits:
                        task.cancel()
            if session.closed:
                state.set_error(f"bind to {settings.host}:{settings.port} lost")
                log.warning("%s: %s", settings.name, state.last_error)
            else:
                await session.unbind(timeout=UNBIND_TIMEOUT)
                log.info("%s: unbound", settings.name)
        finally:
            if not session.closed:
                session.abort()
            self.inbound.session_lost()
            self.session = None
            state.bound = False
            state.window_in_use = lambda: 0
            self.bound.clear()
            self.publisher.changed()

    async def _shutdown(self) -> None:
        name = self.settings.name
        await self.publisher.stop()
        flushed = await self.submitter.flush(FLUSH_TIMEOUT)
        await self.inbound.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await self.events.drain()
        if flushed:
            await self.submitter.close()
        self.state.bound = False
        await self.publisher.publish()
        await self.store.close()
        self.state.scrape(self.limiter.limit)  # the last scrape sees the bind down
        self._unscrape()
        counters = self.state.counters
        log.info(
            "%s: stopped (submitted %d, requeued %d, rejected %d, receipts %d, mo %d)",
            name,
            counters.submitted,
            counters.requeued,
            counters.rejected,
            counters.receipts,
            counters.mo,
        )

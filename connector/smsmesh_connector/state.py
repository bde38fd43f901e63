"""What the connector knows about itself: counters, bind status, and publishing it.

Routers decide failover from the `ConnectionState` each connector publishes to the
store (they never talk to connectors), so it is published on every bind change and
every `interval` seconds; a missed publication only makes the state look stale,
which routers already treat as "down". The counters are plain attributes (for logs and
tests); `ConnectionMetrics` mirrors them into Prometheus for /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from smsmesh.model import ConnectionState
from smsmesh.store import Store
from smsmesh.telemetry import metrics

log = logging.getLogger("smsmesh.connector")

MAX_ERROR_LENGTH = 200


class RateMeter:
    """Events per second over the last `span` whole seconds (1-second buckets)."""

    def __init__(self, span: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        if span < 1:
            raise ValueError("span must be at least 1 second")
        self._span = span
        self._clock = clock
        self._started = int(clock())
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first

    def add(self, count: int = 1) -> None:
        second = int(self._clock())
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += count
            return
        buckets.append([second, count])
        while buckets and buckets[0][0] < second - self._span:
            buckets.popleft()

    def rate(self) -> float:
        """Average over the complete seconds of the last `span` (0 before the first one)."""
        now = int(self._clock())
        seconds = min(self._span, now - self._started)
        if seconds <= 0:
            return 0.0
        total = sum(c for s, c in self._buckets if now - seconds <= s < now)
        return total / seconds


@dataclass
class Counters:
    """Monotonic counts since the process started (messages unless said otherwise)."""

    submitted: int = 0  # messages whose every part the SMSC accepted
    parts_submitted: int = 0  # submit_sm answered ESME_ROK
    throttled: int = 0  # submit_sm answered with a throttling status (each resent in place)
    requeued: int = 0  # messages handed back to the store to retry later or elsewhere
    rejected: int = 0  # messages refused for good
    receipts: int = 0  # delivery receipts stored
    receipts_unmatched: int = 0  # ... of which no submitted part was known (yet)
    receipts_malformed: int = 0  # receipts naming no message id (acknowledged, dropped)
    mo: int = 0  # mobile-originated messages stored
    reconnects: int = 0  # binds lost after having been up
    bind_failures: int = 0  # connect or bind attempts that failed


def short_error(text: str) -> str:
    """One line of at most MAX_ERROR_LENGTH characters, for ConnectionState.last_error."""
    line = " ".join(text.split())
    if len(line) > MAX_ERROR_LENGTH:
        line = line[: MAX_ERROR_LENGTH - 1] + "…"
    return line


class ConnectionMetrics:
    """The Prometheus series of one connection, label children bound once.

    Counters move where the events happen; gauges of live state (bind, window, TPS)
    are set by `scrape`, which the connector registers as a scrape hook.
    """

    def __init__(self, connection: str) -> None:
        self.connection = connection
        self.submit_duration = metrics.CONNECTION_SUBMIT_DURATION.labels(connection)
        self.unanswered = metrics.CONNECTION_SUBMITS_UNANSWERED.labels(connection)
        self.reconnects = metrics.CONNECTION_RECONNECTS.labels(connection)
        self.bind_failures = metrics.CONNECTION_BIND_FAILURES.labels(connection)
        self.throttled = metrics.CONNECTION_THROTTLED.labels(connection)
        self.throttle_episodes = metrics.CONNECTION_THROTTLE_EPISODES.labels(connection)
        self.receipts_unmatched = metrics.RECEIPTS_UNMATCHED.labels(connection)
        self.receipts_malformed = metrics.RECEIPTS_MALFORMED.labels(connection)
        self.inbound = metrics.INBOUND_MESSAGES.labels(connection)
        self._outcomes = {
            outcome: metrics.CONNECTION_MESSAGES.labels(connection, outcome)
            for outcome in ("submitted", "requeued", "failover", "rejected")
        }
        for outcome in self._outcomes.values():
            outcome.inc(0)  # every outcome series exists from the start
        # Children by label value, bound on first use (`labels()` costs a lock and a
        # tuple per call, on every submit and receipt).
        self._submits: dict[int, Counter] = {}
        self._receipts: dict[str, tuple[Counter, Histogram]] = {}

    def submit_response(self, command_status: int, seconds: float) -> None:
        counter = self._submits.get(command_status)
        if counter is None:
            label = metrics.status_label(command_status)
            counter = self._submits[command_status] = metrics.CONNECTION_SUBMITS.labels(
                self.connection, label
            )
        counter.inc()
        self.submit_duration.observe(seconds)

    def outcome(self, name: str) -> None:
        self._outcomes[name].inc()

    def receipt(self, state: str, latency: float | None) -> None:
        children = self._receipts.get(state)
        if children is None:
            children = self._receipts[state] = (
                metrics.RECEIPTS.labels(self.connection, state),
                metrics.RECEIPT_LATENCY.labels(self.connection, state),
            )
        children[0].inc()
        if latency is not None and latency >= 0:
            children[1].observe(latency)


class ConnectorState:
    """The live state of one connection's bind, and the counters.

    The connector sets the fields; `window_in_use` and `tps_limit` are read through
    callables so the published values are current, not copies.
    """

    def __init__(self, connection: str, window_size: int) -> None:
        self.connection = connection
        self.window_size = window_size
        self.counters = Counters()
        self.metrics = ConnectionMetrics(connection)
        self.meter = RateMeter()
        self.bound = False
        self.bound_since: float | None = None
        self.last_error: str | None = None
        self.throttled_until: float | None = None
        self.window_in_use: Callable[[], int] = lambda: 0
        self.tps_limit: Callable[[], float | None] = lambda: None

    @property
    def achieved_tps(self) -> float:
        """submit_sm accepted per second, recent average."""
        return self.meter.rate()

    def set_error(self, text: str) -> None:
        self.last_error = short_error(text)

    def scrape(self, configured_limit: float | None = None) -> None:
        """Set the live-state gauges (a scrape hook: runs right before each scrape)."""
        name = self.connection
        limit = self.tps_limit()
        metrics.CONNECTION_BOUND.labels(name).set(1 if self.bound else 0)
        metrics.CONNECTION_TPS.labels(name).set(self.achieved_tps)
        metrics.CONNECTION_TPS_EFFECTIVE_LIMIT.labels(name).set(
            metrics.UNLIMITED if limit is None else limit
        )
        metrics.CONNECTION_TPS_LIMIT.labels(name).set(
            metrics.UNLIMITED if configured_limit is None else configured_limit
        )
        metrics.CONNECTION_WINDOW_IN_USE.labels(name).set(self.window_in_use() if self.bound else 0)
        metrics.CONNECTION_WINDOW_SIZE.labels(name).set(self.window_size)

    def snapshot(self, now: float | None = None) -> ConnectionState:
        now = time.time() if now is None else now
        throttled_until = self.throttled_until
        if throttled_until is not None and throttled_until <= now:
            throttled_until = None
        return ConnectionState(
            connection=self.connection,
            bound=self.bound,
            updated_at=now,
            window_in_use=self.window_in_use() if self.bound else 0,
            window_size=self.window_size,
            tps_limit=self.tps_limit(),
            throttled_until=throttled_until,
            last_error=self.last_error,
        )


class StatePublisher:
    """Publishes `state.snapshot()` every `interval` seconds and soon after `changed()`."""

    def __init__(self, store: Store, state: ConnectorState, interval: float) -> None:
        self._store = store
        self._state = state
        self._interval = interval
        self._trigger = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.published = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="state-publisher")

    def changed(self) -> None:
        """Something routers care about changed (bind up/down): publish now."""
        self._trigger.set()

    async def publish(self) -> None:
        """Publish once, now. Failures are logged (once per outage), never raised."""
        try:
            await self._store.publish_connection_state(self._state.snapshot())
        except Exception as exc:
            if not self._failing:
                log.warning(
                    "%s: publishing connection state failed: %s", self._state.connection, exc
                )
            self._failing = True
            return
        if self._failing:
            log.info("%s: publishing connection state works again", self._state.connection)
        self._failing = False
        self.published += 1

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._trigger.wait()
            self._trigger.clear()
            await self.publish()

    async def stop(self) -> None:
        """Stop the periodic task (the caller publishes the final state itself)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

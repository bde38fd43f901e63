"""Wake-ups for `Store.wait_for_work` over PostgreSQL LISTEN/NOTIFY.

Writers call `pg_notify(channel, '')` inside the transaction that commits the work;
PostgreSQL delivers a notification only when (and if) that transaction commits, so a
wake-up never arrives before the work is visible. Each connection name has its own
channel, so a connector hears about its own work only. PostgreSQL folds identical
notifications of one transaction into one, and serialises the commits of notifying
transactions on a global lock: cheap here, because every write is a batch (one commit,
one notification per connection, per batch).

A listening session must stay open between notifications, so it is a dedicated
connection outside the pool (a pooled one would be reset and reused). Connections do
drop: server restart, failover, an administrator's pg_terminate_backend, a network
blip. A supervisor task reconnects with capped, jittered backoff, LISTENs again, and
treats the reconnect itself as a wake-up for everyone: whatever was notified while
nobody listened is found by the claim that follows. A periodic probe finds sessions
that died without the socket saying so. While the database is down, waits simply time
out; the caller's next claim reports the outage as a `StoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger(__name__)

_MAX_CHANNEL = 63  # NAMEDATALEN - 1: PostgreSQL refuses longer channel names
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0


def channel_name(schema: str, connection: str) -> str:
    """The NOTIFY channel for work on `connection` in the store living in `schema`.

    Channels are per database, not per schema: the schema is part of the name so that
    two smsmesh installations sharing a database do not wake each other.
    """
    name = f"smsmesh:{schema}:{connection}"
    if len(name.encode()) <= _MAX_CHANNEL:
        return name
    return "smsmesh:" + hashlib.sha256(f"{schema}\0{connection}".encode()).hexdigest()[:48]


Connect = Callable[[], Awaitable[asyncpg.Connection]]


class Listener:
    """One LISTEN session shared by every wait of one store; lives on one event loop."""

    def __init__(self, connect: Connect, schema: str, keepalive: float, timeout: float) -> None:
        self._connect = connect
        self._schema = schema
        self._keepalive = keepalive
        self._timeout = timeout  # for LISTEN and probes
        self._events: dict[str, asyncio.Event] = {}  # connection name -> wake-up
        self._channels: dict[str, str] = {}  # channel -> connection name
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.reconnects = 0  # sessions opened after the first one (for diagnostics, tests)

    @property
    def server_pid(self) -> int | None:
        """The listening session's backend pid, or None while disconnected."""
        conn = self._conn
        return conn.get_server_pid() if conn is not None and not conn.is_closed() else None

    async def listen(self, connection: str, max_wait: float | None = None) -> bool:
        """Start listening for `connection`; True if it was not listened to before.

        Returns once the LISTEN is active, so no notification committed after this
        returns can be missed; or after `max_wait` (default: the connect timeout) while
        the database is unreachable, in which case the session's eventual (re)connect
        wakes the waiters.
        """
        if connection in self._events:
            return False
        self._events[connection] = asyncio.Event()
        channel = channel_name(self._schema, connection)
        self._channels[channel] = connection
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name="smsmesh-pg-listener")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout if max_wait is None else max_wait):
                    await self._connected.wait()
            return True
        conn = self._conn
        # While (re)connecting, the session LISTENs to every registered channel itself.
        if self._connected.is_set() and conn is not None and not conn.is_closed():
            try:
                await conn.add_listener(channel, self._on_notify)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                log.warning("LISTEN failed (%s); reconnecting the listener", exc)
                self._lost.set()
        return True

    async def wait(self, connection: str, timeout: float) -> bool:
        """True when a wake-up for `connection` arrived (or listening just began)."""
        if await self.listen(connection, max(0.0, min(timeout, self._timeout))):
            return True
        event = self._events[connection]
        if not event.is_set():
            try:
                async with asyncio.timeout(max(0.0, timeout)):
                    await event.wait()
            except TimeoutError:
                return False
        event.clear()
        return True

    async def close(self) -> None:
        """Stop listening; pending waits return at once (their next claim says why)."""
        self._closed = True
        self._wake_all()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    # -- the session ------------------------------------------------------------------

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        connection = self._channels.get(channel)
        if connection is not None:
            self._events[connection].set()

    def _on_terminate(self, conn: object) -> None:
        self._lost.set()

    def _wake_all(self) -> None:
        for event in self._events.values():
            event.set()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._connected.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.remove_termination_listener(self._on_terminate)
            conn.terminate()  # no goodbye round trip to a server that may be gone

    async def _supervise(self) -> None:
        backoff = _BACKOFF_FIRST
        first = True
        while not self._closed:
            try:
                await self._open_session()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                await self._drop()
                first = False  # waits may have given up meanwhile: the session must wake them
                log.warning("listener cannot connect (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            backoff = _BACKOFF_FIRST
            if not first:
                # Anything notified while nobody listened is lost: wake everyone to claim.
                # (The first session needs no such wake-up: a first wait answers True.)
                self.reconnects += 1
                log.info("listener reconnected")
                self._wake_all()
            first = False
            await self._watch()
            await self._drop()

    async def _open_session(self) -> None:
        self._lost.clear()
        async with asyncio.timeout(self._timeout):
            conn = await self._connect()
            self._conn = conn
            conn.add_termination_listener(self._on_terminate)
            listened: set[str] = set()
            # Channels registered while these LISTENs run are picked up by the next round;
            # no await separates the last check from `connected`, so none is left out.
            while pending := set(self._channels) - listened:
                for channel in pending:
                    await conn.add_listener(channel, self._on_notify)
                    listened.add(channel)
        self._connected.set()

    async def _watch(self) -> None:
        """Return when the session is lost; probe it every `keepalive` seconds."""
        while not self._closed:
            try:
                async with asyncio.timeout(self._keepalive):
                    await self._lost.wait()
                return
            except TimeoutError:
                pass
            conn = self._conn
            if conn is None or conn.is_closed():
                return
            try:
                await conn.fetchval("SELECT 1", timeout=self._timeout)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                log.warning("listener session is dead (%s); reconnecting", exc)
                return

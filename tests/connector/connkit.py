"""Shared pieces of the connector tests: settings, messages, running a connector, waiting.

Everything is real: the connector talks SMPP over 127.0.0.1 to an SMSC (the project's
simulator, or `ScriptedSmsc` when a test needs an answer the simulator does not give)
and keeps its state in a SQLite file under tmp_path, which the test reads through its
own `SqliteStore` on the same file, as a router process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from smsmesh.model import MessageRecord, MessageStatus, NewMessage, Priority, new_message_id
from smsmesh.smpp.aio import AsyncSession, serve
from smsmesh.smpp.pdu import (
    BindType,
    CommandStatus,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    make_response,
)
from smsmesh.smpp.session import Event as SessionEvent
from smsmesh.smpp.session import UnbindRequested
from smsmesh.store import SqliteStore, Store
from smsmesh_connector.service import Connector
from smsmesh_connector.settings import ConnectorSettings

WAIT = 10.0  # bound for any single wait in these tests
SYSTEM_ID = "smsmesh"
PASSWORD = "secret1"


def db_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_settings(port: int, db: Path, **changes: Any) -> ConnectorSettings:
    base = ConnectorSettings(
        name="c1",
        store_url=db_url(db),
        host="127.0.0.1",
        port=port,
        system_id=SYSTEM_ID,
        password=PASSWORD,
        window=10,
        response_timeout=5.0,
        reconnect_initial=0.05,
        reconnect_max=0.2,
        state_interval=0.2,
        drain_timeout=5.0,
    )
    return replace(base, **changes)


def new_message(
    connection: str = "c1",
    *,
    text: str = "Hello from smsmesh",
    destination: str = "31612345678",
    source: str = "smsmesh",
    targets: tuple[str, ...] | None = None,
    validity: float = 3600.0,
    priority: Priority = Priority.NORMAL,
) -> NewMessage:
    now = time.time()
    return NewMessage(
        id=new_message_id(),
        application="app",
        source=source,
        destination=destination,
        text=text,
        route="r",
        targets=targets or (connection,),
        expires_at=now + validity,
        created_at=now,
        priority=priority,
    )


async def accept(store: Store, messages: Iterable[NewMessage]) -> list[str]:
    batch = list(messages)
    results = await store.accept(batch)
    return [r.message_id for r in results]


async def wait_until(
    check: Callable[[], Any], timeout: float = WAIT, interval: float = 0.02
) -> Any:
    """Poll an (async or plain) condition until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout:g}s")
        await asyncio.sleep(interval)


async def records(store: Store, ids: Iterable[str]) -> list[MessageRecord]:
    out = []
    for message_id in ids:
        record = await store.get_message(message_id)
        assert record is not None, message_id
        out.append(record)
    return out


async def wait_status(
    store: Store,
    ids: list[str],
    statuses: frozenset[MessageStatus] | None = None,
    timeout: float = WAIT,
) -> list[MessageRecord]:
    """Wait until every message has a final status (or one of `statuses`)."""
    wanted = statuses

    async def done() -> list[MessageRecord] | None:
        recs = await records(store, ids)
        ok = all((r.status in wanted) if wanted else r.status.is_final for r in recs)
        return recs if ok else None

    result: list[MessageRecord] = await wait_until(done, timeout, interval=0.05)
    return result


class RunningConnector:
    """A Connector running as a task of the test's event loop."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.stop = asyncio.Event()
        self.task: asyncio.Task[int] | None = None

    async def wait_bound(self, timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            await self.connector.bound.wait()

    async def wait_unbound(self, timeout: float = WAIT) -> None:
        await wait_until(lambda: not self.connector.bound.is_set(), timeout)

    async def shutdown(self, timeout: float = WAIT) -> int:
        self.stop.set()
        assert self.task is not None
        async with asyncio.timeout(timeout):
            return await self.task


@contextlib.asynccontextmanager
async def running(
    settings: ConnectorSettings, store: Store | None = None, *, bound: bool = True
) -> AsyncIterator[RunningConnector]:
    runner = RunningConnector(Connector(settings, store))
    runner.task = asyncio.create_task(runner.connector.run(runner.stop))
    try:
        if bound:
            waiter = asyncio.ensure_future(runner.wait_bound())
            done, _ = await asyncio.wait({waiter, runner.task}, timeout=WAIT,
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if waiter not in done:
                waiter.cancel()
                if runner.task.done():
                    runner.task.result()  # raise what ended it
                raise TimeoutError("connector did not bind")
        yield runner
    finally:
        if not runner.task.done():
            await runner.shutdown()


@contextlib.asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# --- a scriptable SMSC, for answers the simulator does not give ------------------------

Decide = Callable[[SubmitSm], "int | None"]


class ScriptedSmsc:
    """A real SMSC on serve(): each submit_sm is answered by `decide(pdu)`'s status
    (None: ESME_ROK), with ids "s1", "s2", ...; `hold` delays answers until set."""

    def __init__(self, decide: Decide | None = None) -> None:
        self.decide = decide
        self.submits: list[SubmitSm] = []
        self.submit_times: list[float] = []  # monotonic, one per submit
        self.sessions: list[AsyncSession] = []
        self.unbinds = 0
        self.hold: asyncio.Event | None = None
        self.held = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self._ids = 0
        self.changed = asyncio.Event()

    async def _authenticate(self, system_id: str, password: str, bt: BindType, peer: Any) -> int:
        if (system_id, password) == (SYSTEM_ID, PASSWORD):
            return CommandStatus.ESME_ROK
        return CommandStatus.ESME_RINVPASWD

    def _on_session(self, session: AsyncSession) -> None:
        self.sessions.append(session)
        # Count unbinds as the protocol layer reports them (a spy, not a change).
        receive = session.session.receive_data

        def spy(data: bytes | bytearray | memoryview) -> list[SessionEvent]:
            events = receive(data)
            self.unbinds += sum(1 for e in events if isinstance(e, UnbindRequested))
            return events

        session.session.receive_data = spy  # type: ignore[method-assign]

        async def handle(pdu: Pdu) -> Pdu | None:
            if not isinstance(pdu, SubmitSm):
                if pdu.response_class is None:
                    return None
                return make_response(pdu, CommandStatus.ESME_RINVCMDID)
            self.submits.append(pdu)
            self.submit_times.append(time.monotonic())
            self.changed.set()
            if self.hold is not None:
                self.held += 1
                await self.hold.wait()
            status = self.decide(pdu) if self.decide is not None else None
            if status:
                return SubmitSmResp(sequence_number=pdu.sequence_number, command_status=status)
            self._ids += 1
            return SubmitSmResp(sequence_number=pdu.sequence_number, message_id=f"s{self._ids}")

        session.on_request = handle

    async def start(self, **options: Any) -> ScriptedSmsc:
        self.server = await serve(
            self._on_session, "127.0.0.1", 0, authenticate=self._authenticate, **options
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        assert self.server is not None
        self.server.close()
        for session in self.sessions:
            session.abort()
        async with asyncio.timeout(WAIT):
            await self.server.wait_closed()

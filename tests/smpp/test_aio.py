"""The asyncio adapter over real sockets on 127.0.0.1, both roles talking to each other."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from smsmesh.smpp.aio import (
    AsyncSession,
    BindError,
    ResponseTimeout,
    SessionClosed,
    bind,
    connect,
    serve,
)
from smsmesh.smpp.codec import decode, encode
from smsmesh.smpp.pdu import (
    BindTransmitterResp,
    BindType,
    CommandStatus,
    DeliverSm,
    DeliverSmResp,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlv,
    Unbind,
    make_response,
)
from smsmesh.smpp.session import State

S = CommandStatus
WAIT = 5.0  # upper bound for any single network wait in these tests


class Smsc:
    """A real SMSC built on serve(): answers submit_sm, can hold or drop on request."""

    def __init__(self) -> None:
        self.sessions: list[AsyncSession] = []
        self.received: list[Pdu] = []
        self.max_pending = 0
        self.hold = asyncio.Event()  # submits with short_message b"hold" wait for it
        self.hold_all = False
        self.received_enough = asyncio.Event()
        self.enough = 0
        self.drop_at = 0  # abort the connection when this many submits have arrived
        self.server: asyncio.Server | None = None
        self.port = 0

    async def authenticate(
        self, system_id: str, password: str, bind_type: BindType, peer: Any
    ) -> int:
        if (system_id, password) == ("esme", "secret"):
            return S.ESME_ROK
        return S.ESME_RINVPASWD

    def on_session(self, session: AsyncSession) -> None:
        self.sessions.append(session)

        async def handle(pdu: Pdu) -> Pdu | None:
            self.max_pending = max(self.max_pending, session.session.pending_inbound)
            self.received.append(pdu)
            if self.enough and len(self.received) == self.enough:
                self.received_enough.set()
            if self.drop_at and len(self.received) == self.drop_at:
                session.abort()
                return None
            if self.hold_all or getattr(pdu, "short_message", b"") == b"hold":
                await self.hold.wait()
            elif pdu.sequence_number % 7 == 0:
                await asyncio.sleep(0.0005)  # uneven service time, so requests overlap
            return make_response(pdu, message_id=f"m{pdu.sequence_number}")

        session.on_request = handle

    async def start(self, **options: Any) -> None:
        self.server = await serve(
            self.on_session, "127.0.0.1", 0, authenticate=self.authenticate, **options
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for session in self.sessions:
            session.abort()
        await asyncio.wait_for(self.server.wait_closed(), WAIT)


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    server = Smsc()
    await server.start(window=50)
    yield server
    server.hold.set()
    await server.stop()


async def bound_client(
    smsc: Smsc, bind_type: BindType = BindType.TRANSCEIVER, **options: Any
) -> AsyncSession:
    client = await connect("127.0.0.1", smsc.port, connect_timeout=WAIT, **options)
    await bind(client, bind_type, "esme", "secret", timeout=WAIT)
    return client


def submit(text: bytes = b"hello") -> SubmitSm:
    return SubmitSm(destination_addr="4915123456789", short_message=text)


# --- binding --------------------------------------------------------------------------


async def test_bind_and_submit(smsc: Smsc) -> None:
    client = await bound_client(smsc)
    assert (client.state, client.bind_type, client.system_id) == (
        State.BOUND_TRX,
        BindType.TRANSCEIVER,
        "smsmesh",
    )
    response = await client.request(submit(), timeout=WAIT)
    assert isinstance(response, SubmitSmResp)
    assert response.command_status == S.ESME_ROK
    assert response.message_id == f"m{response.sequence_number}"
    (server_side,) = smsc.sessions
    assert (server_side.state, server_side.system_id) == (State.BOUND_TRX, "esme")
    await client.unbind(timeout=WAIT)


async def test_bad_password_is_refused(smsc: Smsc) -> None:
    client = await connect("127.0.0.1", smsc.port, connect_timeout=WAIT)
    with pytest.raises(BindError) as info:
        await bind(client, BindType.TRANSMITTER, "esme", "wrong", timeout=WAIT)
    assert info.value.status == S.ESME_RINVPASWD
    await asyncio.wait_for(client.wait_closed(), WAIT)
    assert smsc.sessions == []


async def test_connection_that_never_binds_is_closed() -> None:
    server = Smsc()
    await server.start(bind_timeout=0.2)
    try:
        client = await connect("127.0.0.1", server.port, connect_timeout=WAIT)
        await asyncio.wait_for(client.wait_closed(), WAIT)
        assert client.closed
    finally:
        await server.stop()


# --- window ---------------------------------------------------------------------------


async def test_thousand_pipelined_submits_respect_the_window(smsc: Smsc) -> None:
    client = await bound_client(smsc, window=10)
    max_in_use = 0

    async def one(i: int) -> Pdu:
        nonlocal max_in_use
        response = await client.request(submit(b"msg %d" % i), timeout=WAIT)
        max_in_use = max(max_in_use, client.window_in_use)
        return response

    responses = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(1000))), 30)
    assert all(r.command_status == S.ESME_ROK for r in responses)
    assert len({r.message_id for r in responses}) == 1000  # type: ignore[attr-defined]
    assert smsc.max_pending <= 10
    assert smsc.max_pending >= 5  # the window was actually used, not one at a time
    assert max_in_use <= 10
    assert client.window_in_use == 0
    await client.unbind(timeout=WAIT)


async def test_response_timeout_frees_the_window_slot(smsc: Smsc) -> None:
    client = await bound_client(smsc, window=1)
    started = time.monotonic()
    with pytest.raises(ResponseTimeout):
        await client.request(submit(b"hold"), timeout=0.2)
    assert time.monotonic() - started < 2
    assert client.window_in_use == 0
    assert client.session.outstanding == 0
    # The single slot is free again, and a late answer does not confuse the session.
    assert (await client.request(submit(), timeout=WAIT)).command_status == S.ESME_ROK
    smsc.hold.set()
    assert (await client.request(submit(), timeout=WAIT)).command_status == S.ESME_ROK
    await client.unbind(timeout=WAIT)


async def test_peer_dropping_mid_window_fails_pending_requests_promptly(smsc: Smsc) -> None:
    smsc.hold_all = True
    smsc.drop_at = 5
    client = await bound_client(smsc, window=10)
    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(
            *(client.request(submit(), timeout=60) for _ in range(10)), return_exceptions=True
        ),
        WAIT,
    )
    assert time.monotonic() - started < 3
    assert all(isinstance(r, SessionClosed) for r in results), results
    assert client.closed
    assert client.window_in_use == 0
    with pytest.raises(SessionClosed):
        await client.request(submit(), timeout=WAIT)


# --- keep-alive -----------------------------------------------------------------------


async def test_enquire_link_detects_a_dead_peer() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # read until the client gives up; never answer
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = await connect(
            "127.0.0.1",
            port,
            connect_timeout=WAIT,
            enquire_link_interval=0.2,
            enquire_link_timeout=0.3,
        )
        started = time.monotonic()
        await asyncio.wait_for(client.wait_closed(), WAIT)
        assert 0.4 <= time.monotonic() - started < 3
    finally:
        server.close()
        await server.wait_closed()


async def test_enquire_link_keeps_a_live_link(smsc: Smsc) -> None:
    client = await bound_client(smsc, enquire_link_interval=0.05, enquire_link_timeout=0.5)
    with pytest.raises(TimeoutError):
        # Several keep-alive rounds must pass without the link being declared dead.
        await asyncio.wait_for(client.wait_closed(), 0.5)
    assert client.state is State.BOUND_TRX
    await client.unbind(timeout=WAIT)


# --- unbind ---------------------------------------------------------------------------


async def test_graceful_unbind_waits_for_outstanding_requests(smsc: Smsc) -> None:
    smsc.hold_all = True
    smsc.enough = 5
    client = await bound_client(smsc, window=10)
    pending = [asyncio.ensure_future(client.request(submit(), timeout=WAIT)) for _ in range(5)]
    await asyncio.wait_for(smsc.received_enough.wait(), WAIT)
    unbinding = asyncio.ensure_future(client.unbind(timeout=WAIT))
    await asyncio.sleep(0)  # let unbind() begin
    assert client.closed
    with pytest.raises(SessionClosed):
        await client.request(submit(), timeout=WAIT)
    assert not unbinding.done()
    smsc.hold.set()
    responses = await asyncio.wait_for(asyncio.gather(*pending), WAIT)
    assert all(r.command_status == S.ESME_ROK for r in responses)
    await asyncio.wait_for(unbinding, WAIT)
    assert client.state is State.CLOSED
    (server_side,) = smsc.sessions
    await asyncio.wait_for(server_side.wait_closed(), WAIT)
    assert server_side.state is State.CLOSED


# --- inbound requests -----------------------------------------------------------------


async def test_deliveries_are_acked_after_the_handler_returns(smsc: Smsc) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    stored: list[bytes] = []

    async def on_request(pdu: Pdu) -> Pdu | None:
        assert isinstance(pdu, DeliverSm)
        if pdu.short_message == b"boom":
            raise RuntimeError("store unavailable")
        started.set()
        await release.wait()
        stored.append(pdu.short_message)  # durable before the ack
        return make_response(pdu)

    client = await bound_client(smsc, on_request=on_request)
    (server_side,) = smsc.sessions
    delivery = asyncio.ensure_future(
        server_side.request(
            DeliverSm(esm_class=0x04, short_message=b"id:1 stat:DELIVRD"), timeout=WAIT
        )
    )
    await asyncio.wait_for(started.wait(), WAIT)
    assert not delivery.done()
    release.set()
    response = await asyncio.wait_for(delivery, WAIT)
    assert response == DeliverSmResp(sequence_number=response.sequence_number)
    assert stored == [b"id:1 stat:DELIVRD"]
    failed = await server_side.request(DeliverSm(short_message=b"boom"), timeout=WAIT)
    assert failed.command_status == S.ESME_RX_T_APPN
    await client.unbind(timeout=WAIT)


async def test_inbound_concurrency_is_bounded(smsc: Smsc) -> None:
    release = asyncio.Event()
    three_running = asyncio.Event()
    active = 0
    peak = 0

    async def on_request(pdu: Pdu) -> Pdu | None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if active == 3:
            three_running.set()
        await release.wait()
        active -= 1
        return make_response(pdu)

    client = await bound_client(smsc, on_request=on_request, inbound_limit=3)
    (server_side,) = smsc.sessions
    deliveries = [
        asyncio.ensure_future(server_side.request(DeliverSm(short_message=b"%d" % i), timeout=WAIT))
        for i in range(20)
    ]
    await asyncio.wait_for(three_running.wait(), WAIT)
    assert client.session.pending_inbound >= 3
    release.set()
    responses = await asyncio.wait_for(asyncio.gather(*deliveries), WAIT)
    assert [r.command_status for r in responses] == [S.ESME_ROK] * 20
    assert peak == 3
    await client.unbind(timeout=WAIT)


async def test_a_handler_may_answer_at_once_or_with_a_future(smsc: Smsc) -> None:
    """No task per request: a plain return is sent at once, a Future when it is done;
    a handler that raises, or whose Future fails, asks the SMSC to retry."""
    loop = asyncio.get_running_loop()
    pending: list[tuple[Pdu, asyncio.Future[Pdu | None]]] = []
    started = {2: asyncio.Event(), 3: asyncio.Event()}  # how many futures were handed out

    def on_request(pdu: Pdu) -> Pdu | asyncio.Future[Pdu | None] | None:
        assert isinstance(pdu, DeliverSm)
        if pdu.short_message == b"now":
            return make_response(pdu)
        if pdu.short_message == b"raise":
            raise RuntimeError("bug")
        future: asyncio.Future[Pdu | None] = loop.create_future()
        pending.append((pdu, future))
        if len(pending) in started:
            started[len(pending)].set()
        return future

    client = await bound_client(smsc, on_request=on_request, inbound_limit=2)
    (server_side,) = smsc.sessions

    def deliver(text: bytes) -> asyncio.Future[Pdu]:
        return asyncio.ensure_future(
            server_side.request(DeliverSm(short_message=text), timeout=WAIT)
        )

    assert (await asyncio.wait_for(deliver(b"now"), WAIT)).command_status == S.ESME_ROK
    assert (await asyncio.wait_for(deliver(b"raise"), WAIT)).command_status == S.ESME_RX_T_APPN
    later = [deliver(b"later %d" % i) for i in range(3)]
    await asyncio.wait_for(started[2].wait(), WAIT)
    with pytest.raises(TimeoutError):  # two handlers is the limit: the third waits
        await asyncio.wait_for(started[3].wait(), 0.1)
    assert not any(d.done() for d in later)
    pending[0][1].set_result(make_response(pending[0][0]))
    assert (await asyncio.wait_for(later[0], WAIT)).command_status == S.ESME_ROK
    pending[1][1].set_exception(RuntimeError("store down"))
    assert (await asyncio.wait_for(later[1], WAIT)).command_status == S.ESME_RX_T_APPN
    await asyncio.wait_for(started[3].wait(), WAIT)  # a slot came free: the third started
    pending[2][1].cancel()
    assert (await asyncio.wait_for(later[2], WAIT)).command_status == S.ESME_RX_T_APPN
    await client.unbind(timeout=WAIT)


async def test_peer_unbind_waits_for_the_handler_to_ack(smsc: Smsc) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def on_request(pdu: Pdu) -> Pdu | None:
        started.set()
        await release.wait()
        return make_response(pdu)

    client = await bound_client(smsc, BindType.RECEIVER, on_request=on_request)
    (server_side,) = smsc.sessions
    delivery = asyncio.ensure_future(server_side.request(DeliverSm(), timeout=WAIT))
    await asyncio.wait_for(started.wait(), WAIT)
    server_side.send(Unbind())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.wait_closed(), 0.2)  # still owes the delivery's ack
    assert client.state is State.UNBIND_RECEIVED
    release.set()
    assert (await asyncio.wait_for(delivery, WAIT)).command_status == S.ESME_ROK
    await asyncio.wait_for(client.wait_closed(), WAIT)
    await asyncio.wait_for(server_side.wait_closed(), WAIT)


async def test_peer_unbind_stops_waiting_for_a_stuck_handler(smsc: Smsc) -> None:
    started = asyncio.Event()

    async def on_request(pdu: Pdu) -> Pdu | None:
        started.set()
        await asyncio.Event().wait()  # never answers
        return None

    client = await bound_client(smsc, on_request=on_request, unbind_grace=0.2)
    (server_side,) = smsc.sessions
    delivery = asyncio.ensure_future(server_side.request(DeliverSm(), timeout=WAIT))
    await asyncio.wait_for(started.wait(), WAIT)
    server_side.send(Unbind())
    await asyncio.wait_for(client.wait_closed(), WAIT)
    with pytest.raises(SessionClosed):
        await asyncio.wait_for(delivery, WAIT)
    for task in list(client._tasks):
        task.cancel()


async def test_smsc_cannot_deliver_to_a_transmitter(smsc: Smsc) -> None:
    client = await bound_client(smsc, BindType.TRANSMITTER)
    (server_side,) = smsc.sessions
    from smsmesh.smpp.session import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        await server_side.request(DeliverSm(), timeout=WAIT)
    await client.unbind(timeout=WAIT)


# --- requests without a coroutine (start_request) ------------------------------------


async def test_start_request_holds_its_slot_until_the_answer(smsc: Smsc) -> None:
    smsc.enough = 2
    client = await bound_client(smsc, window=2)
    first = client.start_request(submit(b"hold"), timeout=WAIT)
    second = client.start_request(submit(b"hold"), timeout=WAIT)
    assert client.window_in_use == 2
    assert not client.can_request
    with pytest.raises(RuntimeError, match="free window slot"):
        client.start_request(submit(), timeout=WAIT)
    # request() waits for one of those slots (start_request's slots are handed over too).
    queued = asyncio.ensure_future(client.request(submit(), timeout=WAIT))
    await asyncio.wait_for(smsc.received_enough.wait(), WAIT)
    await asyncio.sleep(0.05)  # time enough for a third submit, had it been sent
    assert len(smsc.received) == 2
    smsc.hold.set()
    responses = await asyncio.wait_for(asyncio.gather(first, second, queued), WAIT)
    assert [r.command_status for r in responses] == [S.ESME_ROK] * 3
    assert client.window_in_use == 0
    assert client.can_request
    await client.unbind(timeout=WAIT)


async def test_start_request_slot_is_free_for_the_next_one_in_its_callback(smsc: Smsc) -> None:
    client = await bound_client(smsc, window=1)
    done = asyncio.get_running_loop().create_future()
    answers: list[int] = []

    def answered(future: asyncio.Future[Pdu]) -> None:
        answers.append(future.result().command_status)
        if len(answers) == 20:
            done.set_result(None)
            return
        assert client.can_request  # the one slot is already back
        client.start_request(submit(), timeout=WAIT).add_done_callback(answered)

    client.start_request(submit(), timeout=WAIT).add_done_callback(answered)
    await asyncio.wait_for(done, WAIT)
    assert answers == [S.ESME_ROK] * 20
    assert smsc.max_pending <= 1
    await client.unbind(timeout=WAIT)


async def test_start_request_timeout_fails_it_and_frees_the_slot(smsc: Smsc) -> None:
    client = await bound_client(smsc, window=1)
    started = time.monotonic()
    future = client.start_request(submit(b"hold"), timeout=0.2)
    with pytest.raises(ResponseTimeout):
        await asyncio.wait_for(future, WAIT)
    assert 0.15 <= time.monotonic() - started < 2
    assert (client.window_in_use, client.session.outstanding) == (0, 0)
    assert client.can_request
    smsc.hold.set()  # the late answer is ignored; the slot serves the next request
    response = await asyncio.wait_for(client.start_request(submit(), timeout=WAIT), WAIT)
    assert response.command_status == S.ESME_ROK
    await client.unbind(timeout=WAIT)


async def test_start_request_fails_with_session_closed_when_the_peer_drops(smsc: Smsc) -> None:
    smsc.hold_all = True
    smsc.drop_at = 3
    client = await bound_client(smsc, window=5)
    futures = [client.start_request(submit(), timeout=60) for _ in range(3)]
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), WAIT)
    assert all(isinstance(r, SessionClosed) for r in results), results
    assert client.window_in_use == 0
    assert not client.can_request
    with pytest.raises(SessionClosed):
        client.start_request(submit(), timeout=WAIT)


async def test_unbind_waits_for_started_requests(smsc: Smsc) -> None:
    smsc.hold_all = True
    smsc.enough = 2
    client = await bound_client(smsc, window=5)
    futures = [client.start_request(submit(), timeout=WAIT) for _ in range(2)]
    await asyncio.wait_for(smsc.received_enough.wait(), WAIT)
    unbinding = asyncio.ensure_future(client.unbind(timeout=WAIT))
    await asyncio.sleep(0)  # let unbind() begin
    assert not client.can_request
    with pytest.raises(SessionClosed):
        client.start_request(submit(), timeout=WAIT)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(unbinding), 0.1)
    smsc.hold.set()
    responses = await asyncio.wait_for(asyncio.gather(*futures), WAIT)
    assert [r.command_status for r in responses] == [S.ESME_ROK] * 2
    await asyncio.wait_for(unbinding, WAIT)
    assert client.state is State.CLOSED


async def test_when_ready_calls_back_once_a_slot_frees(smsc: Smsc) -> None:
    client = await bound_client(smsc, window=1)
    ready = asyncio.Event()
    client.when_ready(ready.set)  # a slot is free now: called at the next iteration
    await asyncio.wait_for(ready.wait(), WAIT)
    ready.clear()
    held = client.start_request(submit(b"hold"), timeout=WAIT)
    client.when_ready(ready.set)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ready.wait(), 0.1)
    smsc.hold.set()
    await asyncio.wait_for(ready.wait(), WAIT)
    assert client.can_request
    assert (await held).command_status == S.ESME_ROK
    await client.unbind(timeout=WAIT)


async def test_when_ready_calls_back_once_writing_resumes() -> None:
    resume = asyncio.Event()

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readexactly(16)
        length, _, _, seq = struct.unpack(">IIII", header)
        await reader.readexactly(length - 16)
        writer.write(encode(BindTransmitterResp(sequence_number=seq, system_id="slow")))
        await writer.drain()
        await resume.wait()  # not read until then: the client's buffers fill up
        while await reader.read(1 << 20):
            pass

    server = await asyncio.start_server(slow_reader, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await connect("127.0.0.1", port, connect_timeout=WAIT, window=400)
    try:
        await bind(client, BindType.TRANSMITTER, "esme", "secret", timeout=WAIT)
        payload = (Tlv(Tag.MESSAGE_PAYLOAD, b"x" * 60_000),)
        futures = []
        for _ in range(400):  # bounded: until the transport asks us to stop writing
            if not client.can_request:
                break
            futures.append(client.start_request(SubmitSm(destination_addr="1", tlvs=payload)))
            await asyncio.sleep(0)
        assert client._write_paused
        assert not client.can_request
        assert client.window_in_use == len(futures) < 400
        ready = asyncio.Event()
        client.when_ready(ready.set)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ready.wait(), 0.1)
        resume.set()
        await asyncio.wait_for(ready.wait(), WAIT)
        assert client.can_request
    finally:
        client.abort()
        server.close()
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), WAIT)
    assert all(isinstance(r, SessionClosed) for r in results)


# --- response deadlines ---------------------------------------------------------------


async def test_a_shorter_timeout_expires_before_longer_ones_sent_earlier(smsc: Smsc) -> None:
    client = await bound_client(smsc, window=10)
    started = time.monotonic()
    long = client.start_request(submit(b"hold"), timeout=WAIT)
    short = client.start_request(submit(b"hold"), timeout=0.2)  # sent after, due before
    with pytest.raises(ResponseTimeout):
        await asyncio.wait_for(short, WAIT)
    assert time.monotonic() - started < 1.5
    assert not long.done()
    smsc.hold.set()
    assert (await asyncio.wait_for(long, WAIT)).command_status == S.ESME_ROK
    await client.unbind(timeout=WAIT)


async def test_a_short_timeout_after_long_answered_ones_is_not_late(smsc: Smsc) -> None:
    client = await bound_client(smsc, window=10)
    for _ in range(3):  # answered: their long deadlines are gone, their timer may not be
        assert (await client.request(submit(), timeout=30)).command_status == S.ESME_ROK
    started = time.monotonic()
    with pytest.raises(ResponseTimeout):
        await asyncio.wait_for(client.request(submit(b"hold"), timeout=0.2), WAIT)
    assert time.monotonic() - started < 1.5
    assert client.window_in_use == 0
    smsc.hold.set()  # else the SMSC's unbind waits for the held submit's handler
    await client.unbind(timeout=WAIT)


async def test_requests_answered_out_of_order_keep_their_own_deadlines(smsc: Smsc) -> None:
    client = await bound_client(smsc, window=10)
    held = client.start_request(submit(b"hold"), timeout=0.3)
    answered = await asyncio.wait_for(
        asyncio.gather(*(client.start_request(submit(), timeout=0.3) for _ in range(5))), WAIT
    )
    assert [r.command_status for r in answered] == [S.ESME_ROK] * 5
    with pytest.raises(ResponseTimeout):
        await asyncio.wait_for(held, WAIT)
    assert (client.window_in_use, client.session.outstanding) == (0, 0)
    # Entries of answered and expired requests do not pile up behind the timer.
    assert not client._deadlines
    smsc.hold.set()
    many = [client.request(submit(b"%d" % i), timeout=WAIT) for i in range(300)]
    responses = await asyncio.wait_for(asyncio.gather(*many), 30)
    assert all(r.command_status == S.ESME_ROK for r in responses)
    assert not client._deadlines
    await client.unbind(timeout=WAIT)


# --- flow control ---------------------------------------------------------------------


async def test_a_peer_that_stops_reading_creates_backpressure() -> None:
    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readexactly(16)
        length, _, _, seq = struct.unpack(">IIII", header)
        bind_request = decode(header + await reader.readexactly(length - 16))
        assert BindType.of(bind_request) is BindType.TRANSMITTER
        writer.write(encode(BindTransmitterResp(sequence_number=seq, system_id="stall")))
        await writer.drain()
        await asyncio.Event().wait()  # never read again

    server = await asyncio.start_server(stalls, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await connect(
        "127.0.0.1",
        port,
        connect_timeout=WAIT,
        window=400,
        enquire_link_interval=0.5,
        enquire_link_timeout=0.5,
    )
    try:
        await bind(client, BindType.TRANSMITTER, "esme", "secret", timeout=WAIT)
        big = SubmitSm(tlvs=(Tlv(Tag.MESSAGE_PAYLOAD, b"x" * 60_000),))
        requests = [
            asyncio.ensure_future(
                client.request(SubmitSm(tlvs=big.tlvs, destination_addr="1"), timeout=30)
            )
            for _ in range(400)
        ]
        transport = client._transport
        assert transport is not None
        for _ in range(500):  # bounded: until the kernel buffers are full and we paused
            if client._write_paused and client._drain_waiters:
                break
            await asyncio.sleep(0.01)
        assert client._write_paused
        # Requests now wait instead of piling 24 MB into the transport's buffer.
        assert transport.get_write_buffer_size() < 512 * 1024
        assert client.session.outstanding < 400
        # The keep-alive probe is not held back by flow control: it finds the peer dead.
        await asyncio.wait_for(client.wait_closed(), WAIT)
        results = await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), WAIT)
        assert all(isinstance(r, SessionClosed) for r in results)
    finally:
        client.abort()
        server.close()


# --- speed ----------------------------------------------------------------------------


async def test_throughput_through_one_bind(smsc: Smsc) -> None:
    client = await bound_client(smsc, window=100)
    total = 5000
    per_worker = total // 100

    async def worker() -> None:
        for _ in range(per_worker):
            response = await client.request(submit(), timeout=WAIT)
            assert response.command_status == S.ESME_ROK

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(100))), 30)
    rate = total / (time.perf_counter() - started)
    print(f"\n{rate:.0f} submit_sm/s through one bind (window 100, client and SMSC in one process)")
    # The requirement is > 5,000/s for the connector alone; here one process also runs the
    # SMSC side, so this bound leaves room for a loaded CI machine.
    assert rate > 3000
    await client.unbind(timeout=WAIT)


# --- interop --------------------------------------------------------------------------


def _smpplib_session(port: int) -> list[Any]:
    """A blocking smpplib ESME: bind, submit one message, read its response, unbind."""
    import smpplib.client

    sent: list[Any] = []
    client = smpplib.client.Client("127.0.0.1", port, timeout=WAIT, allow_unknown_opt_params=True)
    client.set_message_sent_handler(lambda pdu: sent.append(pdu))
    client.connect()
    try:
        client.bind_transceiver(system_id="esme", password="secret")
        client.send_message(
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="12345",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr="4915123456789",
            short_message=b"hello from smpplib",
            registered_delivery=1,
        )
        client.read_once()  # the submit_sm_resp
        unbind_resp = client.unbind()
        sent.append(unbind_resp)
    finally:
        client.disconnect()
    return sent


@pytest.mark.interop
async def test_smpplib_client_binds_and_submits(smsc: Smsc) -> None:
    submit_resp, unbind_resp = await asyncio.wait_for(
        asyncio.to_thread(_smpplib_session, smsc.port), 2 * WAIT
    )
    assert submit_resp.command == "submit_sm_resp"
    assert int(submit_resp.status) == S.ESME_ROK
    (received,) = smsc.received
    assert isinstance(received, SubmitSm)
    assert received.short_message == b"hello from smpplib"
    assert (received.destination_addr, received.registered_delivery) == ("4915123456789", 1)
    message_id = submit_resp.message_id
    assert (message_id.decode() if isinstance(message_id, bytes) else message_id) == (
        f"m{received.sequence_number}"
    )
    assert unbind_resp.command == "unbind_resp"
    (server_side,) = smsc.sessions
    await asyncio.wait_for(server_side.wait_closed(), WAIT)


def test_works_on_uvloop() -> None:
    """The connector runs on uvloop, whose transports are not asyncio.Transport subclasses."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        server = Smsc()
        await server.start()
        try:
            client = await bound_client(server, window=20)
            responses = await asyncio.wait_for(
                asyncio.gather(*(client.request(submit(), timeout=WAIT) for _ in range(200))),
                WAIT,
            )
            assert all(r.command_status == S.ESME_ROK for r in responses)
            assert server.max_pending <= 20
            await client.unbind(timeout=WAIT)
            assert client.state is State.CLOSED
        finally:
            await server.stop()

    uvloop.run(scenario())


async def test_tls_bind_and_submit(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command not available to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = await asyncio.create_subprocess_exec(
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(made.wait(), 30) == 0
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))  # verifies chain and hostname

    server = Smsc()
    await server.start(ssl=server_ctx)
    try:
        client = await connect(
            "127.0.0.1",
            server.port,
            ssl=client_ctx,
            server_hostname="localhost",
            connect_timeout=WAIT,
        )
        await bind(client, BindType.TRANSMITTER, "esme", "secret", timeout=WAIT)
        response = await client.request(submit(), timeout=WAIT)
        assert response.command_status == S.ESME_ROK
        await client.unbind(timeout=WAIT)
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(
                "127.0.0.1",
                server.port,
                ssl=client_ctx,
                server_hostname="other",
                connect_timeout=WAIT,
            )
    finally:
        await server.stop()

"""Start, stop, recovery, TLS, bind types and pacing of a connector."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import time
from pathlib import Path

import pytest
from connkit import (
    WAIT,
    ScriptedSmsc,
    accept,
    make_settings,
    new_message,
    records,
    running,
    wait_status,
    wait_until,
)

from smsmesh.model import MessageStatus
from smsmesh.simulator import Simulator
from smsmesh.smpp.pdu import BindType, DeliverSm
from smsmesh.store import SqliteStore
from smsmesh_connector.service import Connector
from smsmesh_connector.settings import TlsSettings

SUBMITTED = frozenset({MessageStatus.SUBMITTED})
DELIVERED = frozenset({MessageStatus.DELIVERED})


async def requeued(store: SqliteStore, ids: list[str]) -> list[str]:
    """Messages handed back to the queue (status accepted, last event "requeued")."""
    return [
        r.id
        for r in await records(store, ids)
        if r.status is MessageStatus.ACCEPTED and r.events[-1].kind == "requeued"
    ]


async def test_graceful_stop_requeues_unsent_drains_in_flight_and_unbinds(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    ids = await accept(store, [new_message(destination=f"3161600{i:04d}") for i in range(40)])
    hold = asyncio.Event()
    scripted.hold = hold
    settings = make_settings(scripted.port, db, window=10)  # 20 in progress at most
    async with running(settings) as conn:
        await wait_until(lambda: scripted.held == 10)
        conn.stop.set()
        # Claimed but never sent: back in the queue at once, while 10 await answers.
        await wait_until(lambda: _count(requeued(store, ids), 10))
        assert conn.connector.bound.is_set()
        assert scripted.unbinds == 0
        hold.set()
        assert await conn.shutdown() == 0
    recs = await records(store, ids)
    sent = {p.destination_addr for p in scripted.submits}
    assert len(scripted.submits) == 10  # nothing new was sent after stop
    assert {r.destination for r in recs if r.status is MessageStatus.SUBMITTED} == sent
    assert sum(r.status is MessageStatus.ACCEPTED for r in recs) == 30
    assert len(await requeued(store, ids)) == 10  # the other 20 were never claimed
    assert scripted.unbinds == 1
    state = (await store.connection_states())["c1"]
    assert state.bound is False


async def _count(pending: object, expected: int) -> bool:
    found = await pending  # type: ignore[misc]
    return len(found) == expected


async def test_stop_gives_up_on_responses_after_the_drain_timeout(
    store: SqliteStore, db: Path
) -> None:
    smsc = await ScriptedSmsc().start(window=50, unbind_grace=0.1)
    try:
        smsc.hold = asyncio.Event()  # never answered
        ids = await accept(store, [new_message() for _ in range(3)])
        settings = make_settings(smsc.port, db, drain_timeout=0.3)
        async with running(settings) as conn:
            await wait_until(lambda: smsc.held == 3)
            started = time.monotonic()
            assert await conn.shutdown() == 0
            assert time.monotonic() - started < 3.0
        recs = await records(store, ids)
        assert all(r.status is MessageStatus.ACCEPTED for r in recs)
        assert all("no response before stop" in str(r.events[-1].detail) for r in recs)
    finally:
        await smsc.stop()


async def test_stop_while_the_smsc_is_unreachable(store: SqliteStore, db: Path) -> None:
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()  # nothing listens on `port` any more
    async with running(make_settings(port, db), bound=False) as conn:
        await wait_until(lambda: conn.connector.state.counters.bind_failures >= 2)
        started = time.monotonic()
        assert await conn.shutdown() == 0
        assert time.monotonic() - started < 2.0
    state = (await store.connection_states())["c1"]
    assert state.bound is False
    assert state.last_error is not None
    assert f"127.0.0.1:{port}" in state.last_error


async def test_start_recovers_what_a_dead_predecessor_left_in_flight(
    sim: Simulator, store: SqliteStore, db: Path
) -> None:
    ids = await accept(store, [new_message(destination=f"3161700{i:04d}") for i in range(5)])
    claimed = await store.claim("c1", 5, time.time())  # a predecessor claimed, then died
    assert len(claimed) == 5
    async with running(make_settings(sim.port, db)) as conn:
        await wait_status(store, ids, DELIVERED)
        assert conn.connector.recovered == 5


async def test_receiver_bind_takes_mo_and_sends_nothing(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    (message_id,) = await accept(store, [new_message()])
    settings = make_settings(scripted.port, db, bind_type=BindType.RECEIVER)
    async with running(settings) as conn:
        session = scripted.sessions[0]
        assert session.bind_type is BindType.RECEIVER
        response = await session.request(DeliverSm(short_message=b"hi"), WAIT)
        assert response.command_status == 0
        assert conn.connector.state.counters.mo == 1
    assert scripted.submits == []
    (rec,) = await records(store, [message_id])
    assert rec.status is MessageStatus.ACCEPTED


async def test_tps_limit_holds_on_a_real_clock(
    sim: Simulator, store: SqliteStore, db: Path
) -> None:
    rate, count = 100.0, 201  # 200 intervals of 10 ms: 2 s
    ids = await accept(store, [new_message(destination=f"3161800{i:04d}") for i in range(count)])
    async with running(make_settings(sim.port, db, window=20, tps=rate)):
        # Waiting on the simulator, not by polling the store: the SMSC shares this
        # event loop, and its receive times are the measurement.
        await sim.wait_for(lambda: sim.counters.accepted >= count, timeout=20)
        await wait_status(store, ids, DELIVERED)
    times = sorted(r.at for r in sim.received)
    elapsed = times[-1] - times[0]
    achieved = (count - 1) / elapsed
    assert achieved == pytest.approx(rate, rel=0.05)
    # Paced, not bursty: no second holds more than the rate (plus scheduling slack;
    # the exact spacing is tested on a controlled clock in test_ratelimit).
    busiest = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
    assert busiest <= rate + 5


async def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command not available to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = await asyncio.create_subprocess_exec(
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "1", "-subj", "/CN=smsc.test",
        "-addext", "subjectAltName=DNS:smsc.test", "-keyout", str(key), "-out", str(cert),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await asyncio.wait_for(made.wait(), 30) == 0
    return cert, key


async def test_tls_bind_verifies_the_certificate(
    tmp_path: Path, store: SqliteStore, db: Path
) -> None:
    cert, key = await _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    smsc = await ScriptedSmsc().start(ssl=server_ctx)
    try:
        (message_id,) = await accept(store, [new_message()])
        good = TlsSettings(enabled=True, server_name="smsc.test", ca_data=cert.read_text())
        async with running(make_settings(smsc.port, db, tls=good)):
            await wait_status(store, [message_id], SUBMITTED)
        wrong_name = TlsSettings(enabled=True, server_name="other.test", ca_data=cert.read_text())
        connector = Connector(make_settings(smsc.port, db, tls=wrong_name))
        stop = asyncio.Event()
        task = asyncio.create_task(connector.run(stop))
        await wait_until(lambda: connector.state.counters.bind_failures >= 1)
        stop.set()
        assert await asyncio.wait_for(task, WAIT) == 0
        assert connector.state.last_error is not None
        assert "TLS certificate" in connector.state.last_error
        assert "other.test" in connector.state.last_error
        assert len(smsc.sessions) == 1  # the unverified server never saw a bind
    finally:
        await smsc.stop()


async def test_serve_exits_1_when_the_store_cannot_be_used(tmp_path: Path) -> None:
    from smsmesh_connector.service import serve

    settings = make_settings(2775, tmp_path / "missing-dir" / "x.db")
    assert await asyncio.wait_for(serve(settings, asyncio.Event()), WAIT) == 1

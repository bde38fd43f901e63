"""MO injection, dropped connections, graceful stop and the `serve()` entry point."""

from __future__ import annotations

import asyncio
import socket

import pytest

from smsmesh.simulator import MoRejected, NoReceiver, SimulatorSettings, serve
from smsmesh.smpp import BindType, CommandStatus, SessionClosed
from smsmesh.smpp.codec import decode, encode, peek_length
from smsmesh.smpp.pdu import BindTransceiver, Pdu, Unbind, UnbindResp
from smsmesh.smpp.text import decode as decode_text
from smsmesh.smpp.text import parse_concat

from .conftest import WAIT, OpenEsme, StartSimulator

S = CommandStatus


async def test_inject_mo_reaches_the_client_as_a_plain_deliver_sm(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    esme = await open_esme(sim, BindType.RECEIVER)
    await sim.inject_mo("+4915123456789", "12345", "STOP please")
    assert sim.counters.mo_sent == 1
    pdu = esme.deliveries.get_nowait()  # acknowledged, so already handed to the client
    assert (pdu.esm_class, pdu.data_coding) == (0, 0)
    assert (pdu.source_addr_ton, pdu.source_addr, pdu.destination_addr) == (
        1,
        "4915123456789",
        "12345",
    )
    assert decode_text(pdu.short_message, pdu.data_coding) == "STOP please"


async def test_inject_mo_uses_ucs2_when_needed(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    esme = await open_esme(sim)
    await sim.inject_mo("4915123", "12345", "Привет 👋")
    pdu = await esme.next()
    assert pdu.data_coding == 0x08
    assert pdu.short_message == "Привет 👋".encode("utf-16-be")


async def test_long_mo_arrives_as_concatenated_parts(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    esme = await open_esme(sim)
    text = "".join(f"word{n} " for n in range(60))  # 400+ GSM characters
    await sim.inject_mo("4915123", "12345", text)
    parts = [esme.deliveries.get_nowait() for _ in range(esme.deliveries.qsize())]
    assert len(parts) == 3
    payloads = {}
    references = set()
    for pdu in parts:
        assert pdu.esm_class == 0x40
        info, payload = parse_concat(pdu.short_message, True)
        assert info is not None
        assert info.total == 3
        references.add(info.reference)
        payloads[info.part] = payload
    assert len(references) == 1
    assert decode_text(b"".join(payloads[p] for p in (1, 2, 3)), 0) == text


async def test_inject_mo_targets_the_named_account(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    a = await open_esme(sim, BindType.RECEIVER, system_id="a")
    b = await open_esme(sim, BindType.RECEIVER, system_id="b")
    await sim.inject_mo("1", "2", "for b", system_id="b")
    assert (a.seen, b.seen) == (0, 1)


async def test_inject_mo_without_a_receiver_fails_clearly(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    await open_esme(sim, BindType.TRANSMITTER)
    with pytest.raises(NoReceiver, match="no receiver bound"):
        await sim.inject_mo("1", "2", "hi")
    await open_esme(sim, BindType.RECEIVER, system_id="x")
    with pytest.raises(NoReceiver, match="'esme'"):
        await sim.inject_mo("1", "2", "hi", system_id="esme")


async def test_inject_mo_refused_by_the_client_raises(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    esme = await open_esme(sim)
    esme.status = S.ESME_RX_P_APPN
    with pytest.raises(MoRejected) as info:
        await sim.inject_mo("1", "2", "hi")
    assert info.value.status == S.ESME_RX_P_APPN
    assert sim.counters.mo_sent == 0


async def test_mo_interval_sends_replies_to_bound_receivers(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(mo_interval=0.05)
    esme = await open_esme(sim)
    await esme.submit(source_addr="ACME", destination_addr="4915123456789")
    # the reply comes from the handset the account last wrote to
    while True:
        pdu = await esme.next()
        if pdu.source_addr == "4915123456789":
            break
    assert pdu.esm_class == 0
    assert pdu.destination_addr == "ACME"
    assert decode_text(pdu.short_message, pdu.data_coding).startswith("Simulated reply #")


async def test_drop_connections_closes_clients_promptly(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    clients = [await open_esme(sim) for _ in range(3)]
    await sim.wait_sessions(3, WAIT)
    assert sim.drop_connections() == 3
    for client in clients:
        assert client.session is not None
        await asyncio.wait_for(client.session.wait_closed(), WAIT)
    await sim.wait_sessions(0, WAIT)
    with pytest.raises(SessionClosed):
        await clients[0].submit()


async def _read_pdu(reader: asyncio.StreamReader) -> Pdu:
    header = await asyncio.wait_for(reader.readexactly(4), WAIT)
    length = peek_length(header)
    assert length is not None
    body = await asyncio.wait_for(reader.readexactly(length - 4), WAIT)
    return decode(header + body)


async def test_stop_unbinds_every_session_gracefully(start_simulator: StartSimulator) -> None:
    sim = await start_simulator()
    # A hand-written client, to see exactly what the simulator sends on stop.
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(encode(BindTransceiver(sequence_number=1, system_id="raw", password="x")))
    bind_resp = await _read_pdu(reader)
    assert bind_resp.command_status == S.ESME_ROK
    stopping = asyncio.create_task(sim.stop(timeout=WAIT))
    unbind = await _read_pdu(reader)
    assert isinstance(unbind, Unbind)
    writer.write(encode(UnbindResp(sequence_number=unbind.sequence_number)))
    await asyncio.wait_for(stopping, WAIT)
    assert await asyncio.wait_for(reader.read(), WAIT) == b""  # then the socket is closed
    writer.close()
    assert sim.sessions == 0


async def test_serve_runs_until_stop_then_closes() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop, ready = asyncio.Event(), asyncio.Event()
    settings = SimulatorSettings(port=port, receipt_delay=0)
    task = asyncio.create_task(serve(settings, stop, ready=ready))
    await asyncio.wait_for(ready.wait(), WAIT)
    _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
    writer.close()
    stop.set()
    assert await asyncio.wait_for(task, WAIT) == 0
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)


async def test_serve_reports_a_port_in_use(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await asyncio.wait_for(serve(SimulatorSettings(port=port), asyncio.Event()), WAIT)
    assert result == 1
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text

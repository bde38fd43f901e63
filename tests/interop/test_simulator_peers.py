"""The SMSC simulator against ESMEs written outside this project (PyPI smpplib, aiosmpplib).

If the simulator only worked with smsmesh's own client, a shared misreading of SMPP
would go unnoticed: here independent implementations bind, submit, and read the
delivery receipt (and an MO) the way they would from a carrier.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from smsmesh.simulator import Simulator, SimulatorSettings
from smsmesh.smpp import CommandStatus

pytestmark = pytest.mark.interop

WAIT = 5.0  # bound of every wait
SYSTEM_ID = "peer"
PASSWORD = "secret"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(
        SimulatorSettings(port=0, receipt_delay=0.05, system_id=SYSTEM_ID, password=PASSWORD)
    )
    await simulator.start()
    yield simulator
    await simulator.stop(timeout=WAIT)


# --- smpplib (blocking, run in a thread) ------------------------------------------------


def _as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _smpplib_submit_and_read_receipt(port: int) -> dict[str, Any]:
    """Bind transceiver, submit with a receipt requested, read until the receipt came."""
    import smpplib.client
    import smpplib.consts

    sent: list[Any] = []
    received: list[Any] = []
    client = smpplib.client.Client("127.0.0.1", port, timeout=WAIT, allow_unknown_opt_params=True)
    client.set_message_sent_handler(lambda pdu: sent.append(pdu))
    client.set_message_received_handler(lambda pdu: received.append(pdu))
    client.connect()
    try:
        client.bind_transceiver(system_id=SYSTEM_ID, password=PASSWORD)
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_INTL,
            source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            source_addr="12345",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr="4915123456789",
            short_message=b"hello from smpplib",
            registered_delivery=1,
        )
        for _ in range(10):  # each read waits at most WAIT
            if sent and received:
                break
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    assert sent, "no submit_sm_resp"
    assert received, "no deliver_sm"
    receipt = received[0]
    return {
        "message_id": _as_text(sent[0].message_id),
        "esm_class": int(receipt.esm_class),
        "text": _as_text(receipt.short_message),
        "receipted_message_id": _as_text(receipt.receipted_message_id),
        "message_state": int(receipt.message_state),
    }


async def test_smpplib_submits_and_reads_its_receipt(sim: Simulator) -> None:
    result = await asyncio.wait_for(
        asyncio.to_thread(_smpplib_submit_and_read_receipt, sim.port), 6 * WAIT
    )
    assert result["esm_class"] == 0x04
    assert result["receipted_message_id"] == result["message_id"]
    assert result["message_state"] == 2  # DELIVERED
    assert result["text"].startswith(f"id:{result['message_id']} ")
    assert "stat:DELIVRD" in result["text"]
    (record,) = sim.received
    assert record.text == "hello from smpplib"
    assert record.message_id == result["message_id"]
    await sim.wait_for(lambda: sim.counters.receipts_acked == 1, WAIT)


def _smpplib_bind(port: int, password: str) -> int:
    import smpplib.client
    import smpplib.exceptions

    client = smpplib.client.Client("127.0.0.1", port, timeout=WAIT, allow_unknown_opt_params=True)
    client.connect()
    try:
        client.bind_transmitter(system_id=SYSTEM_ID, password=password)
    except smpplib.exceptions.PDUError as exc:
        return int(exc.args[1])
    finally:
        client.disconnect()
    return 0


async def test_smpplib_bad_password_is_refused(sim: Simulator) -> None:
    status = await asyncio.wait_for(asyncio.to_thread(_smpplib_bind, sim.port, "wrong"), WAIT)
    assert status == CommandStatus.ESME_RINVPASWD


def _smpplib_receive(port: int, started: Any) -> list[Any]:
    """Bind receiver and read deliver_sm until two have arrived (bounded reads)."""
    import smpplib.client

    received: list[Any] = []
    client = smpplib.client.Client("127.0.0.1", port, timeout=WAIT, allow_unknown_opt_params=True)
    client.set_message_received_handler(lambda pdu: received.append(pdu))
    client.connect()
    try:
        client.bind_receiver(system_id=SYSTEM_ID, password=PASSWORD)
        started()
        for _ in range(10):
            if len(received) >= 2:
                break
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    return received


async def test_smpplib_receives_gsm_and_ucs2_mo(sim: Simulator) -> None:
    loop = asyncio.get_running_loop()
    bound = asyncio.Event()
    reader = asyncio.create_task(
        asyncio.to_thread(_smpplib_receive, sim.port, lambda: loop.call_soon_threadsafe(bound.set))
    )
    await asyncio.wait_for(bound.wait(), WAIT)
    await sim.wait_sessions(1, WAIT)
    await sim.inject_mo("+4915123456789", "12345", "STOP")
    await sim.inject_mo("+4915123456789", "12345", "Привет")
    first, second = await asyncio.wait_for(reader, 6 * WAIT)
    assert (int(first.esm_class), int(first.data_coding)) == (0, 0)
    assert first.short_message == b"STOP"
    assert _as_text(first.source_addr) == "4915123456789"
    assert int(second.data_coding) == 8
    assert second.short_message.decode("utf-16-be") == "Привет"


# --- aiosmpplib (asyncio ESME) ---------------------------------------------------------


async def test_aiosmpplib_sends_and_gets_its_receipt_through_hooks(sim: Simulator) -> None:
    from aiosmpplib import ESME, AbstractHook, DeliverSm, PhoneNumber, SubmitSm, SubmitSmResp

    responses: asyncio.Queue[Any] = asyncio.Queue()
    receipts: asyncio.Queue[Any] = asyncio.Queue()

    class Hook(AbstractHook):  # type: ignore[misc]
        async def sending(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
            pass

        async def received(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
            if isinstance(smpp_message, SubmitSmResp):
                responses.put_nowait(smpp_message)
            elif isinstance(smpp_message, DeliverSm) and smpp_message.is_receipt():
                receipts.put_nowait(smpp_message)

        async def send_error(self, smpp_message: Any, error: Exception, client_id: str) -> None:
            responses.put_nowait(error)

    esme = ESME(
        smsc_host="127.0.0.1",
        smsc_port=sim.port,
        system_id=SYSTEM_ID,
        password=PASSWORD,
        hook=Hook(),
        log_level=logging.WARNING,
        socket_timeout=WAIT,
    )
    runner = asyncio.create_task(esme.start())
    try:
        await esme.broker.enqueue(
            SubmitSm(
                short_message="hello from aiosmpplib",
                source=PhoneNumber("12345"),
                destination=PhoneNumber("4915123456789"),
                log_id="order-42",
            )
        )
        response = await asyncio.wait_for(responses.get(), WAIT)
        assert isinstance(response, SubmitSmResp), response
        assert response.command_status.value == CommandStatus.ESME_ROK
        receipt = await asyncio.wait_for(receipts.get(), WAIT)
        parsed = receipt.parse_receipt()
        assert parsed["id"] == response.message_id
        assert parsed["stat"] == "DELIVRD"
        assert receipt.log_id == "order-42"  # aiosmpplib correlated it to its submit
        await sim.wait_for(lambda: sim.counters.receipts_acked == 1, WAIT)
        assert sim.received[0].text == "hello from aiosmpplib"
    finally:
        await asyncio.wait_for(esme.stop(), WAIT)
        await asyncio.wait_for(runner, WAIT)

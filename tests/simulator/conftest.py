"""Shared pieces of the simulator tests: simulators on free ports and ESMEs built on the
project's SMPP core, talking over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from smsmesh.model import Receipt
from smsmesh.simulator import Simulator, SimulatorSettings
from smsmesh.smpp import (
    AsyncSession,
    BindType,
    CommandStatus,
    DeliverSm,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    bind,
    connect,
    make_response,
)
from smsmesh.smpp.receipt import receipt_from_deliver

WAIT = 5.0  # upper bound of any single wait in these tests


class Esme:
    """A client bound to the simulator that records every deliver_sm it is given.

    `status` is what it answers deliver_sm with; while `hold` is set (an Event that is
    not yet set) each answer waits for it.
    """

    def __init__(self) -> None:
        self.session: AsyncSession | None = None
        self.deliveries: asyncio.Queue[DeliverSm] = asyncio.Queue()
        self.seen = 0
        self.status: int = CommandStatus.ESME_ROK
        self.hold: asyncio.Event | None = None

    async def on_request(self, pdu: Pdu) -> Pdu | None:
        if isinstance(pdu, DeliverSm):
            self.seen += 1
            self.deliveries.put_nowait(pdu)
            if self.hold is not None:
                await self.hold.wait()
            return make_response(pdu, self.status)
        return make_response(pdu)

    async def next(self, timeout: float = WAIT) -> DeliverSm:
        return await asyncio.wait_for(self.deliveries.get(), timeout)

    async def submit(self, **fields: Any) -> SubmitSmResp:
        assert self.session is not None
        fields.setdefault("source_addr", "12345")
        fields.setdefault("destination_addr", "4915123456789")
        fields.setdefault("short_message", b"hello")
        response = await self.session.request(SubmitSm(**fields), WAIT)
        assert isinstance(response, SubmitSmResp), response
        return response

    async def unbind(self) -> None:
        assert self.session is not None
        await self.session.unbind(WAIT)


def receipt_of(pdu: DeliverSm) -> Receipt:
    receipt = receipt_from_deliver(
        pdu.esm_class,
        pdu.data_coding,
        pdu.short_message,
        {t.tag: t.value for t in pdu.tlvs},
        "sim",
        0.0,
    )
    assert receipt is not None, f"not a receipt: {pdu}"
    return receipt


StartSimulator = Callable[..., Awaitable[Simulator]]
OpenEsme = Callable[..., Awaitable[Esme]]


@pytest.fixture
async def start_simulator() -> AsyncIterator[StartSimulator]:
    """start_simulator(**settings) -> a running Simulator on a free port (stopped after)."""
    started: list[Simulator] = []

    async def start(**changes: Any) -> Simulator:
        changes.setdefault("port", 0)
        changes.setdefault("receipt_delay", 0.0)
        simulator = Simulator(SimulatorSettings(**changes))
        await simulator.start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        await simulator.stop(timeout=WAIT)


@pytest.fixture
async def open_esme() -> AsyncIterator[OpenEsme]:
    """open_esme(sim, bind_type=..., system_id=..., password=...) -> a bound Esme."""
    opened: list[Esme] = []

    async def open_(
        simulator: Simulator,
        bind_type: BindType = BindType.TRANSCEIVER,
        system_id: str = "esme",
        password: str = "secret",
        window: int = 50,
    ) -> Esme:
        esme = Esme()
        session = await connect(
            "127.0.0.1", simulator.port, window=window, on_request=esme.on_request
        )
        esme.session = session
        opened.append(esme)
        await bind(session, bind_type, system_id, password, timeout=WAIT)
        return esme

    yield open_
    for esme in opened:
        if esme.hold is not None:
            esme.hold.set()
        if esme.session is not None and not esme.session.closed:
            await esme.session.unbind(WAIT)

"""How receipts are sent without a task each: window, retries, slots shared with MO
messages, and receipts rerouted when a session goes mid-window. Real sockets."""

from __future__ import annotations

import asyncio
import random

from smsmesh.smpp import BindType, CommandStatus, DeliverSm, Pdu, SubmitSmResp, make_response

from .conftest import WAIT, Esme, OpenEsme, StartSimulator, receipt_of

S = CommandStatus


class SlowClient:
    """Answers each deliver_sm after a random short service time, from a timer (no task),
    and records how many it held unanswered at once: what the SMSC had outstanding."""

    def __init__(self, esme: Esme, refuse_first: bool = False) -> None:
        self.loop = asyncio.get_running_loop()
        self.held = 0
        self.peak = 0
        self.ids: list[str] = []
        self.refuse_first = refuse_first
        self.refused: set[str] = set()
        self.random = random.Random(7)
        assert esme.session is not None
        esme.session.on_request = self.on_request

    def on_request(self, pdu: Pdu) -> asyncio.Future[Pdu | None] | Pdu:
        if not isinstance(pdu, DeliverSm):
            return make_response(pdu)
        receipt_id = receipt_of(pdu).smsc_message_id
        status: int = S.ESME_ROK
        if self.refuse_first and receipt_id not in self.refused:
            self.refused.add(receipt_id)
            status = S.ESME_RX_T_APPN
        else:
            self.ids.append(receipt_id)
        self.held += 1
        self.peak = max(self.peak, self.held)
        answer: asyncio.Future[Pdu | None] = self.loop.create_future()

        def respond() -> None:
            self.held -= 1
            answer.set_result(make_response(pdu, status))

        self.loop.call_later(self.random.uniform(0, 0.004), respond)
        return answer


async def submit_many(esme: Esme, n: int) -> list[str]:
    responses = await asyncio.gather(*(esme.submit(registered_delivery=1) for _ in range(n)))
    assert all(isinstance(r, SubmitSmResp) for r in responses)
    return [r.message_id for r in responses]


async def test_never_more_than_window_receipts_outstanding_at_the_client(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(window=4)
    esme = await open_esme(sim, window=50)
    client = SlowClient(esme)
    ids = await submit_many(esme, 60)
    await sim.wait_for(lambda: sim.counters.receipts_acked == 60, WAIT)
    assert sorted(client.ids) == sorted(ids)
    assert client.peak == 4  # the window was filled, and never exceeded
    assert sim.counters.receipts_sent == 60


async def test_refused_receipts_are_retried_while_others_flow(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(window=5, retry_delay=0.01)
    esme = await open_esme(sim)
    client = SlowClient(esme, refuse_first=True)
    ids = await submit_many(esme, 30)
    await sim.wait_for(lambda: sim.counters.receipts_acked == 30, WAIT)
    assert sorted(client.ids) == sorted(ids)
    assert client.refused == set(ids)
    assert (sim.counters.receipts_sent, sim.counters.receipts_failed) == (60, 0)
    assert client.peak <= 5


async def test_receipts_wait_for_a_slot_held_by_an_mo_message(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(window=1)
    esme = await open_esme(sim)
    release = esme.hold = asyncio.Event()
    ids = await submit_many(esme, 3)
    await sim.wait_for(lambda: sim.counters.receipts_sent == 1, WAIT)
    # The MO queues for the one slot; the receipts behind it wait until it is answered.
    mo = asyncio.ensure_future(sim.inject_mo("4915123", "12345", "reply"))
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(mo, WAIT)
    await sim.wait_for(lambda: sim.counters.receipts_acked == 3, WAIT)
    got = []
    while not esme.deliveries.empty():
        pdu = esme.deliveries.get_nowait()
        if pdu.esm_class == 0x04:
            got.append(receipt_of(pdu).smsc_message_id)
    assert got == ids
    assert (sim.counters.mo_sent, sim.counters.receipts_sent) == (1, 3)


async def test_receipts_of_a_session_lost_mid_window_go_to_another_receiver(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(window=3)
    trx = await open_esme(sim, BindType.TRANSCEIVER)
    trx.hold = asyncio.Event()  # takes receipts but never answers them
    ids = await submit_many(trx, 8)
    await sim.wait_for(lambda: sim.counters.receipts_sent == 3, WAIT)
    rx = await open_esme(sim, BindType.RECEIVER)
    assert trx.session is not None
    trx.session.abort()  # three deliver_sm unanswered, five still queued for it
    got = [receipt_of(await rx.next()).smsc_message_id for _ in range(8)]
    assert sorted(got) == sorted(ids)
    await sim.wait_for(lambda: sim.counters.receipts_acked == 8, WAIT)
    # Lost with the connection is not an attempt: none was retried or given up.
    assert (sim.counters.receipts_sent, sim.counters.receipts_failed) == (11, 0)
    assert sim.queued_receipts("esme") == 0


async def test_receipt_mode_changes_live_for_bound_sessions(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(receipt_mode="both")
    esme = await open_esme(sim)
    await esme.submit(registered_delivery=1)
    first = await esme.next()
    sim.set_behaviour(receipt_mode="tlv")
    await esme.submit(registered_delivery=1)
    second = await esme.next()
    assert first.short_message != b""
    assert second.short_message == b""
    assert receipt_of(second).smsc_message_id != receipt_of(first).smsc_message_id

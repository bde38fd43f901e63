"""Delivery receipts over real sockets: outcome, form, routing, queueing, retry, window."""

from __future__ import annotations

import asyncio

import pytest

from smsmesh.model import ReceiptState
from smsmesh.simulator.behaviour import choose_outcome
from smsmesh.smpp import BindType, CommandStatus, SubmitSmResp, Tag

from .conftest import WAIT, OpenEsme, StartSimulator, receipt_of

S = CommandStatus


@pytest.mark.parametrize(
    ("outcome", "state", "stat"),
    [
        ("delivered", ReceiptState.DELIVERED, "DELIVRD"),
        ("undeliverable", ReceiptState.UNDELIVERABLE, "UNDELIV"),
        ("expired", ReceiptState.EXPIRED, "EXPIRED"),
        ("rejected", ReceiptState.REJECTED, "REJECTD"),
    ],
)
async def test_receipt_carries_the_outcome_in_tlvs_and_text(
    start_simulator: StartSimulator,
    open_esme: OpenEsme,
    outcome: str,
    state: ReceiptState,
    stat: str,
) -> None:
    sim = await start_simulator(receipt_outcome=outcome)
    esme = await open_esme(sim)
    response = await esme.submit(short_message=b"Your code is 1234", registered_delivery=1)
    assert isinstance(response, SubmitSmResp)
    pdu = await esme.next()
    assert pdu.esm_class == 0x04
    assert (pdu.source_addr, pdu.destination_addr) == ("4915123456789", "12345")
    assert pdu.get_tlv_str(Tag.RECEIPTED_MESSAGE_ID) == response.message_id
    assert (
        pdu.get_tlv_int(Tag.MESSAGE_STATE)
        == {
            ReceiptState.DELIVERED: 2,
            ReceiptState.EXPIRED: 3,
            ReceiptState.UNDELIVERABLE: 5,
            ReceiptState.REJECTED: 8,
        }[state]
    )
    assert (pdu.get_tlv(Tag.NETWORK_ERROR_CODE) is None) is (state is ReceiptState.DELIVERED)
    text = pdu.short_message.decode("ascii")
    assert f"id:{response.message_id} " in text
    assert f"stat:{stat} " in text
    assert text.endswith("text:Your code is 1234")
    assert receipt_of(pdu).state is state
    await sim.wait_for(lambda: sim.counters.receipts_acked == 1, WAIT)


@pytest.mark.parametrize("mode", ["tlv", "text"])
async def test_receipt_mode_chooses_the_form(
    start_simulator: StartSimulator, open_esme: OpenEsme, mode: str
) -> None:
    sim = await start_simulator(receipt_mode=mode, receipt_outcome="expired")
    esme = await open_esme(sim)
    await esme.submit(registered_delivery=1)
    pdu = await esme.next()
    assert (pdu.tlvs == ()) is (mode == "text")
    assert (pdu.short_message == b"") is (mode == "tlv")
    assert receipt_of(pdu).state is ReceiptState.EXPIRED


async def test_mixed_outcome_follows_the_message_id(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(receipt_outcome="mixed")
    esme = await open_esme(sim, window=100)
    responses = await asyncio.gather(*(esme.submit(registered_delivery=1) for _ in range(60)))
    expected = {
        r.message_id: choose_outcome("mixed", r.message_id)
        for r in responses
        if isinstance(r, SubmitSmResp)
    }
    got = {}
    for _ in range(60):
        receipt = receipt_of(await esme.next())
        got[receipt.smsc_message_id] = receipt.state
    assert got == expected


@pytest.mark.parametrize(
    ("registered", "outcome", "expect_receipt"),
    [
        (0, "delivered", False),
        (2, "delivered", False),  # failure-only receipts
        (2, "undeliverable", True),
        (3, "delivered", True),
    ],
)
async def test_registered_delivery_decides_whether_a_receipt_is_sent(
    start_simulator: StartSimulator,
    open_esme: OpenEsme,
    registered: int,
    outcome: str,
    expect_receipt: bool,
) -> None:
    sim = await start_simulator(receipt_outcome=outcome)
    esme = await open_esme(sim)
    await esme.submit(registered_delivery=registered)
    # A second message always asks for a receipt; receipts with zero delay are sent in
    # submit order, so once its receipt is here the first one's would be too.
    marker = await esme.submit(registered_delivery=1)
    first = receipt_of(await esme.next())
    if expect_receipt:
        assert first.smsc_message_id != marker.message_id
        assert receipt_of(await esme.next()).smsc_message_id == marker.message_id
    else:
        assert first.smsc_message_id == marker.message_id
    assert esme.deliveries.empty()


async def test_receipts_off_sends_none(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(receipts_enabled=False)
    esme = await open_esme(sim)
    await esme.submit(registered_delivery=1)
    sim.set_behaviour(receipts_enabled=True)
    marker = await esme.submit(registered_delivery=1)
    assert receipt_of(await esme.next()).smsc_message_id == marker.message_id
    assert sim.counters.receipts_sent == 1


async def test_outcome_and_delay_change_live(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(receipt_delay=3600)
    esme = await open_esme(sim)
    await esme.submit(registered_delivery=1)  # due in an hour: never seen in this test
    sim.set_behaviour(receipt_delay=0, receipt_outcome="rejected")
    marker = await esme.submit(registered_delivery=1)
    receipt = receipt_of(await esme.next())
    assert receipt.smsc_message_id == marker.message_id
    assert receipt.state is ReceiptState.REJECTED


async def test_receipts_of_a_transmitter_go_to_a_receiver_of_the_same_account(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    other = await open_esme(sim, BindType.RECEIVER, system_id="other")
    rx = await open_esme(sim, BindType.RECEIVER, system_id="esme")
    tx = await open_esme(sim, BindType.TRANSMITTER, system_id="esme")
    response = await tx.submit(registered_delivery=1)
    receipt = receipt_of(await rx.next())
    assert receipt.smsc_message_id == response.message_id
    await sim.wait_for(lambda: sim.counters.receipts_acked == 1, WAIT)
    assert other.seen == 0


async def test_receipts_prefer_the_transceiver_that_submitted(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    rx = await open_esme(sim, BindType.RECEIVER)
    trx = await open_esme(sim, BindType.TRANSCEIVER)
    responses = await asyncio.gather(*(trx.submit(registered_delivery=1) for _ in range(20)))
    ids = {r.message_id for r in responses}
    got = {receipt_of(await trx.next()).smsc_message_id for _ in range(20)}
    assert got == ids
    await sim.wait_for(lambda: sim.counters.receipts_acked == 20, WAIT)
    assert rx.seen == 0


async def test_receipts_wait_for_a_receiver_and_are_delivered_when_one_binds(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    tx = await open_esme(sim, BindType.TRANSMITTER)
    responses = [await tx.submit(registered_delivery=1) for _ in range(3)]
    await sim.wait_for(lambda: sim.queued_receipts("esme") == 3, WAIT)
    assert sim.counters.receipts_sent == 0
    rx = await open_esme(sim, BindType.RECEIVER)
    got = [receipt_of(await rx.next()).smsc_message_id for _ in range(3)]
    assert got == [r.message_id for r in responses]
    await sim.wait_for(lambda: sim.queued_receipts("esme") == 0, WAIT)


async def test_receipts_queued_are_bounded_oldest_dropped(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(max_queued_receipts=2)
    tx = await open_esme(sim, BindType.TRANSMITTER)
    responses = [await tx.submit(registered_delivery=1) for _ in range(4)]
    await sim.wait_for(lambda: sim.counters.receipts_dropped == 2, WAIT)
    assert sim.queued_receipts("esme") == 2
    rx = await open_esme(sim, BindType.RECEIVER)
    got = [receipt_of(await rx.next()).smsc_message_id for _ in range(2)]
    assert got == [r.message_id for r in responses[2:]]


async def test_a_receipt_lost_with_its_connection_is_delivered_on_the_next_bind(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator()
    first = await open_esme(sim)
    first.hold = asyncio.Event()  # takes the receipt but never answers it
    response = await first.submit(registered_delivery=1)
    await first.next()
    sim.drop_connections()
    assert first.session is not None
    await asyncio.wait_for(first.session.wait_closed(), WAIT)
    second = await open_esme(sim)
    receipt = receipt_of(await second.next())
    assert receipt.smsc_message_id == response.message_id
    await sim.wait_for(lambda: sim.counters.receipts_acked == 1, WAIT)


async def test_refused_receipt_is_retried_then_given_up(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(retry_delay=0.01, receipt_attempts=3)
    esme = await open_esme(sim)
    esme.status = S.ESME_RX_T_APPN
    response = await esme.submit(registered_delivery=1)
    for _ in range(3):
        receipt = receipt_of(await esme.next())
        assert receipt.smsc_message_id == response.message_id
    await sim.wait_for(lambda: sim.counters.receipts_failed == 1, WAIT)
    assert (sim.counters.receipts_sent, sim.counters.receipts_acked) == (3, 0)
    assert esme.deliveries.empty()


async def test_refused_receipt_is_acknowledged_on_a_later_attempt(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(retry_delay=0.01)
    esme = await open_esme(sim)
    esme.status = S.ESME_RSYSERR
    await esme.submit(registered_delivery=1)
    await esme.next()
    esme.status = S.ESME_ROK
    await esme.next()
    await sim.wait_for(lambda: sim.counters.receipts_acked == 1, WAIT)
    assert sim.counters.receipts_sent == 2


async def test_unanswered_receipt_is_retried_after_the_timeout(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(deliver_timeout=0.2, retry_delay=0.01)
    esme = await open_esme(sim)
    esme.hold = asyncio.Event()  # the first deliver_sm is never answered in time
    response = await esme.submit(registered_delivery=1)
    await esme.next()
    esme.hold = None
    receipt = receipt_of(await esme.next())
    assert receipt.smsc_message_id == response.message_id
    await sim.wait_for(lambda: sim.counters.receipts_acked == 1, WAIT)


async def test_at_most_window_receipts_are_outstanding(
    start_simulator: StartSimulator, open_esme: OpenEsme
) -> None:
    sim = await start_simulator(window=3)
    esme = await open_esme(sim, window=20)
    release = esme.hold = asyncio.Event()
    await asyncio.gather(*(esme.submit(registered_delivery=1) for _ in range(10)))
    # Unbounded, all ten would be sent at once and none would stay queued.
    await sim.wait_for(
        lambda: sim.counters.receipts_sent == 3 and sim.queued_receipts("esme") == 7, WAIT
    )
    release.set()
    await sim.wait_for(lambda: sim.counters.receipts_acked == 10, WAIT)
    assert esme.seen == 10

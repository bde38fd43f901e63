"""deliver_sm / data_sm from the SMSC: receipts and MOs, acknowledged only once durable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from connkit import (
    WAIT,
    ScriptedSmsc,
    accept,
    make_settings,
    new_message,
    running,
    wait_status,
    wait_until,
)

from smsmesh.model import MessageStatus, Receipt, ReceiptMatch, SubmitReport, WebhookKind
from smsmesh.simulator import Simulator
from smsmesh.smpp.pdu import (
    ESM_CLASS_DELIVERY_RECEIPT,
    ESM_CLASS_UDHI,
    CommandStatus,
    DataSm,
    DeliverSm,
    MessageState,
    Tag,
    Tlv,
)
from smsmesh.store import SqliteStore, StoreError

S = CommandStatus
MO_URL = "http://apps.example/mo"


class SlowReceipts(SqliteStore):
    """The real store, with writes that carry receipts made slow and their commits timed."""

    def __init__(self, path: Path, delay: float) -> None:
        super().__init__(path)
        self.delay = delay
        self.committed_at: list[float] = []

    async def record_outcomes(
        self, reports: Sequence[SubmitReport], receipts: Sequence[Receipt]
    ) -> list[ReceiptMatch]:
        if not receipts:
            return await super().record_outcomes(reports, receipts)
        await asyncio.sleep(self.delay)
        result = await super().record_outcomes(reports, receipts)
        self.committed_at.append(time.monotonic())
        return result


class FailingReceipts(SqliteStore):
    """The real store, whose first `failures` writes that carry receipts fail."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    async def record_outcomes(
        self, reports: Sequence[SubmitReport], receipts: Sequence[Receipt]
    ) -> list[ReceiptMatch]:
        if receipts and self.failures > 0:
            self.failures -= 1
            raise StoreError("disk on fire")
        return await super().record_outcomes(reports, receipts)


def receipt(smsc_id: str, state: MessageState = MessageState.DELIVERED) -> DeliverSm:
    return DeliverSm(
        esm_class=ESM_CLASS_DELIVERY_RECEIPT,
        short_message=f"id:{smsc_id} sub:001 dlvrd:001 stat:DELIVRD err:000 text:".encode(),
        tlvs=(Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, smsc_id), Tlv.u8(Tag.MESSAGE_STATE, state)),
    )


async def inbound_jobs(store: SqliteStore, count: int) -> list[dict[str, object]]:
    async def enough() -> list[dict[str, object]] | None:
        jobs = await store.claim_webhooks(100, time.time() + 3600, 1e-6)
        found = [j.payload for j in jobs if j.kind is WebhookKind.INBOUND]
        return found if len(found) >= count else None

    payloads: list[dict[str, object]] = await wait_until(enough)
    return payloads


async def test_receipt_is_acknowledged_only_after_it_is_stored(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    (message_id,) = await accept(store, [new_message()])
    slow = SlowReceipts(db, delay=0.3)
    async with running(make_settings(scripted.port, db), slow) as conn:
        await wait_status(store, [message_id], frozenset({MessageStatus.SUBMITTED}))
        session = scripted.sessions[0]
        sent = time.monotonic()
        response = await session.request(receipt("s1"), WAIT)
        answered = time.monotonic()
        # The moment the answer arrives, the receipt is already durable: another
        # process's view of the store shows the message delivered.
        record = await store.get_message(message_id)
        assert record is not None
        assert record.status is MessageStatus.DELIVERED
        assert response.command_status == S.ESME_ROK
        assert answered - sent >= 0.3
        assert slow.committed_at[0] <= answered
        assert conn.connector.state.counters.receipts == 1


async def test_receipt_that_cannot_be_stored_is_refused_for_a_retry(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    (message_id,) = await accept(store, [new_message()])
    failing = FailingReceipts(db, failures=1)
    async with running(make_settings(scripted.port, db), failing):
        await wait_status(store, [message_id], frozenset({MessageStatus.SUBMITTED}))
        session = scripted.sessions[0]
        first = await session.request(receipt("s1"), WAIT)
        assert first.command_status == S.ESME_RX_T_APPN
        second = await session.request(receipt("s1"), WAIT)
        assert second.command_status == S.ESME_ROK
    (record,) = [await store.get_message(message_id)]
    assert record is not None
    assert record.status is MessageStatus.DELIVERED


async def test_receipt_without_an_id_is_acknowledged_and_counted(
    scripted: ScriptedSmsc, db: Path
) -> None:
    async with running(make_settings(scripted.port, db)) as conn:
        broken = DeliverSm(esm_class=ESM_CLASS_DELIVERY_RECEIPT, short_message=b"stat:DELIVRD")
        response = await scripted.sessions[0].request(broken, WAIT)
        assert response.command_status == S.ESME_ROK
        counters = conn.connector.state.counters
        assert counters.receipts_malformed == 1
        assert counters.receipts == 0


async def test_mo_is_stored_with_a_webhook_job(
    sim: Simulator, store: SqliteStore, db: Path
) -> None:
    settings = make_settings(sim.port, db, inbound_application="app", inbound_webhook_url=MO_URL)
    async with running(settings) as conn:
        await sim.inject_mo("31611112222", "3197010", "Stop sending me news")
        (payload,) = await inbound_jobs(store, 1)
        assert conn.connector.state.counters.mo == 1
    assert payload["text"] == "Stop sending me news"
    assert payload["from"] == "31611112222"
    assert payload["to"] == "3197010"
    assert payload["application"] == "app"


async def test_long_mo_sent_part_by_part_is_stored_part_by_part(
    sim: Simulator, store: SqliteStore, db: Path
) -> None:
    # The simulator sends part 2 only after part 1 is answered: reassembly cannot wait
    # for it, so after the wait each part is stored (and answered) on its own.
    text = "Ответ: " + "да, " * 40
    settings = make_settings(
        sim.port, db, inbound_application="app", inbound_webhook_url=MO_URL,
        mo_reassembly_wait=0.1,
    )  # fmt: skip
    async with running(settings) as conn:
        await sim.inject_mo("31611112222", "3197010", text)
        payloads = await inbound_jobs(store, 3)
        assert conn.connector.inbound.assembler.parts_alone == 3
    assert "".join(str(p["text"]) for p in payloads) == text


def _udh_part(ref: int, total: int, part: int, payload: bytes) -> DeliverSm:
    return DeliverSm(
        source_addr="31611112222",
        destination_addr="3197010",
        esm_class=ESM_CLASS_UDHI,
        data_coding=0x08,
        short_message=bytes((5, 0, 3, ref, total, part)) + payload,
    )


async def test_long_mo_sent_at_once_is_reassembled_into_one_message(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    text = "Grüße aus Zürich 😀 " * 6
    data = text.encode("utf-16-be")
    # Split inside the surrogate pair of an emoji: only joining bytes first decodes it.
    cut = data.index("😀".encode("utf-16-be")) + 2
    chunks = [data[:cut], data[cut:100], data[100:]]
    settings = make_settings(
        scripted.port, db, inbound_application="app", inbound_webhook_url=MO_URL
    )
    async with running(settings) as conn:
        session = scripted.sessions[0]
        responses = await asyncio.gather(
            *(
                session.request(_udh_part(7, 3, i, chunk), WAIT)
                for i, chunk in reversed(list(enumerate(chunks, 1)))
            )
        )
        assert [r.command_status for r in responses] == [S.ESME_ROK] * 3
        (payload,) = await inbound_jobs(store, 1)
        assert conn.connector.inbound.assembler.reassembled == 1
    assert payload["text"] == text


async def test_lone_part_is_stored_after_the_wait(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    settings = make_settings(
        scripted.port, db, inbound_application="app", inbound_webhook_url=MO_URL,
        mo_reassembly_wait=0.2,
    )  # fmt: skip
    async with running(settings):
        started = time.monotonic()
        response = await scripted.sessions[0].request(
            _udh_part(9, 2, 1, "half".encode("utf-16-be")), WAIT
        )
        assert response.command_status == S.ESME_ROK
        assert time.monotonic() - started >= 0.2
        (payload,) = await inbound_jobs(store, 1)
    assert payload["text"] == "half"


async def test_data_sm_mo_with_message_payload(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    settings = make_settings(
        scripted.port, db, inbound_application="app", inbound_webhook_url=MO_URL
    )
    async with running(settings):
        pdu = DataSm(
            source_addr="31611112222",
            destination_addr="3197010",
            tlvs=(Tlv(Tag.MESSAGE_PAYLOAD, b"via data sm"),),
        )
        response = await scripted.sessions[0].request(pdu, WAIT)
        assert response.command_status == S.ESME_ROK
        (payload,) = await inbound_jobs(store, 1)
    assert payload["text"] == "via data sm"


@pytest.mark.parametrize(
    ("destination", "application"),
    [("3197010", "shop"), ("3197011", "bank"), ("4400000", None)],
)
async def test_mo_without_bind_application_goes_by_number(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path, destination: str, application: str
) -> None:
    numbers = (("31970", "bank", "http://bank.example/mo"), ("3197010", "shop", MO_URL))
    async with running(make_settings(scripted.port, db, inbound_numbers=numbers)) as conn:
        pdu = DeliverSm(source_addr="31611112222", destination_addr=destination,
                        short_message=b"hello")  # fmt: skip
        response = await scripted.sessions[0].request(pdu, WAIT)
        assert response.command_status == S.ESME_ROK
        assert conn.connector.state.counters.mo == 1
        if application is None:
            return  # stored without a webhook: nobody claims it
        (payload,) = await inbound_jobs(store, 1)
    assert payload["application"] == application


async def test_held_parts_of_a_lost_session_are_not_stored(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    settings = make_settings(
        scripted.port, db, inbound_application="app", inbound_webhook_url=MO_URL,
        mo_reassembly_wait=0.3,
    )  # fmt: skip
    async with running(settings) as conn:
        session = scripted.sessions[0]
        pending = asyncio.ensure_future(
            session.request(_udh_part(4, 2, 1, "one".encode("utf-16-be")), WAIT)
        )
        await wait_until(lambda: conn.connector.inbound.assembler.held == 1)
        session.abort()  # unanswered: the SMSC will deliver the part again
        await conn.wait_unbound()
        assert conn.connector.inbound.assembler.held == 0
        await asyncio.sleep(0.4)  # past the reassembly wait: nothing may be stored late
        assert conn.connector.state.counters.mo == 0
    with pytest.raises(ConnectionError):
        await pending
    jobs = await store.claim_webhooks(10, time.time() + 3600, 1e-6)
    assert jobs == []

"""Receipt and MO PDUs the simulator writes, and what it reads from submits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsmesh.model import ReceiptState
from smsmesh.simulator.behaviour import NETWORK_ERRORS
from smsmesh.simulator.delivery import Scheduler
from smsmesh.simulator.messages import (
    PendingReceipt,
    address_of,
    mo_pdus,
    read_submit,
    receipt_pdu,
)
from smsmesh.smpp.codec import decode, encode
from smsmesh.smpp.pdu import DeliverSm, SubmitSm, Tag, Tlv
from smsmesh.smpp.receipt import (
    format_receipt_text,
    message_state_value,
    parse_receipt_text,
    stat_code,
)
from smsmesh.smpp.text import decode as decode_text
from smsmesh.smpp.text import parse_concat

from .conftest import receipt_of


def pending(state: ReceiptState, snippet: str = "hello") -> PendingReceipt:
    return PendingReceipt(
        system_id="esme",
        origin=None,
        receipt_id="1a2b",
        state=state,
        submitted_at=1_700_000_000.0,
        snippet=snippet,
        source=(1, 1, "4915123456789"),
        destination=(5, 0, "ACME"),
    )


@pytest.mark.parametrize(
    "state",
    [
        ReceiptState.DELIVERED,
        ReceiptState.UNDELIVERABLE,
        ReceiptState.EXPIRED,
        ReceiptState.REJECTED,
    ],
)
@pytest.mark.parametrize("mode", ["both", "tlv", "text"])
def test_receipt_pdu_states_the_outcome_in_the_chosen_form(state: ReceiptState, mode: str) -> None:
    pdu = decode(encode(receipt_pdu(pending(state), mode, done_at=1_700_000_060.0)))
    assert isinstance(pdu, DeliverSm)
    assert pdu.esm_class == 0x04
    assert (pdu.source_addr, pdu.destination_addr) == ("4915123456789", "ACME")
    receipt = receipt_of(pdu)
    assert receipt.smsc_message_id == "1a2b"
    assert receipt.state is state
    tags = {t.tag for t in pdu.tlvs}
    if mode == "text":
        assert not tags
    else:
        assert pdu.get_tlv_str(Tag.RECEIPTED_MESSAGE_ID) == "1a2b"
        assert Tag.MESSAGE_STATE in tags
        assert (Tag.NETWORK_ERROR_CODE in tags) is (state is not ReceiptState.DELIVERED)
    if mode == "tlv":
        assert pdu.short_message == b""
    else:
        fields = parse_receipt_text(pdu.short_message.decode("ascii"))
        assert fields is not None
        assert fields.id == "1a2b"
        assert fields.dlvrd == ("001" if state is ReceiptState.DELIVERED else "000")
        assert fields.text == "hello"
    if state is not ReceiptState.DELIVERED:
        assert receipt.error_code not in (None, "000", "3:0")


def plain_receipt_pdu(receipt: PendingReceipt, mode: str, done_at: float) -> DeliverSm:
    """The receipt deliver_sm written the plain way, field by field: what the tuned
    receipt_pdu must produce byte for byte."""

    def minute(at: float) -> str:
        return datetime.fromtimestamp(at // 60 * 60, UTC).strftime("%y%m%d%H%M")

    error = NETWORK_ERRORS.get(receipt.state, 0)
    stat = stat_code(receipt.state)
    text = (
        f"id:{receipt.receipt_id} sub:{1:03d} dlvrd:{int(stat == 'DELIVRD'):03d}"
        f" submit date:{minute(receipt.submitted_at)} done date:{minute(done_at)}"
        f" stat:{stat} err:{error:03d} text:{receipt.snippet[:20]}"
    )
    tlvs = [
        Tlv(Tag.RECEIPTED_MESSAGE_ID, receipt.receipt_id.encode() + b"\0"),
        Tlv(Tag.MESSAGE_STATE, bytes((message_state_value(receipt.state),))),
    ]
    if error:
        tlvs.append(Tlv(Tag.NETWORK_ERROR_CODE, bytes((3, error >> 8, error & 0xFF))))
    return DeliverSm(
        source_addr_ton=receipt.source[0],
        source_addr_npi=receipt.source[1],
        source_addr=receipt.source[2],
        dest_addr_ton=receipt.destination[0],
        dest_addr_npi=receipt.destination[1],
        destination_addr=receipt.destination[2],
        esm_class=0x04,
        short_message=b"" if mode == "tlv" else text.encode("ascii"),
        tlvs=() if mode == "text" else tuple(tlvs),
    )


_printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    receipt_id=_printable,
    state=st.sampled_from(list(ReceiptState)),
    submitted=st.floats(0, 4_000_000_000),
    took=st.floats(0, 86_400 * 30),
    snippet=st.text(st.sampled_from("ab Z9?:!"), max_size=25),
    mode=st.sampled_from(["both", "tlv", "text"]),
)
def test_receipt_pdu_bytes_equal_the_plain_construction(
    receipt_id: str, state: ReceiptState, submitted: float, took: float, snippet: str, mode: str
) -> None:
    receipt = pending(state, snippet)
    receipt.receipt_id = receipt_id
    receipt.submitted_at = submitted
    done = submitted + took
    assert encode(receipt_pdu(receipt, mode, done_at=done)) == encode(
        plain_receipt_pdu(receipt, mode, done)
    )


@given(
    err=st.one_of(st.integers(-5, 1500), st.text(max_size=4)),
    sub=st.integers(-5, 1500),
    dlvrd=st.one_of(st.none(), st.integers(-5, 1500)),
    stat=st.one_of(st.sampled_from(list(ReceiptState)), st.sampled_from(["DELIVRD", "x"])),
    date=st.one_of(st.floats(0, 4e9), st.integers(0, 4_000_000_000)),
)
def test_format_receipt_text_writes_numbers_as_a_format_string_would(
    err: int | str, sub: int, dlvrd: int | None, stat: ReceiptState | str, date: float
) -> None:
    code = stat_code(stat) if isinstance(stat, ReceiptState) else stat
    expected_dlvrd = (1 if code == "DELIVRD" else 0) if dlvrd is None else dlvrd
    expected_err = f"{err:03d}" if isinstance(err, int) else err
    minute = datetime.fromtimestamp(date // 60 * 60, UTC).strftime("%y%m%d%H%M")
    assert format_receipt_text("7", stat, err, date, date, "t", sub=sub, dlvrd=dlvrd) == (
        f"id:7 sub:{sub:03d} dlvrd:{expected_dlvrd:03d} submit date:{minute}"
        f" done date:{minute} stat:{code} err:{expected_err} text:t"
    )


def test_receipt_text_quotes_only_characters_every_client_reads_alike() -> None:
    # Built from the submitted text; anything outside the ASCII/GSM common set is "?".
    from smsmesh.simulator.messages import pending_receipt

    submit = SubmitSm(source_addr="1", destination_addr="2", short_message=b"")
    receipt = pending_receipt(
        submit, "esme", None, "9", ReceiptState.DELIVERED, "Grüße @ $5_ok 😀 and more text", 0.0
    )
    assert receipt.snippet == "Gr??e ? ?5?ok ? and "
    pdu = receipt_pdu(receipt, "text", done_at=0.0)
    assert pdu.short_message.endswith(b"text:Gr??e ? ?5?ok ? and ")
    assert decode_text(pdu.short_message, 0) == pdu.short_message.decode("ascii")


def test_read_submit_strips_the_udh_and_reports_concatenation() -> None:
    udh = bytes((0x05, 0x00, 0x03, 0x2A, 0x03, 0x02))
    pdu = SubmitSm(destination_addr="1", esm_class=0x40, short_message=udh + b"part two")
    text, concat = read_submit(pdu)
    assert text == "part two"
    assert concat is not None
    assert (concat.reference, concat.total, concat.part) == (0x2A, 3, 2)


def test_read_submit_reads_sar_tlvs_and_message_payload() -> None:
    pdu = SubmitSm(
        destination_addr="1",
        data_coding=0x08,
        tlvs=(
            Tlv(Tag.MESSAGE_PAYLOAD, "Привет".encode("utf-16-be")),
            Tlv.u16(Tag.SAR_MSG_REF_NUM, 300),
            Tlv.u8(Tag.SAR_TOTAL_SEGMENTS, 2),
            Tlv.u8(Tag.SAR_SEGMENT_SEQNUM, 1),
        ),
    )
    text, concat = read_submit(pdu)
    assert text == "Привет"
    assert concat is not None
    assert (concat.reference, concat.total, concat.part) == (300, 2, 1)


def test_read_submit_ignores_inconsistent_sar_tlvs() -> None:
    pdu = SubmitSm(
        destination_addr="1",
        short_message=b"x",
        tlvs=(
            Tlv.u16(Tag.SAR_MSG_REF_NUM, 1),
            Tlv.u8(Tag.SAR_TOTAL_SEGMENTS, 2),
            Tlv.u8(Tag.SAR_SEGMENT_SEQNUM, 3),
        ),
    )
    assert read_submit(pdu) == ("x", None)


def test_address_of() -> None:
    assert address_of("+4915123") == (1, 1, "4915123")
    assert address_of("12345") == (0, 1, "12345")
    assert address_of("ACME") == (5, 0, "ACME")


def test_short_gsm_mo_is_one_plain_deliver_sm() -> None:
    (pdu,) = mo_pdus("+4915123456789", "12345", "Hello {world}", reference=7)
    assert (pdu.esm_class, pdu.data_coding) == (0, 0)
    assert (pdu.source_addr_ton, pdu.source_addr) == (1, "4915123456789")
    assert decode_text(pdu.short_message, 0) == "Hello {world}"


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=700).filter(lambda t: "\x00" not in t))
def test_mo_parts_reassemble_to_the_text(text: str) -> None:
    # Lone surrogates cannot be sent at all; everything else must come back unchanged.
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return
    parts = mo_pdus("1", "2", text, reference=200)
    payloads = []
    for index, pdu in enumerate(parts, 1):
        assert len(pdu.short_message) <= 140
        info, payload = parse_concat(pdu.short_message, bool(pdu.esm_class & 0x40))
        if len(parts) > 1:
            assert info is not None
            assert (info.reference, info.total, info.part) == (200, len(parts), index)
        payloads.append(payload)
    assert len({p.data_coding for p in parts}) == 1
    assert decode_text(b"".join(payloads), parts[0].data_coding) == text


async def test_scheduler_fires_in_time_order_from_one_timer() -> None:
    fired: list[str] = []
    done = asyncio.Event()

    def fire(item: str) -> None:
        fired.append(item)
        if len(fired) == 4:
            done.set()

    scheduler: Scheduler[str] = Scheduler(fire)
    now = asyncio.get_running_loop().time()
    scheduler.at(now + 0.06, "c")
    scheduler.at(now + 0.02, "b")
    scheduler.at(now + 0.06, "d")  # same time: kept in insertion order
    scheduler.at(now, "a")
    assert len(scheduler) == 4
    await asyncio.wait_for(done.wait(), 5)
    assert fired == ["a", "b", "c", "d"]
    assert len(scheduler) == 0


async def test_scheduler_cancel_returns_what_was_waiting() -> None:
    scheduler: Scheduler[int] = Scheduler(lambda item: None)
    now = asyncio.get_running_loop().time()
    for n in (3, 1, 2):
        scheduler.at(now + 60 + n, n)
    assert scheduler.cancel() == [1, 2, 3]
    assert len(scheduler) == 0

"""What the simulator reads from submits and writes into deliver_sm: the record of a
received submit, delivery receipt PDUs and mobile-originated (MO) PDUs."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from smsmesh.model import ReceiptState
from smsmesh.simulator.behaviour import NETWORK_ERRORS
from smsmesh.smpp.pdu import (
    ESM_CLASS_DELIVERY_RECEIPT,
    ESM_CLASS_UDHI,
    DeliverSm,
    SubmitSm,
    Tag,
    Tlv,
)
from smsmesh.smpp.receipt import format_receipt_text, message_state_value
from smsmesh.smpp.text import (
    ConcatInfo,
    Encoding,
    SplitMode,
    choose_encoding,
    data_coding,
    decode_udh_payload,
    split,
)

__all__ = [
    "PendingReceipt",
    "ReceivedSubmit",
    "address_of",
    "mo_pdus",
    "pending_receipt",
    "read_submit",
    "receipt_pdu",
]

_GSM_NETWORK = 3  # network_error_code network type: GSM
_RECEIPTED_MESSAGE_ID = Tag.RECEIPTED_MESSAGE_ID


@dataclass(frozen=True, slots=True)
class ReceivedSubmit:
    """One submit_sm as the simulator saw and answered it.

    `text` is decoded with UDH stripped (from message_payload when short_message is
    empty); `concat` comes from the UDH or the SAR TLVs. `message_id` is the id in the
    submit_sm_resp, empty when the submit was refused with `command_status`.
    """

    at: float
    system_id: str
    source: str
    destination: str
    esm_class: int
    data_coding: int
    short_message: bytes
    text: str
    concat: ConcatInfo | None
    message_id: str
    command_status: int
    registered_delivery: int


def read_submit(pdu: SubmitSm) -> tuple[str, ConcatInfo | None]:
    """The decoded text and concatenation info of a submit_sm. Never raises."""
    body = pdu.short_message
    if not body:
        body = pdu.get_tlv(Tag.MESSAGE_PAYLOAD) or b""
    concat, text = decode_udh_payload(body, pdu.data_coding, bool(pdu.esm_class & ESM_CLASS_UDHI))
    if concat is None:
        ref = pdu.get_tlv_int(Tag.SAR_MSG_REF_NUM)
        total = pdu.get_tlv_int(Tag.SAR_TOTAL_SEGMENTS)
        part = pdu.get_tlv_int(Tag.SAR_SEGMENT_SEQNUM)
        if ref is not None and total is not None and part is not None and 1 <= part <= total:
            concat = ConcatInfo(ref, total, part, 16)
    return text, concat


@dataclass(slots=True)
class PendingReceipt:
    """A receipt the simulator owes: for which message, to whom, in what state.

    `origin` is the delivery receiver of the session that submitted, when that session
    can take deliveries; the receipt goes there first.
    """

    system_id: str
    origin: Any
    receipt_id: str
    state: ReceiptState
    submitted_at: float
    snippet: str
    # The receipt travels back: from the submit's destination to its source.
    source: tuple[int, int, str]
    destination: tuple[int, int, str]
    attempts: int = 0


# Characters whose GSM 03.38 code equals their ASCII code, so the receipt text reads the
# same whatever alphabet the client assumes for data_coding 0. Others become "?".
_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 !\"#%&'()*+,-./:;<=>?"
)


def _snippet(text: str) -> str:
    head = text[:20]
    if _SAFE.issuperset(head):  # the common case, without a generator per character
        return head
    return "".join(c if c in _SAFE else "?" for c in head)


def pending_receipt(
    submit: SubmitSm,
    system_id: str,
    origin: Any,
    receipt_id: str,
    state: ReceiptState,
    text: str,
    at: float,
) -> PendingReceipt:
    """The receipt owed for an accepted submit."""
    return PendingReceipt(
        system_id=system_id,
        origin=origin,
        receipt_id=receipt_id,
        state=state,
        submitted_at=at,
        snippet=_snippet(text),
        source=(submit.dest_addr_ton, submit.dest_addr_npi, submit.destination_addr),
        destination=(submit.source_addr_ton, submit.source_addr_npi, submit.source_addr),
    )


@functools.cache
def _state_tlvs(state: ReceiptState) -> tuple[int, tuple[Tlv, ...]]:
    """The network error of a state and the TLVs that follow receipted_message_id:
    message_state, and network_error_code for failures. The same few for every receipt."""
    error = NETWORK_ERRORS.get(state, 0)
    tlvs: tuple[Tlv, ...] = (Tlv.u8(Tag.MESSAGE_STATE, message_state_value(state)),)
    if error:
        tlvs += (Tlv(Tag.NETWORK_ERROR_CODE, bytes((_GSM_NETWORK,)) + error.to_bytes(2)),)
    return error, tlvs


def receipt_pdu(receipt: PendingReceipt, mode: str, done_at: float | None = None) -> DeliverSm:
    """The deliver_sm (esm_class 0x04) carrying `receipt`.

    mode "text": the standard receipt text only; "tlv": receipted_message_id,
    message_state and (for failures) network_error_code only; "both": both.
    """
    error, state_tlvs = _state_tlvs(receipt.state)
    short_message = b""
    tlvs: tuple[Tlv, ...] = ()
    if mode != "tlv":
        short_message = format_receipt_text(
            receipt.receipt_id,
            receipt.state,
            error,
            receipt.submitted_at,
            time.time() if done_at is None else done_at,
            receipt.snippet,
        ).encode("ascii")
    if mode != "text":
        tlvs = (Tlv(_RECEIPTED_MESSAGE_ID, receipt.receipt_id.encode("latin-1") + b"\0"),)
        tlvs += state_tlvs
    src_ton, src_npi, src = receipt.source
    dst_ton, dst_npi, dst = receipt.destination
    return DeliverSm(
        source_addr_ton=src_ton,
        source_addr_npi=src_npi,
        source_addr=src,
        dest_addr_ton=dst_ton,
        dest_addr_npi=dst_npi,
        destination_addr=dst,
        esm_class=ESM_CLASS_DELIVERY_RECEIPT,
        short_message=short_message,
        tlvs=tlvs,
    )


def address_of(address: str) -> tuple[int, int, str]:
    """(ton, npi, digits) of an address as a person writes it: "+4915..." is
    international, digits are of unknown type in the ISDN plan, anything else is
    alphanumeric."""
    if address.startswith("+") and address[1:].isdigit():
        return 1, 1, address[1:]
    if address.isdigit():
        return 0, 1, address
    return 5, 0, address


def mo_pdus(source: str, destination: str, text: str, reference: int) -> list[DeliverSm]:
    """The deliver_sm parts of a mobile-originated message (esm_class 0, or UDHI when
    long): GSM 7-bit when the text allows, else UCS-2; long text as UDH-concatenated
    parts sharing `reference` (0..255). Raises SegmentationError above 255 parts."""
    encoding = choose_encoding(text)
    if encoding is not Encoding.GSM7:
        encoding = Encoding.UCS2
    src_ton, src_npi, src = address_of(source)
    dst_ton, dst_npi, dst = address_of(destination)
    return [
        DeliverSm(
            source_addr_ton=src_ton,
            source_addr_npi=src_npi,
            source_addr=src,
            dest_addr_ton=dst_ton,
            dest_addr_npi=dst_npi,
            destination_addr=dst,
            esm_class=ESM_CLASS_UDHI if segment.esm_udhi else 0,
            data_coding=data_coding(encoding),
            short_message=segment.short_message,
        )
        for segment in split(text, encoding, SplitMode.UDH8, reference)
    ]

"""The SMPP codec: exact bytes, round trips of every PDU, and every error status."""

from __future__ import annotations

import struct
import time
from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsmesh.smpp.codec import PduError, decode, encode, peek_length
from smsmesh.smpp.pdu import (
    PDU_CLASSES,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    BindType,
    CancelSm,
    CancelSmResp,
    CommandId,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DestAddress,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlv,
    Unbind,
    UnbindResp,
    UnsuccessSme,
    body_field_names,
    is_response,
    make_nack,
    make_response,
)

S = CommandStatus


def frame(command_id: int, body: bytes, seq: int = 1, status: int = 0) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body


# --- an exact vector, worked out by hand from SMPP 3.4 sections 3.2 and 4.4.1 ----------

SUBMIT_VECTOR = bytes.fromhex(
    "00000035"  # command_length: 16 header + 37 body = 53
    "00000004"  # command_id: submit_sm
    "00000000"  # command_status
    "00000001"  # sequence_number
    "00"  # service_type ""
    "01"
    "01"  # source_addr_ton international, source_addr_npi ISDN
    "313233343500"  # source_addr "12345"
    "01"
    "01"  # dest_addr_ton, dest_addr_npi
    "3439313531323334353637383900"  # destination_addr "4915123456789"
    "00"
    "00"
    "00"  # esm_class, protocol_id, priority_flag
    "00"  # schedule_delivery_time ""
    "00"  # validity_period ""
    "01"
    "00"
    "00"
    "00"  # registered_delivery, replace_if_present, data_coding, default_msg_id
    "02"
    "4869"  # sm_length 2, short_message "Hi"
)
SUBMIT_VALUE = SubmitSm(
    sequence_number=1,
    source_addr_ton=1,
    source_addr_npi=1,
    source_addr="12345",
    dest_addr_ton=1,
    dest_addr_npi=1,
    destination_addr="4915123456789",
    registered_delivery=1,
    short_message=b"Hi",
)


def test_submit_sm_encodes_to_the_hand_computed_bytes() -> None:
    assert encode(SUBMIT_VALUE) == SUBMIT_VECTOR


def test_submit_sm_decodes_from_the_hand_computed_bytes() -> None:
    assert decode(SUBMIT_VECTOR) == SUBMIT_VALUE
    assert peek_length(SUBMIT_VECTOR) == 53


def test_tlvs_follow_the_body_in_order_and_unknown_tags_survive() -> None:
    vendor = Tlv(0x1400, b"\x01\x02\x03")
    pdu = SUBMIT_VALUE.with_tlv(Tlv.u16(Tag.SAR_MSG_REF_NUM, 0x1234)).with_tlv(vendor)
    data = encode(pdu)
    assert data[len(SUBMIT_VECTOR) :] == bytes.fromhex(
        "020c000212341400000301 0203".replace(" ", "")
    )
    assert struct.unpack(">I", data[:4])[0] == len(SUBMIT_VECTOR) + 13
    back = decode(data)
    assert back.tlvs == (Tlv(0x020C, b"\x12\x34"), vendor)
    assert back.get_tlv_int(Tag.SAR_MSG_REF_NUM) == 0x1234
    assert back.get_tlv(Tag.MESSAGE_PAYLOAD) is None


# --- every PDU type round trips ---------------------------------------------------------

SAMPLES: list[Pdu] = [
    GenericNack(sequence_number=9, command_status=S.ESME_RINVCMDID),
    BindTransmitter(7, 0, (), "sys", "pw", "VMA", 0x34, 1, 1, "^31"),
    BindReceiver(8, 0, (), "sys", "pw", "", 0x33, 0, 0, ""),
    BindTransceiver(9, 0, (), "s" * 15, "p" * 8, "t" * 12, 0x34, 2, 3, "r" * 40),
    BindTransmitterResp(7, 0, (Tlv.u8(Tag.SC_INTERFACE_VERSION, 0x34),), "SMSC"),
    BindReceiverResp(8, 0, (), "SMSC"),
    BindTransceiverResp(9, 0, (), "SMSC"),
    Outbind(1, 0, (), "smsc", "pw"),
    Unbind(2),
    UnbindResp(2),
    EnquireLink(3),
    EnquireLinkResp(3),
    SUBMIT_VALUE,
    SubmitSmResp(1, 0, (), "msg-1"),
    DeliverSm(
        4,
        0,
        (Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, "abc"), Tlv.u8(Tag.MESSAGE_STATE, 2)),
        "",
        1,
        1,
        "4915123456789",
        0,
        0,
        "12345",
        0x04,
        0,
        0,
        "",
        "",
        0,
        0,
        0,
        0,
        b"id:abc sub:001 dlvrd:001 stat:DELIVRD",
    ),
    DeliverSmResp(4),
    DataSm(
        5,
        0,
        (Tlv(Tag.MESSAGE_PAYLOAD, b"x" * 300),),
        "WAP",
        1,
        1,
        "a" * 64,
        2,
        2,
        "b" * 64,
        0,
        1,
        8,
    ),
    DataSmResp(5, 0, (), "m"),
    QuerySm(6, 0, (), "m1", 1, 1, "123"),
    QuerySmResp(6, 0, (), "m1", "250101120000000+", 2, 0),
    CancelSm(10, 0, (), "", "m1", 1, 1, "123", 1, 1, "456"),
    CancelSmResp(10),
    ReplaceSm(11, 0, (), "m1", 1, 1, "123", "", "000001000000000R", 1, 0, b"new"),
    ReplaceSmResp(11),
    SubmitMulti(
        12,
        0,
        (),
        "",
        1,
        1,
        "123",
        (DestAddress(1, 1, 1, "491511"), DestAddress(2, 0, 0, "friends")),
        0,
        0,
        0,
        "",
        "",
        1,
        0,
        0,
        0,
        b"hello all",
    ),
    SubmitMultiResp(12, 0, (), "mm", (UnsuccessSme(1, 1, "491511", S.ESME_RINVDSTADR),)),
    AlertNotification(13, 0, (Tlv.u8(Tag.MS_AVAILABILITY_STATUS, 0),), 1, 1, "123", 1, 1, "esme"),
]


def test_samples_cover_every_pdu_class() -> None:
    assert {type(p) for p in SAMPLES} == set(PDU_CLASSES.values())


@pytest.mark.parametrize("pdu", SAMPLES, ids=lambda p: type(p).__name__)
def test_round_trip(pdu: Pdu) -> None:
    data = encode(pdu)
    assert peek_length(data) == len(data)
    back = decode(data)
    assert back == pdu
    assert type(back).command_id == struct.unpack(">I", data[4:8])[0]
    assert encode(back) == data


def test_strings_keep_every_octet_through_latin1() -> None:
    pdu = SubmitSm(source_addr="Caf\xe9\xff", short_message=bytes(range(254)))
    assert decode(encode(pdu)) == pdu


# --- failed responses -----------------------------------------------------------------


def test_failed_response_is_sent_header_only() -> None:
    data = encode(SubmitSmResp(sequence_number=5, command_status=S.ESME_RTHROTTLED))
    assert data == frame(CommandId.SUBMIT_SM_RESP, b"", seq=5, status=S.ESME_RTHROTTLED)


def test_failed_response_keeps_a_body_it_has() -> None:
    pdu = SubmitSmResp(sequence_number=5, command_status=S.ESME_RSUBMITFAIL, message_id="x")
    assert decode(encode(pdu)) == pdu


def test_header_only_responses_decode_to_defaults() -> None:
    for cid in (
        CommandId.SUBMIT_SM_RESP,
        CommandId.BIND_TRANSCEIVER_RESP,
        CommandId.DELIVER_SM_RESP,
    ):
        pdu = decode(frame(cid, b"", seq=3, status=S.ESME_RINVPASWD))
        assert pdu.command_status == S.ESME_RINVPASWD
        assert pdu.sequence_number == 3
    # Many ESMEs answer deliver_sm with a bare header even on success.
    assert decode(frame(CommandId.DELIVER_SM_RESP, b"")) == DeliverSmResp(sequence_number=1)


def test_failed_response_with_garbage_body_is_still_read() -> None:
    pdu = decode(frame(CommandId.SUBMIT_SM_RESP, b"no terminator", status=S.ESME_RSYSERR))
    assert pdu == SubmitSmResp(sequence_number=1, command_status=S.ESME_RSYSERR)


# --- every error ------------------------------------------------------------------------


def _error(data: bytes) -> PduError:
    with pytest.raises(PduError) as info:
        decode(data)
    return info.value


def test_error_carries_header_fields() -> None:
    err = _error(frame(0x99, b"", seq=42))
    assert (err.command_status, err.command_id, err.sequence_number) == (S.ESME_RINVCMDID, 0x99, 42)
    assert "unknown command_id" in err.detail
    assert isinstance(err, ValueError)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\x00\x00\x00\x10\x00\x00", S.ESME_RINVCMDLEN),  # shorter than a header
        (frame(CommandId.ENQUIRE_LINK, b"")[:-1] + b"", S.ESME_RINVCMDLEN),
        (frame(CommandId.ENQUIRE_LINK, b"") + b"\x00", S.ESME_RINVCMDLEN),  # length mismatch
        (SUBMIT_VECTOR[:4] + SUBMIT_VECTOR[4:], None),  # control: valid
        (frame(CommandId.SUBMIT_SM, SUBMIT_VECTOR[16:30]), S.ESME_RINVCMDLEN),  # truncated
        (frame(CommandId.SUBMIT_SM, b"\x00\x01"), S.ESME_RINVCMDLEN),  # ends inside integers
        (frame(CommandId.SUBMIT_SM, b""), S.ESME_RINVCMDLEN),  # no body at all
        (frame(0x00000099, b""), S.ESME_RINVCMDID),
        (frame(0x80000099, b""), S.ESME_RINVCMDID),
        (frame(CommandId.SUBMIT_SM, SUBMIT_VECTOR[16:-3] + b"\x09Hi"), S.ESME_RINVMSGLEN),
        (frame(CommandId.SUBMIT_SM, SUBMIT_VECTOR[16:-3]), S.ESME_RINVCMDLEN),  # no sm_length
        (frame(CommandId.SUBMIT_SM, SUBMIT_VECTOR[16:] + b"\x02\x0c\x00"), S.ESME_RINVOPTPARSTREAM),
        (
            frame(CommandId.SUBMIT_SM, SUBMIT_VECTOR[16:] + b"\x02\x0c\x00\x09\x00"),
            S.ESME_RINVOPTPARSTREAM,
        ),
        (
            frame(CommandId.SUBMIT_SM, SUBMIT_VECTOR[16:] + b"\x02\x0c\x00\x01\x00"),
            S.ESME_RINVPARLEN,
        ),
        (frame(CommandId.SUBMIT_SM, b"LONGXX\x00" + SUBMIT_VECTOR[17:]), S.ESME_RINVSERTYP),
        (frame(CommandId.SUBMIT_SM, b"\x00\x01\x01" + b"1" * 21 + b"\x00"), S.ESME_RINVSRCADR),
        (frame(CommandId.SUBMIT_SM, b"\x00\x01\x011\x00\x01\x01" + b"2" * 21), S.ESME_RINVDSTADR),
        (
            frame(CommandId.SUBMIT_SM, b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" + b"3" * 17),
            S.ESME_RINVSCHED,
        ),
        (
            frame(CommandId.SUBMIT_SM, b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" + b"4" * 17),
            S.ESME_RINVEXPIRY,
        ),
        (frame(CommandId.BIND_TRANSMITTER, b"s" * 16 + b"\x00"), S.ESME_RINVSYSID),
        (frame(CommandId.BIND_TRANSMITTER, b"s\x00" + b"p" * 9 + b"\x00"), S.ESME_RINVPASWD),
        (frame(CommandId.BIND_TRANSMITTER, b"s\x00p\x00" + b"t" * 13), S.ESME_RINVSYSTYP),
        (
            frame(CommandId.BIND_TRANSMITTER, b"s\x00p\x00t\x00\x34\x00\x00" + b"r" * 41),
            S.ESME_RINVPARLEN,
        ),
        (frame(CommandId.SUBMIT_SM_RESP, b"m" * 65 + b"\x00"), S.ESME_RINVMSGID),
        (frame(CommandId.SUBMIT_MULTI, b"\x00\x00\x001\x00\x00"), S.ESME_RINVNUMDESTS),
        (frame(CommandId.SUBMIT_MULTI, b"\x00\x00\x001\x00\x01\x07"), S.ESME_RINVDESTFLAG),
        (
            frame(CommandId.SUBMIT_MULTI, b"\x00\x00\x001\x00\x01\x02" + b"d" * 21),
            S.ESME_RINVDLNAME,
        ),
    ],
)
def test_decode_errors(data: bytes, status: int | None) -> None:
    if status is None:
        decode(data)
        return
    assert _error(data).command_status == status


def test_peek_length() -> None:
    assert peek_length(b"\x00\x00") is None
    assert peek_length(b"\x00\x00\x00\x10") == 16
    with pytest.raises(PduError) as info:
        peek_length(b"\x00\x00\x00\x0f")
    assert info.value.command_status == S.ESME_RINVCMDLEN
    with pytest.raises(PduError) as info:
        peek_length(struct.pack(">IIII", 70000, 4, 0, 77))
    assert (info.value.command_status, info.value.sequence_number) == (S.ESME_RINVCMDLEN, 77)
    assert peek_length(struct.pack(">I", 70000), max_size=100000) == 70000


@pytest.mark.parametrize(
    ("pdu", "status"),
    [
        (SubmitSm(source_addr="1" * 21), S.ESME_RINVSRCADR),
        (SubmitSm(destination_addr="1\x002"), S.ESME_RINVDSTADR),
        (SubmitSm(destination_addr="\u20ac"), S.ESME_RINVPARLEN),  # not representable
        (SubmitSm(short_message=b"x" * 255), S.ESME_RINVMSGLEN),
        (SubmitSm(esm_class=256), S.ESME_RINVPARLEN),
        (DeliverSm(service_type="TOOLONG"), S.ESME_RINVSERTYP),
        (BindTransmitter(password="p" * 9), S.ESME_RINVPASWD),
        (SubmitMulti(), S.ESME_RINVNUMDESTS),
        (SubmitMulti(dest_addresses=(DestAddress(3),)), S.ESME_RINVDESTFLAG),
        (EnquireLink(sequence_number=-1), S.ESME_RINVPARLEN),
    ],
)
def test_encode_errors(pdu: Pdu, status: int) -> None:
    with pytest.raises(PduError) as info:
        encode(pdu)
    assert info.value.command_status == status


# --- helpers ----------------------------------------------------------------------------


def test_make_response_matches_the_request() -> None:
    resp = make_response(SUBMIT_VALUE, message_id="abc")
    assert resp == SubmitSmResp(sequence_number=1, message_id="abc")
    nack = make_response(BindReceiver(sequence_number=4), S.ESME_RINVPASWD)
    assert nack == BindReceiverResp(sequence_number=4, command_status=S.ESME_RINVPASWD)
    assert make_response(Outbind(sequence_number=2), S.ESME_RSYSERR) == GenericNack(
        2, S.ESME_RSYSERR
    )
    with pytest.raises(ValueError, match="no response"):
        make_response(AlertNotification(sequence_number=2))
    with pytest.raises(ValueError, match="is a response"):
        make_response(resp)
    assert make_nack(3, S.ESME_RINVCMDLEN) == GenericNack(3, S.ESME_RINVCMDLEN)


def test_response_classes_pair_with_requests() -> None:
    for cid, cls in PDU_CLASSES.items():
        assert is_response(cid) == is_response(cls()) == (cid >= 0x80000000)
        if cls.response_class is not None:
            assert cls.response_class.command_id == cid | 0x80000000


def test_bind_type() -> None:
    for bt in BindType:
        assert BindType.of(bt.request_class()) is bt
        assert BindType.of(bt.response_class.command_id) is bt
    assert BindType.of(SUBMIT_VALUE) is None
    assert not BindType.RECEIVER.can_submit
    assert BindType.RECEIVER.can_receive
    assert BindType.TRANSMITTER.can_submit
    assert not BindType.TRANSMITTER.can_receive


def test_tlv_helpers() -> None:
    assert Tlv.u32(1, 5).value == b"\x00\x00\x00\x05"
    assert Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, "ab").value == b"ab\x00"
    pdu = DeliverSm(
        tlvs=(
            Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, "ab"),
            Tlv(Tag.NETWORK_ERROR_CODE, b"\x03\x00\x01"),
        )
    )
    assert pdu.get_tlv_str(Tag.RECEIPTED_MESSAGE_ID) == "ab"
    assert pdu.get_tlv_int(Tag.NETWORK_ERROR_CODE) == 0x030001
    assert pdu.get_tlv_str(Tag.SOURCE_PORT) is None
    assert CommandStatus.describe(0x58) == "ESME_RTHROTTLED"
    assert CommandStatus.describe(0x401) == "0x00000401"


# --- property: generated PDUs round trip ---------------------------------------------

_STR_MAX = {
    "system_id": 15,
    "password": 8,
    "system_type": 12,
    "address_range": 40,
    "service_type": 5,
    "source_addr": 20,
    "destination_addr": 20,
    "schedule_delivery_time": 16,
    "validity_period": 16,
    "final_date": 16,
    "message_id": 64,
    "esme_addr": 64,
}
_WIDE_ADDRESS = {DataSm, AlertNotification}


def _text(size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=size)


_u8 = st.integers(0, 255)
_tlv = st.one_of(
    st.builds(Tlv, st.integers(0x1400, 0x3FFF), st.binary(max_size=20)),
    st.builds(Tlv.u16, st.just(Tag.SAR_MSG_REF_NUM), st.integers(0, 0xFFFF)),
    st.builds(Tlv.u8, st.just(Tag.MESSAGE_STATE), _u8),
    st.builds(Tlv.cstr, st.just(Tag.RECEIPTED_MESSAGE_ID), _text(64)),
)
_dest = st.one_of(
    st.builds(DestAddress, st.just(1), _u8, _u8, _text(20)),
    st.builds(DestAddress, st.just(2), st.just(0), st.just(0), _text(20)),
)
_unsuccess = st.builds(UnsuccessSme, _u8, _u8, _text(20), st.integers(0, 0xFFFFFFFF))


def _field_strategy(cls: type[Pdu], name: str) -> st.SearchStrategy[object]:
    if name == "short_message":
        return st.binary(max_size=254)
    if name == "dest_addresses":
        return st.lists(_dest, min_size=1, max_size=5).map(tuple)
    if name == "unsuccess_smes":
        return st.lists(_unsuccess, max_size=5).map(tuple)
    if name in _STR_MAX:
        size = 64 if cls in _WIDE_ADDRESS and name.endswith("addr") else _STR_MAX[name]
        return _text(size)
    return _u8


def _pdu_strategy(cls: type[Pdu]) -> st.SearchStrategy[Pdu]:
    kwargs = {name: _field_strategy(cls, name) for name in body_field_names(cls)}
    return st.builds(
        cls,
        sequence_number=st.integers(0, 0xFFFFFFFF),
        command_status=st.integers(0, 0xFFFFFFFF) if cls.is_response else st.just(0),
        tlvs=st.lists(_tlv, max_size=4).map(tuple),
        **kwargs,
    )


any_pdu = st.one_of([_pdu_strategy(cls) for cls in PDU_CLASSES.values()])


@settings(max_examples=400, deadline=None)
@given(any_pdu)
def test_generated_pdus_round_trip(pdu: Pdu) -> None:
    data = encode(pdu)
    back = decode(data)
    if pdu.command_status and pdu.is_response and not pdu.tlvs and len(data) == 16:
        # Failed responses with default fields travel header-only and read back alike.
        assert back == type(pdu)(pdu.sequence_number, pdu.command_status)
    assert back == pdu
    assert encode(back) == data


def test_field_tables_match_dataclasses() -> None:
    for cls in PDU_CLASSES.values():
        names = [f.name for f in fields(cls)]
        assert names[:3] == ["sequence_number", "command_status", "tlvs"]


# --- speed ------------------------------------------------------------------------------


def test_submit_sm_encode_decode_is_fast() -> None:
    pdu = SubmitSm(
        source_addr="Acme",
        source_addr_ton=5,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="4915123456789",
        registered_delivery=1,
        short_message=b"Your code is 123456. It expires in 10 minutes.",
        sequence_number=12345,
    )
    rounds = 5000
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            decode(encode(pdu))
        best = min(best, (time.perf_counter() - start) / rounds)
    # Target is < 10 us on the 2-core box; allow headroom for a loaded CI machine.
    assert best < 20e-6, f"encode+decode took {best * 1e6:.1f} us"

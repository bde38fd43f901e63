"""The sans-I/O session: bind rules, window accounting, unbind, automatic answers."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from smsmesh.smpp.codec import decode, encode
from smsmesh.smpp.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    BindTransmitterResp,
    BindType,
    CommandId,
    CommandStatus,
    DataSm,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlv,
    Unbind,
    UnbindResp,
    make_response,
)
from smsmesh.smpp.session import (
    MAX_SEQUENCE,
    BindFailed,
    BindRequested,
    Bound,
    ConnectionClosed,
    EnquireLinkReceived,
    LocalProtocolError,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    Role,
    Session,
    State,
    UnbindRequested,
)

from .conftest import transfer

S = CommandStatus
Pair = Callable[[BindType], tuple[Session, Session]]


def frames(data: bytes) -> list[Pdu]:
    """Split and decode a byte stream the session produced."""
    out = []
    while data:
        (length,) = struct.unpack(">I", data[:4])
        out.append(decode(data[:length]))
        data = data[length:]
    return out


def raw(command_id: int, body: bytes = b"", seq: int = 1, status: int = 0) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body


# --- binding --------------------------------------------------------------------------


def test_bind_handshake_both_sides() -> None:
    esme = Session(Role.ESME)
    smsc = Session(Role.SMSC)
    seq = esme.send(BindTransceiver(system_id="acme", password="pw"))
    assert (seq, esme.state, esme.outstanding) == (1, State.BINDING, 1)

    events = transfer(esme, smsc)
    assert events == [BindRequested(BindTransceiver(1, 0, (), "acme", "pw"))]
    assert smsc.state is State.BINDING
    smsc.send(
        make_response(
            events[0].pdu,  # type: ignore[attr-defined]
            system_id="SMSC",
            tlvs=(Tlv.u8(Tag.SC_INTERFACE_VERSION, 0x34),),
        )
    )
    assert (smsc.state, smsc.bind_type, smsc.system_id) == (
        State.BOUND_TRX,
        BindType.TRANSCEIVER,
        "acme",
    )
    assert smsc.peer_interface_version == 0x34

    events = transfer(smsc, esme)
    assert isinstance(events[0], ResponseReceived)
    assert events[1] == Bound(BindType.TRANSCEIVER)
    assert (esme.state, esme.system_id, esme.outstanding) == (State.BOUND_TRX, "SMSC", 0)
    assert esme.peer_interface_version == 0x34


def test_refused_bind_returns_to_open_and_can_retry() -> None:
    esme = Session(Role.ESME)
    smsc = Session(Role.SMSC)
    esme.send(BindTransmitter(system_id="acme", password="bad"))
    (req,) = transfer(esme, smsc)
    smsc.send(make_response(req.pdu, S.ESME_RINVPASWD))  # type: ignore[attr-defined]
    assert smsc.state is State.OPEN
    events = transfer(smsc, esme)
    assert events[-1] == BindFailed(S.ESME_RINVPASWD)
    assert esme.state is State.OPEN
    esme.send(BindTransmitter(system_id="acme", password="good"))
    assert esme.state is State.BINDING


def test_generic_nack_to_a_bind_fails_it() -> None:
    esme = Session(Role.ESME)
    esme.send(BindTransmitter(system_id="a"))
    events = esme.receive_data(raw(CommandId.GENERIC_NACK, seq=1, status=S.ESME_RINVCMDID))
    assert events[-1] == BindFailed(S.ESME_RINVCMDID)
    assert esme.state is State.OPEN


@pytest.mark.parametrize(
    ("bind_type", "allowed", "refused"),
    [
        (BindType.TRANSMITTER, [SubmitSm, DataSm, QuerySm], []),
        (BindType.RECEIVER, [], [SubmitSm, DataSm, QuerySm]),
        (BindType.TRANSCEIVER, [SubmitSm, DataSm, QuerySm], []),
    ],
)
def test_esme_send_rules(
    bound: Pair, bind_type: BindType, allowed: list[type[Pdu]], refused: list[type[Pdu]]
) -> None:
    esme, _ = bound(bind_type)
    for cls in allowed:
        esme.send(cls())
    for cls in refused:
        with pytest.raises(LocalProtocolError, match="receiver bind"):
            esme.send(cls())
    with pytest.raises(LocalProtocolError, match="ESME role cannot send deliver_sm"):
        esme.send(DeliverSm())
    with pytest.raises(LocalProtocolError, match="BOUND"):
        esme.send(BindTransmitter())


def test_esme_cannot_submit_before_bound() -> None:
    esme = Session(Role.ESME)
    with pytest.raises(LocalProtocolError, match="state OPEN"):
        esme.send(SubmitSm())
    with pytest.raises(LocalProtocolError, match="unbind in state OPEN"):
        esme.send(Unbind())
    esme.send(EnquireLink())  # allowed in any state
    esme.send(BindTransmitter())
    with pytest.raises(LocalProtocolError, match="state BINDING"):
        esme.send(SubmitSm())


def test_smsc_send_rules(bound: Pair) -> None:
    _, smsc = bound(BindType.TRANSMITTER)
    with pytest.raises(LocalProtocolError, match="transmitter bind"):
        smsc.send(DeliverSm())
    with pytest.raises(LocalProtocolError, match="SMSC role cannot send submit_sm"):
        smsc.send(SubmitSm())
    _, smsc = bound(BindType.RECEIVER)
    smsc.send(DeliverSm())
    smsc.send(DataSm())
    with pytest.raises(LocalProtocolError, match="outbind"):
        smsc.send(Outbind())
    fresh = Session(Role.SMSC)
    fresh.send(Outbind(system_id="smsc"))
    with pytest.raises(LocalProtocolError, match="state OPEN"):
        fresh.send(DeliverSm())


def test_peer_requests_that_are_not_allowed_are_answered(bound: Pair) -> None:
    smsc = Session(Role.SMSC)
    events = smsc.receive_data(encode(SubmitSm(sequence_number=5)))
    assert isinstance(events[0], ProtocolError)
    assert not events[0].fatal
    assert frames(smsc.data_to_send()) == [SubmitSmResp(5, S.ESME_RINVBNDSTS)]

    esme, smsc = bound(BindType.TRANSMITTER)
    smsc.receive_data(encode(BindTransmitter(sequence_number=6)))
    assert frames(smsc.data_to_send()) == [BindTransmitterResp(6, S.ESME_RALYBND)]
    events = esme.receive_data(encode(DeliverSm(sequence_number=7)))
    assert [type(e) for e in events] == [ProtocolError]
    assert frames(esme.data_to_send()) == [DeliverSmResp(7, S.ESME_RINVBNDSTS)]
    esme.receive_data(encode(SubmitSm(sequence_number=8)))
    assert frames(esme.data_to_send()) == [SubmitSmResp(8, S.ESME_RINVCMDID)]
    esme.receive_data(encode(Outbind(sequence_number=9)))
    assert frames(esme.data_to_send()) == [GenericNack(9, S.ESME_RINVBNDSTS)]


def test_receiver_gets_deliveries_and_outbind_reaches_an_open_esme(bound: Pair) -> None:
    esme, smsc = bound(BindType.RECEIVER)
    smsc.send(DeliverSm(short_message=b"hi"))
    (event,) = transfer(smsc, esme)
    assert isinstance(event, RequestReceived)
    assert esme.pending_inbound == 1
    esme.send(make_response(event.pdu))
    assert esme.pending_inbound == 0
    (event,) = transfer(esme, smsc)
    assert isinstance(event, ResponseReceived)
    assert event.request is not None
    assert event.request.command_id == CommandId.DELIVER_SM

    fresh = Session(Role.ESME)
    (event,) = fresh.receive_data(encode(Outbind(sequence_number=1, system_id="smsc")))
    assert isinstance(event, RequestReceived)
    assert fresh.data_to_send() == b""


# --- sequence numbers and window accounting -------------------------------------------


def test_sequence_numbers_are_assigned_and_wrap(bound: Pair) -> None:
    esme, _ = bound(BindType.TRANSMITTER)
    assert [esme.send(SubmitSm()) for _ in range(3)] == [2, 3, 4]  # 1 was the bind
    assert esme.send(SubmitSm(sequence_number=1000)) == 1000
    with pytest.raises(LocalProtocolError, match="in use"):
        esme.send(SubmitSm(sequence_number=1000))
    with pytest.raises(LocalProtocolError, match="out of range"):
        esme.send(SubmitSm(sequence_number=MAX_SEQUENCE + 1))
    esme._next_seq = MAX_SEQUENCE - 1
    assert [esme.send(SubmitSm()) for _ in range(4)] == [MAX_SEQUENCE - 1, MAX_SEQUENCE, 1, 5]
    assert esme.outstanding == 8


def test_window_accounting(bound: Pair) -> None:
    esme, smsc = bound(BindType.TRANSCEIVER)
    for _ in range(5):
        esme.send(SubmitSm())
    assert esme.outstanding == 5
    events = transfer(esme, smsc)
    assert smsc.pending_inbound == 5
    for ev in events[:3]:
        smsc.send(make_response(ev.pdu, message_id="m"))  # type: ignore[attr-defined]
    events = transfer(smsc, esme)
    assert [type(e) for e in events] == [ResponseReceived] * 3
    assert esme.outstanding == 2
    forgotten = esme.forget(6)
    assert forgotten is not None
    assert forgotten.sequence_number == 6
    assert esme.outstanding == 1
    assert esme.forget(6) is None
    # The late answer to the forgotten request is reported, not matched.
    late = esme.receive_data(encode(SubmitSmResp(6, 0, (), "late")))
    assert len(late) == 1
    assert isinstance(late[0], ProtocolError)
    assert not late[0].fatal


def test_response_of_the_wrong_type_is_reported_and_ignored(bound: Pair) -> None:
    esme, _ = bound(BindType.TRANSMITTER)
    seq = esme.send(SubmitSm())
    (event,) = esme.receive_data(encode(EnquireLinkResp(seq)))
    assert isinstance(event, ProtocolError)
    assert esme.outstanding == 1


def test_responses_must_answer_a_pending_request(bound: Pair) -> None:
    esme, smsc = bound(BindType.TRANSCEIVER)
    with pytest.raises(LocalProtocolError, match="awaits"):
        smsc.send(SubmitSmResp(sequence_number=99))
    esme.send(SubmitSm())
    (event,) = transfer(esme, smsc)
    with pytest.raises(LocalProtocolError, match="does not answer"):
        smsc.send(DeliverSmResp(sequence_number=event.pdu.sequence_number))  # type: ignore[attr-defined]
    smsc.send(GenericNack(event.pdu.sequence_number, S.ESME_RSYSERR))  # type: ignore[attr-defined]
    (answer,) = transfer(smsc, esme)
    assert isinstance(answer, ResponseReceived)
    assert answer.response == GenericNack(event.pdu.sequence_number, S.ESME_RSYSERR)  # type: ignore[attr-defined]


# --- automatic answers ---------------------------------------------------------------


def test_enquire_link_is_answered_and_reported() -> None:
    esme = Session(Role.ESME)
    (event,) = esme.receive_data(encode(EnquireLink(sequence_number=77)))
    assert event == EnquireLinkReceived(EnquireLink(77))
    assert frames(esme.data_to_send()) == [EnquireLinkResp(77)]


def test_unknown_command_gets_generic_nack(bound: Pair) -> None:
    esme, _ = bound(BindType.TRANSCEIVER)
    (event,) = esme.receive_data(raw(0x00000099, b"xyz", seq=12))
    assert isinstance(event, ProtocolError)
    assert (event.status, event.fatal) == (S.ESME_RINVCMDID, False)
    assert frames(esme.data_to_send()) == [GenericNack(12, S.ESME_RINVCMDID)]
    assert esme.state is State.BOUND_TRX


def test_generic_nack_matching_and_unmatched(bound: Pair) -> None:
    esme, _ = bound(BindType.TRANSMITTER)
    seq = esme.send(SubmitSm())
    esme.data_to_send()
    (event,) = esme.receive_data(encode(GenericNack(seq, S.ESME_RINVCMDID)))
    assert isinstance(event, ResponseReceived)
    assert event.request is not None
    assert event.request.sequence_number == seq
    assert esme.outstanding == 0
    (event,) = esme.receive_data(encode(GenericNack(0, S.ESME_RINVCMDLEN)))
    assert event == ResponseReceived(None, GenericNack(0, S.ESME_RINVCMDLEN))
    assert esme.data_to_send() == b""  # a nack is never answered


def test_malformed_request_gets_its_response_with_the_codec_status(bound: Pair) -> None:
    _, smsc = bound(BindType.TRANSMITTER)
    body = b"\x00\x01\x01" + b"1" * 25 + b"\x00"  # source_addr too long
    (event,) = smsc.receive_data(raw(CommandId.SUBMIT_SM, body, seq=31))
    assert isinstance(event, ProtocolError)
    assert (event.status, event.fatal) == (S.ESME_RINVSRCADR, False)
    assert frames(smsc.data_to_send()) == [SubmitSmResp(31, S.ESME_RINVSRCADR)]
    assert smsc.state is State.BOUND_TX


def test_malformed_response_settles_its_request(bound: Pair) -> None:
    esme, _ = bound(BindType.TRANSMITTER)
    seq = esme.send(SubmitSm())
    esme.data_to_send()
    events = esme.receive_data(raw(CommandId.SUBMIT_SM_RESP, b"x" * 70 + b"\x00", seq=seq))
    assert isinstance(events[0], ProtocolError)
    assert events[1] == ResponseReceived(
        esme_request := events[1].request,  # type: ignore[attr-defined]
        GenericNack(seq, S.ESME_RINVMSGID),
    )
    assert esme_request is not None
    assert esme.outstanding == 0
    assert esme.data_to_send() == b""


@pytest.mark.parametrize("length", [0, 15, 65537, 0xFFFFFFFF])
def test_impossible_length_is_fatal(bound: Pair, length: int) -> None:
    esme, _ = bound(BindType.TRANSMITTER)
    data = struct.pack(">IIII", length, CommandId.DELIVER_SM, 0, 44)
    events = esme.receive_data(encode(EnquireLink(sequence_number=3)) + data + b"more")
    assert isinstance(events[0], EnquireLinkReceived)
    assert events[1] == ProtocolError(S.ESME_RINVCMDLEN, events[1].detail, True)  # type: ignore[attr-defined]
    assert esme.state is State.CLOSED
    assert frames(esme.data_to_send()) == [EnquireLinkResp(3), GenericNack(44, S.ESME_RINVCMDLEN)]
    assert esme.receive_data(encode(EnquireLink(sequence_number=4))) == []
    with pytest.raises(LocalProtocolError, match="closed"):
        esme.send(SubmitSm())


def test_bad_length_seen_in_four_octets_is_fatal_at_once() -> None:
    esme = Session(Role.ESME)
    (event,) = esme.receive_data(b"\x00\x00\x00\x05")
    assert isinstance(event, ProtocolError)
    assert event.fatal
    assert frames(esme.data_to_send()) == [GenericNack(0, S.ESME_RINVCMDLEN)]


def test_max_pdu_size_is_configurable() -> None:
    small = Session(Role.SMSC, max_pdu_size=100)
    (event,) = small.receive_data(struct.pack(">I", 101))
    assert isinstance(event, ProtocolError)
    assert event.fatal
    big = Session(Role.SMSC, max_pdu_size=200_000)
    assert big.receive_data(struct.pack(">I", 100_000)) == []
    with pytest.raises(ValueError, match="header"):
        Session(Role.SMSC, max_pdu_size=10)


# --- unbind ---------------------------------------------------------------------------


def test_unbind_handshake(bound: Pair) -> None:
    esme, smsc = bound(BindType.TRANSCEIVER)
    seq = esme.send(Unbind())
    assert esme.state is State.UNBINDING
    with pytest.raises(LocalProtocolError, match="UNBINDING"):
        esme.send(SubmitSm())
    (event,) = transfer(esme, smsc)
    assert event == UnbindRequested(Unbind(seq))
    assert smsc.state is State.CLOSED
    events = transfer(smsc, esme)
    assert events == [ResponseReceived(Unbind(seq), UnbindResp(seq))]
    assert esme.state is State.CLOSED
    assert esme.outstanding == 0


def test_outstanding_responses_still_arrive_while_unbinding(bound: Pair) -> None:
    esme, smsc = bound(BindType.TRANSMITTER)
    esme.send(SubmitSm())
    (submit,) = transfer(esme, smsc)
    esme.send(Unbind())
    smsc.send(make_response(submit.pdu, message_id="m1"))  # type: ignore[attr-defined]
    smsc_events = transfer(esme, smsc)
    assert isinstance(smsc_events[0], UnbindRequested)
    events = transfer(smsc, esme)
    assert [type(e) for e in events] == [ResponseReceived, ResponseReceived]
    assert events[0].response == SubmitSmResp(2, 0, (), "m1")  # type: ignore[attr-defined]
    assert esme.state is State.CLOSED


def test_unbind_waits_for_the_application_to_answer_deliveries(bound: Pair) -> None:
    esme, smsc = bound(BindType.RECEIVER)
    smsc.send(DeliverSm(short_message=b"receipt"))
    smsc.send(Unbind())
    events = transfer(smsc, esme)
    assert [type(e) for e in events] == [RequestReceived, UnbindRequested]
    assert esme.state is State.UNBIND_RECEIVED
    assert esme.data_to_send() == b""  # no unbind_resp while the receipt is unanswered
    esme.receive_data(encode(DeliverSm(sequence_number=50)))  # new requests are refused
    assert frames(esme.data_to_send()) == [DeliverSmResp(50, S.ESME_RINVBNDSTS)]
    esme.send(make_response(events[0].pdu))  # type: ignore[attr-defined]
    assert esme.state is State.CLOSED
    assert [type(p) for p in frames(esme.data_to_send())] == [DeliverSmResp, UnbindResp]


def test_finish_unbind_abandons_unanswered_requests(bound: Pair) -> None:
    esme, smsc = bound(BindType.RECEIVER)
    smsc.send(DeliverSm())
    smsc.send(Unbind())
    transfer(smsc, esme)
    esme.finish_unbind()
    assert esme.state is State.CLOSED
    assert [type(p) for p in frames(esme.data_to_send())] == [UnbindResp]


def test_unbind_when_not_bound_is_refused() -> None:
    smsc = Session(Role.SMSC)
    (event,) = smsc.receive_data(encode(Unbind(sequence_number=3)))
    assert isinstance(event, ProtocolError)
    assert frames(smsc.data_to_send()) == [UnbindResp(3, S.ESME_RINVBNDSTS)]
    assert smsc.state is State.OPEN


def test_forgetting_bind_or_unbind_moves_state(bound: Pair) -> None:
    esme = Session(Role.ESME)
    seq = esme.send(BindReceiver())
    esme.forget(seq)
    assert esme.state is State.OPEN
    esme, _ = bound(BindType.RECEIVER)
    seq = esme.send(Unbind())
    esme.forget(seq)
    assert esme.state is State.CLOSED


def test_end_of_stream() -> None:
    esme = Session(Role.ESME)
    assert esme.receive_data(b"\x00\x00") == []
    assert esme.receive_data(b"") == [ConnectionClosed()]
    assert esme.receive_data(b"") == []
    assert esme.state is State.CLOSED


def test_many_pdus_in_one_read_and_one_pdu_in_many(bound: Pair) -> None:
    esme, _ = bound(BindType.TRANSCEIVER)
    stream = b"".join(
        encode(DeliverSm(sequence_number=i, short_message=b"x" * i)) for i in range(1, 40)
    )
    events = esme.receive_data(stream)
    assert [e.pdu.sequence_number for e in events] == list(range(1, 40))  # type: ignore[attr-defined]
    one = encode(DeliverSm(sequence_number=100, short_message=b"abc"))
    got = []
    for i in range(len(one)):
        got += esme.receive_data(one[i : i + 1])
    assert got == [RequestReceived(decode(one))]

"""Property and mutation tests: framing is split-independent, hostile bytes never crash."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsmesh.smpp.codec import PduError, decode, encode
from smsmesh.smpp.pdu import (
    BindType,
    CommandStatus,
    DeliverSm,
    EnquireLink,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlv,
    Unbind,
)
from smsmesh.smpp.session import Event, ProtocolError, Role, Session, State

from .conftest import bind_pair

FUZZ = settings(
    max_examples=300,
    deadline=2000,  # milliseconds; a hang or quadratic blow-up fails here
    suppress_health_check=[HealthCheck.too_slow],
)


def _stream_pieces() -> st.SearchStrategy[list[bytes]]:
    """Frames an SMSC might send to a bound transceiver with submits 2..6 outstanding."""
    piece = st.one_of(
        st.builds(
            lambda seq, mid: encode(SubmitSmResp(seq, 0, (), mid)),
            st.integers(2, 6),
            st.text("0123456789abcdef", max_size=20),
        ),
        st.builds(
            lambda seq, sm: encode(
                DeliverSm(seq, 0, (Tlv.u8(Tag.MESSAGE_STATE, 2),), short_message=sm)
            ),
            st.integers(100, 200),
            st.binary(max_size=160),
        ),
        st.builds(lambda seq: encode(EnquireLink(sequence_number=seq)), st.integers(1, 50)),
        st.builds(
            lambda seq: encode(GenericNack(seq, CommandStatus.ESME_RTHROTTLED)), st.integers(0, 9)
        ),
        st.just(struct.pack(">IIII", 20, 0x77, 0, 9) + b"junk"),  # unknown command
        st.just(struct.pack(">IIII", 18, 0x80000004, 0, 3) + b"xx"),  # malformed response
    )
    return st.lists(piece, min_size=1, max_size=12)


def _fresh_esme() -> Session:
    esme, _ = bind_pair(BindType.TRANSCEIVER)
    for _ in range(5):
        esme.send(SubmitSm(short_message=b"x"))
    esme.data_to_send()
    return esme


@FUZZ
@given(_stream_pieces(), st.lists(st.integers(0, 10_000), max_size=30), st.booleans())
def test_any_split_of_a_stream_gives_the_same_events(
    pieces: list[bytes], cuts: list[int], end_with_unbind: bool
) -> None:
    stream = b"".join(pieces)
    if end_with_unbind:
        stream += encode(Unbind(sequence_number=999))
    whole = _fresh_esme()
    expected = whole.receive_data(stream)
    expected_out = whole.data_to_send()

    split = _fresh_esme()
    got: list[Event] = []
    points = sorted({c % (len(stream) + 1) for c in cuts})
    start = 0
    for point in [*points, len(stream)]:
        if point > start:  # b"" would mean end of stream
            got += split.receive_data(stream[start:point])
        start = point
    assert got == expected
    assert split.data_to_send() == expected_out
    assert split.state is whole.state
    assert split.outstanding == whole.outstanding


def _valid_frames() -> st.SearchStrategy[bytes]:
    return st.lists(
        st.sampled_from(
            [
                encode(SubmitSm(7, destination_addr="123", short_message=b"hello")),
                encode(DeliverSm(8, tlvs=(Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, "ab"),))),
                encode(SubmitSmResp(2, 0, (), "id")),
                encode(EnquireLink(sequence_number=4)),
                encode(Unbind(sequence_number=5)),
                encode(BindType.TRANSMITTER.request_class(sequence_number=6, system_id="x")),
            ]
        ),
        min_size=1,
        max_size=6,
    ).map(b"".join)


@st.composite
def _hostile(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "truncated", "bitflip", "huge", "length"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=400))
    data = draw(_valid_frames())
    if kind == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "bitflip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(out)
    if kind == "huge":
        return struct.pack(">I", draw(st.integers(0x10001, 0xFFFFFFFF))) + data
    # A plausible length that disagrees with the body that follows.
    return struct.pack(">I", draw(st.integers(16, 300))) + data[4:]


def _check_replies(data: bytes) -> None:
    """Everything the session says in return must itself be well-formed SMPP."""
    while data:
        (length,) = struct.unpack(">I", data[:4])
        reply = decode(data[:length])
        assert isinstance(reply, Pdu)
        data = data[length:]


@FUZZ
@given(
    st.sampled_from([Role.ESME, Role.SMSC]),
    st.booleans(),
    _hostile(),
    st.lists(st.integers(1, 64), max_size=20),
)
def test_hostile_input_only_yields_documented_outcomes(
    role: Role, bound: bool, data: bytes, chunk_sizes: list[int]
) -> None:
    if bound:
        esme, smsc = bind_pair(BindType.TRANSCEIVER)
        session = esme if role is Role.ESME else smsc
    else:
        session = Session(role)
    events: list[Event] = []
    pos = 0
    for size in [*chunk_sizes, len(data)]:
        if pos >= len(data):
            break
        events += session.receive_data(data[pos : pos + size])  # never b"": that is EOF
        pos += size
    for event in events:
        assert isinstance(event, Event)
    fatal = [e for e in events if isinstance(e, ProtocolError) and e.fatal]
    if fatal:
        assert session.state is State.CLOSED
        assert events[-1] is fatal[0]
    _check_replies(session.data_to_send())
    closing = session.receive_data(b"")
    assert len(closing) == 1
    assert session.state is State.CLOSED


@FUZZ
@given(st.binary(max_size=300))
def test_decode_raises_only_pdu_error(data: bytes) -> None:
    status: int | None = None
    try:
        pdu = decode(data)
    except PduError as exc:
        status = exc.command_status
    if status is None:
        assert encode(pdu)  # anything that decodes can be re-encoded
    else:
        assert status in set(CommandStatus)

"""Bytes <-> PDU values for SMPP 3.4, strict on input, with one error type.

Each PDU class has a *layout*: its mandatory parameters as a short list of operations
(a C-Octet string with its maximum size, a run of fixed-size integers read with one
precompiled `struct.Struct`, the short_message with its length octet, the submit_multi
address lists). One small interpreter encodes and decodes every layout, so adding a PDU
is a table entry, and the hot PDUs cost a dozen C calls each way.

Every way input can be malformed raises `PduError`, whose `command_status` is the status
the receiver should answer with; the session turns it into that answer.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, Final

from smsmesh.smpp.pdu import (
    PDU_CLASSES,
    TLV_FIXED_SIZES,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
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
    Tlv,
    Unbind,
    UnbindResp,
    UnsuccessSme,
    body_field_names,
)

__all__ = [
    "DEFAULT_MAX_PDU_SIZE",
    "HEADER_SIZE",
    "PduError",
    "decode",
    "decode_at",
    "encode",
    "peek_length",
]

HEADER_SIZE: Final = 16
DEFAULT_MAX_PDU_SIZE: Final = 64 * 1024
MAX_SHORT_MESSAGE: Final = 254

_HEADER = struct.Struct(">IIII")
_LENGTH = struct.Struct(">I")
_TL = struct.Struct(">HH")
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_NUL = b"\0"

S = CommandStatus


class PduError(ValueError):
    """A PDU that cannot be encoded or decoded.

    `command_status` is what the receiver should answer with; `command_id` and
    `sequence_number` are taken from the header when it was readable (else 0), so the
    answer can quote them.
    """

    def __init__(
        self, command_status: int, command_id: int, sequence_number: int, detail: str
    ) -> None:
        super().__init__(
            f"{CommandStatus.describe(command_status)}: {detail} "
            f"(command_id=0x{command_id:08X}, sequence_number={sequence_number})"
        )
        self.command_status = command_status
        self.command_id = command_id
        self.sequence_number = sequence_number
        self.detail = detail


class _Malformed(Exception):
    """Internal: raised deep in the interpreter, turned into PduError with the header."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


# --- layouts --------------------------------------------------------------------------

_CSTR, _INTS, _SM, _DESTS, _UNSUCC = range(5)


class _Spec:
    """One mandatory parameter before compilation: a C-string, an integer or special."""

    def __init__(self, kind: int, size: int = 0, status: int = 0) -> None:
        self.kind = kind
        self.size = size  # C-string: maximum size including the NUL; integer: octets
        self.status = status  # what a too-long value is answered with


def _c(size: int, status: int = S.ESME_RINVPARLEN) -> _Spec:
    return _Spec(_CSTR, size, status)


_u8 = _Spec(_INTS, 1)
_u32 = _Spec(_INTS, 4)
_sm = _Spec(_SM)

_SERVICE_TYPE = _c(6, S.ESME_RINVSERTYP)
_ADDR21_SRC = _c(21, S.ESME_RINVSRCADR)
_ADDR21_DST = _c(21, S.ESME_RINVDSTADR)
_ADDR65_SRC = _c(65, S.ESME_RINVSRCADR)
_ADDR65_DST = _c(65, S.ESME_RINVDSTADR)
_SCHEDULE = _c(17, S.ESME_RINVSCHED)
_VALIDITY = _c(17, S.ESME_RINVEXPIRY)
_MESSAGE_ID = _c(65, S.ESME_RINVMSGID)
_SYSTEM_ID = _c(16, S.ESME_RINVSYSID)
_PASSWORD = _c(9, S.ESME_RINVPASWD)

_BIND = [_SYSTEM_ID, _PASSWORD, _c(13, S.ESME_RINVSYSTYP), _u8, _u8, _u8, _c(41)]
_SHORT_MESSAGE_BODY = [
    _SERVICE_TYPE,
    _u8,
    _u8,
    _ADDR21_SRC,
    _u8,
    _u8,
    _ADDR21_DST,
    _u8,
    _u8,
    _u8,
    _SCHEDULE,
    _VALIDITY,
    _u8,
    _u8,
    _u8,
    _u8,
    _sm,
]

_SPECS: dict[type[Pdu], list[_Spec]] = {
    GenericNack: [],
    BindTransmitter: _BIND,
    BindReceiver: _BIND,
    BindTransceiver: _BIND,
    BindTransmitterResp: [_SYSTEM_ID],
    BindReceiverResp: [_SYSTEM_ID],
    BindTransceiverResp: [_SYSTEM_ID],
    Outbind: [_SYSTEM_ID, _PASSWORD],
    Unbind: [],
    UnbindResp: [],
    EnquireLink: [],
    EnquireLinkResp: [],
    SubmitSm: _SHORT_MESSAGE_BODY,
    DeliverSm: _SHORT_MESSAGE_BODY,
    SubmitSmResp: [_MESSAGE_ID],
    # 3.4 says this field is unused (always empty); some ESMEs put an id in it anyway.
    DeliverSmResp: [_MESSAGE_ID],
    DataSm: [_SERVICE_TYPE, _u8, _u8, _ADDR65_SRC, _u8, _u8, _ADDR65_DST, _u8, _u8, _u8],
    DataSmResp: [_MESSAGE_ID],
    QuerySm: [_MESSAGE_ID, _u8, _u8, _ADDR21_SRC],
    QuerySmResp: [_MESSAGE_ID, _c(17), _u8, _u8],
    CancelSm: [_SERVICE_TYPE, _MESSAGE_ID, _u8, _u8, _ADDR21_SRC, _u8, _u8, _ADDR21_DST],
    CancelSmResp: [],
    ReplaceSm: [_MESSAGE_ID, _u8, _u8, _ADDR21_SRC, _SCHEDULE, _VALIDITY, _u8, _u8, _sm],
    ReplaceSmResp: [],
    SubmitMulti: [
        _SERVICE_TYPE,
        _u8,
        _u8,
        _ADDR21_SRC,
        _Spec(_DESTS),
        _u8,
        _u8,
        _u8,
        _SCHEDULE,
        _VALIDITY,
        _u8,
        _u8,
        _u8,
        _u8,
        _sm,
    ],
    SubmitMultiResp: [_MESSAGE_ID, _Spec(_UNSUCC)],
    AlertNotification: [_u8, _u8, _ADDR65_SRC, _u8, _u8, _c(65)],
}

# A compiled operation: (kind, a, b). C-string: (_CSTR, max size, status);
# integers: (_INTS, Struct, how many values); the others: (kind, 0, 0).
_Op = tuple[int, Any, int]


def _compile(specs: list[_Spec]) -> tuple[_Op, ...]:
    """Merge runs of integers into one Struct each: fewer, bigger C calls."""
    ops: list[_Op] = []
    run = ""

    def flush() -> None:
        nonlocal run
        if run:
            ops.append((_INTS, struct.Struct(">" + run), len(run)))
            run = ""

    for spec in specs:
        if spec.kind == _INTS:
            run += "B" if spec.size == 1 else "I"
        else:
            flush()
            ops.append((spec.kind, spec.size, spec.status))
    flush()
    return tuple(ops)


class _Codec:
    """Everything needed to encode and decode one PDU class."""

    __slots__ = ("cls", "default_body", "fast_decode", "fast_encode", "getter", "n_fields", "ops")

    def __init__(self, cls: type[Pdu], specs: list[_Spec]) -> None:
        names = body_field_names(cls)
        if len(names) != len(specs):  # pragma: no cover - a table mistake, caught at import
            raise AssertionError(f"{cls.__name__}: {len(names)} fields, {len(specs)} specs")
        self.cls = cls
        self.ops = _compile(specs)
        self.n_fields = len(names)
        getter = attrgetter(*names) if names else None
        if len(names) == 1:
            single = attrgetter(names[0])
            self.getter: Any = lambda pdu: (single(pdu),)
        else:
            self.getter = getter
        # Hand-written paths for the PDUs that carry nearly all traffic; they give up
        # (return None) on anything unusual and the interpreter then says what is wrong.
        self.fast_encode: Callable[[Pdu], list[bytes] | None] | None = None
        self.fast_decode: Callable[[bytes, int, int], tuple[list[Any], int] | None] | None = None
        # What a response with default fields encodes to: such a body is left out of a
        # failed response (see encode).
        self.default_body = b"".join(_encode_body(self, cls())) if cls.is_response else b""


# --- encoding -------------------------------------------------------------------------


def _encode_body(codec: _Codec, pdu: Pdu) -> list[bytes]:
    if codec.fast_encode is not None:
        fast = codec.fast_encode(pdu)
        if fast is not None:
            return fast
    parts: list[bytes] = []
    if codec.getter is None:
        return parts
    values = codec.getter(pdu)
    i = 0
    for kind, a, b in codec.ops:
        if kind == _CSTR:
            raw = values[i].encode("latin-1")
            if len(raw) >= a or 0 in raw:
                raise _Malformed(b, f"field {i}: longer than {a - 1} octets or contains NUL")
            parts.append(raw)
            parts.append(_NUL)
            i += 1
        elif kind == _INTS:
            parts.append(a.pack(*values[i : i + b]))
            i += b
        elif kind == _SM:
            sm = values[i]
            if len(sm) > MAX_SHORT_MESSAGE:
                raise _Malformed(S.ESME_RINVMSGLEN, "short_message longer than 254 octets")
            parts.append(_U8.pack(len(sm)))
            parts.append(bytes(sm))
            i += 1
        elif kind == _DESTS:
            parts.append(_encode_dests(values[i]))
            i += 1
        else:
            parts.append(_encode_unsuccess(values[i]))
            i += 1
    return parts


def _cstr(value: str, size: int, status: int) -> bytes:
    raw = value.encode("latin-1")
    if len(raw) >= size or 0 in raw:
        raise _Malformed(status, f"string longer than {size - 1} octets or contains NUL")
    return raw + _NUL


def _encode_dests(dests: Sequence[DestAddress]) -> bytes:
    if not 1 <= len(dests) <= 254:
        raise _Malformed(S.ESME_RINVNUMDESTS, "submit_multi needs 1..254 destinations")
    out = [_U8.pack(len(dests))]
    for d in dests:
        if d.dest_flag == 1:
            out.append(struct.pack(">BBB", 1, d.dest_addr_ton, d.dest_addr_npi))
            out.append(_cstr(d.destination_addr, 21, S.ESME_RINVDSTADR))
        elif d.dest_flag == 2:
            out.append(b"\x02")
            out.append(_cstr(d.destination_addr, 21, S.ESME_RINVDLNAME))
        else:
            raise _Malformed(S.ESME_RINVDESTFLAG, f"dest_flag {d.dest_flag} is not 1 or 2")
    return b"".join(out)


def _encode_unsuccess(smes: Sequence[UnsuccessSme]) -> bytes:
    if len(smes) > 255:
        raise _Malformed(S.ESME_RINVPARLEN, "more than 255 unsuccessful destinations")
    out = [_U8.pack(len(smes))]
    for u in smes:
        out.append(struct.pack(">BB", u.dest_addr_ton, u.dest_addr_npi))
        out.append(_cstr(u.destination_addr, 21, S.ESME_RINVDSTADR))
        out.append(_U32.pack(u.error_status_code))
    return b"".join(out)


def encode(pdu: Pdu) -> bytes:
    """The wire form of one PDU. Raises PduError if a field is out of range.

    A response with a non-zero command_status, default body fields and no TLVs is sent
    header-only, as 3.4 specifies for e.g. submit_sm_resp.
    """
    codec = _CODECS.get(type(pdu))
    if codec is None:
        raise PduError(S.ESME_RINVCMDID, 0, pdu.sequence_number, f"cannot encode {pdu!r}")
    try:
        parts = _encode_body(codec, pdu)
        for tag, value in pdu.tlvs:
            parts.append(_TL.pack(tag, len(value)))
            parts.append(bytes(value))
        body = b"".join(parts)
        status = pdu.command_status
        if status and pdu.is_response and not pdu.tlvs and body == codec.default_body:
            body = b""
        return (
            _HEADER.pack(HEADER_SIZE + len(body), codec.cls.command_id, status, pdu.sequence_number)
            + body
        )
    except _Malformed as exc:
        raise PduError(exc.status, codec.cls.command_id, pdu.sequence_number, exc.detail) from None
    except (struct.error, UnicodeEncodeError, TypeError, AttributeError) as exc:
        raise PduError(
            S.ESME_RINVPARLEN,
            codec.cls.command_id,
            _int_or_0(pdu.sequence_number),
            f"cannot encode: {exc}",
        ) from None


def _int_or_0(value: object) -> int:
    return value if isinstance(value, int) and 0 <= value <= 0xFFFFFFFF else 0


# --- decoding -------------------------------------------------------------------------


def peek_length(
    buf: bytes | bytearray | memoryview, max_size: int = DEFAULT_MAX_PDU_SIZE
) -> int | None:
    """command_length of the PDU at the start of `buf`, or None if fewer than 4 octets.

    Raises PduError(ESME_RINVCMDLEN) for a length below the header size or above
    `max_size`: such a stream cannot be resynchronised.
    """
    if len(buf) < 4:
        return None
    length: int = _LENGTH.unpack_from(buf, 0)[0]
    if length < HEADER_SIZE or length > max_size:
        seq = 0
        cid = 0
        if len(buf) >= HEADER_SIZE:
            _, cid, _, seq = _HEADER.unpack_from(buf, 0)
        raise PduError(S.ESME_RINVCMDLEN, cid, seq, f"command_length {length} out of range")
    return length


def decode(frame: bytes | bytearray | memoryview) -> Pdu:
    """Exactly one whole PDU -> its value. Raises PduError for any malformed input."""
    if not isinstance(frame, bytes):
        frame = bytes(frame)
    size = len(frame)
    if size < HEADER_SIZE:
        raise PduError(S.ESME_RINVCMDLEN, 0, 0, f"{size} octets, shorter than a header")
    length, cid, _, seq = _HEADER.unpack_from(frame, 0)
    if length != size:
        raise PduError(
            S.ESME_RINVCMDLEN, cid, seq, f"command_length {length} but the frame has {size} octets"
        )
    return decode_at(frame, 0, size)


def decode_at(buf: bytes, offset: int, length: int) -> Pdu:
    """Decode the PDU of `length` octets (its command_length) at `offset` in `buf`.

    For stream readers that frame PDUs themselves without copying; the caller guarantees
    that `buf` holds `length` >= 16 octets from `offset`.
    """
    _, cid, status, seq = _HEADER.unpack_from(buf, offset)
    codec = _CODECS_BY_ID.get(cid)
    if codec is None:
        raise PduError(S.ESME_RINVCMDID, cid, seq, "unknown command_id")
    end = offset + length
    pos = offset + HEADER_SIZE
    cls = codec.cls
    try:
        if pos == end and cls.is_response:
            # Header-only responses: 3.4 omits the body of failed responses, and many
            # peers send a bare deliver_sm_resp. The defaults are the only reading.
            return cls(seq, status)
        fast = codec.fast_decode(buf, pos, end) if codec.fast_decode is not None else None
        values, pos = fast if fast is not None else _decode_fields(buf, pos, end, codec.ops)
        tlvs = _decode_tlvs(buf, pos, end) if pos < end else ()
        return cls(seq, status, tlvs, *values)
    except _Malformed as exc:
        if status and cls.is_response:
            # A failed response cannot be answered anyway; its status is what matters.
            return cls(seq, status)
        raise PduError(exc.status, cid, seq, exc.detail) from None


def _decode_fields(buf: bytes, pos: int, end: int, ops: tuple[_Op, ...]) -> tuple[list[Any], int]:
    values: list[Any] = []
    append = values.append
    for kind, a, b in ops:
        if kind == _CSTR:
            limit = pos + a
            nul = buf.find(0, pos, limit if limit < end else end)
            if nul < 0:
                if end - pos >= a:
                    raise _Malformed(b, f"C-Octet string longer than {a - 1} octets")
                raise _Malformed(S.ESME_RINVCMDLEN, "body ends inside a C-Octet string")
            append(buf[pos:nul].decode("latin-1"))
            pos = nul + 1
        elif kind == _INTS:
            nxt = pos + a.size
            if nxt > end:
                raise _Malformed(S.ESME_RINVCMDLEN, "body ends inside a fixed-size field")
            values.extend(a.unpack_from(buf, pos))
            pos = nxt
        elif kind == _SM:
            if pos >= end:
                raise _Malformed(S.ESME_RINVCMDLEN, "body ends before sm_length")
            sm_length = buf[pos]
            pos += 1
            nxt = pos + sm_length
            if sm_length > MAX_SHORT_MESSAGE or nxt > end:
                raise _Malformed(
                    S.ESME_RINVMSGLEN, f"sm_length {sm_length} does not fit the PDU (max 254)"
                )
            append(buf[pos:nxt])
            pos = nxt
        elif kind == _DESTS:
            dests, pos = _decode_dests(buf, pos, end)
            append(dests)
        else:
            smes, pos = _decode_unsuccess(buf, pos, end)
            append(smes)
    return values, pos


def _read_cstr(buf: bytes, pos: int, end: int, size: int, status: int) -> tuple[str, int]:
    nul = buf.find(0, pos, min(pos + size, end))
    if nul < 0:
        if end - pos >= size:
            raise _Malformed(status, f"C-Octet string longer than {size - 1} octets")
        raise _Malformed(S.ESME_RINVCMDLEN, "body ends inside a C-Octet string")
    return buf[pos:nul].decode("latin-1"), nul + 1


def _read_u8s(buf: bytes, pos: int, end: int, n: int) -> tuple[bytes, int]:
    if pos + n > end:
        raise _Malformed(S.ESME_RINVCMDLEN, "body ends inside a fixed-size field")
    return buf[pos : pos + n], pos + n


def _decode_dests(buf: bytes, pos: int, end: int) -> tuple[tuple[DestAddress, ...], int]:
    (count,), pos = _read_u8s(buf, pos, end, 1)
    if count == 0 or count > 254:
        raise _Malformed(S.ESME_RINVNUMDESTS, f"number_of_dests {count}")
    out = []
    for _ in range(count):
        (flag,), pos = _read_u8s(buf, pos, end, 1)
        if flag == 1:
            (ton, npi), pos = _read_u8s(buf, pos, end, 2)
            addr, pos = _read_cstr(buf, pos, end, 21, S.ESME_RINVDSTADR)
            out.append(DestAddress(1, ton, npi, addr))
        elif flag == 2:
            name, pos = _read_cstr(buf, pos, end, 21, S.ESME_RINVDLNAME)
            out.append(DestAddress(2, 0, 0, name))
        else:
            raise _Malformed(S.ESME_RINVDESTFLAG, f"dest_flag {flag} is not 1 or 2")
    return tuple(out), pos


def _decode_unsuccess(buf: bytes, pos: int, end: int) -> tuple[tuple[UnsuccessSme, ...], int]:
    (count,), pos = _read_u8s(buf, pos, end, 1)
    out = []
    for _ in range(count):
        (ton, npi), pos = _read_u8s(buf, pos, end, 2)
        addr, pos = _read_cstr(buf, pos, end, 21, S.ESME_RINVDSTADR)
        raw, pos = _read_u8s(buf, pos, end, 4)
        out.append(UnsuccessSme(ton, npi, addr, _U32.unpack(raw)[0]))
    return tuple(out), pos


def _decode_tlvs(buf: bytes, pos: int, end: int) -> tuple[Tlv, ...]:
    tlvs: list[Tlv] = []
    unpack = _TL.unpack_from
    fixed = TLV_FIXED_SIZES
    while pos < end:
        if end - pos < 4:
            raise _Malformed(S.ESME_RINVOPTPARSTREAM, "trailing octets shorter than a TLV header")
        tag, size = unpack(buf, pos)
        pos += 4
        nxt = pos + size
        if nxt > end:
            raise _Malformed(S.ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04X} overruns the PDU")
        want = fixed.get(tag)
        if want is not None and want != size:
            raise _Malformed(S.ESME_RINVPARLEN, f"TLV 0x{tag:04X} has length {size}, not {want}")
        tlvs.append(Tlv(tag, buf[pos:nxt]))
        pos = nxt
    return tuple(tlvs)


# --- fast paths for submit_sm and deliver_sm ------------------------------------------

_X_BB = struct.Struct(">xBB")  # a string's NUL terminator, then two octets
_X_BBB = struct.Struct(">xBBB")
_X_BBBBB = struct.Struct(">xBBBBB")
_SHORT_MESSAGE_FIELDS = attrgetter(*body_field_names(SubmitSm))
_SHORT_MESSAGE_RX = re.compile(
    rb"([^\0]{0,5})\0(..)([^\0]{0,20})\0(..)([^\0]{0,20})\0(...)"
    rb"([^\0]{0,16})\0([^\0]{0,16})\0(.....)",
    re.DOTALL,
)


def _fast_encode_short_message(pdu: Pdu) -> list[bytes] | None:
    (st, ston, snpi, sa, dton, dnpi, da, esm, pid, prio, sd, vp, rd, rip, dc, dmid, sm) = (
        _SHORT_MESSAGE_FIELDS(pdu)
    )
    st = st.encode("latin-1")
    sa = sa.encode("latin-1")
    da = da.encode("latin-1")
    sd = sd.encode("latin-1")
    vp = vp.encode("latin-1")
    if (
        len(st) > 5
        or len(sa) > 20
        or len(da) > 20
        or len(sd) > 16
        or len(vp) > 16
        or len(sm) > MAX_SHORT_MESSAGE
        or 0 in st
        or 0 in sa
        or 0 in da
        or 0 in sd
        or 0 in vp
        or type(sm) is not bytes
    ):
        return None
    return [
        st,
        _X_BB.pack(ston, snpi),
        sa,
        _X_BB.pack(dton, dnpi),
        da,
        _X_BBB.pack(esm, pid, prio),
        sd,
        _NUL,
        vp,
        _X_BBBBB.pack(rd, rip, dc, dmid, len(sm)),
        sm,
    ]


def _fast_decode_short_message(buf: bytes, pos: int, end: int) -> tuple[list[Any], int] | None:
    m = _SHORT_MESSAGE_RX.match(buf, pos, end)
    if m is None:
        return None
    st, a, sa, b, da, c, sd, vp, d = m.groups()
    start = m.end()
    nxt = start + d[4]
    if nxt > end:
        return None
    lat = "latin-1"
    return [
        st.decode(lat),
        a[0],
        a[1],
        sa.decode(lat),
        b[0],
        b[1],
        da.decode(lat),
        c[0],
        c[1],
        c[2],
        sd.decode(lat),
        vp.decode(lat),
        d[0],
        d[1],
        d[2],
        d[3],
        buf[start:nxt],
    ], nxt


_CODECS: dict[type[Pdu], _Codec] = {cls: _Codec(cls, specs) for cls, specs in _SPECS.items()}
for _cls in (SubmitSm, DeliverSm):
    _CODECS[_cls].fast_encode = _fast_encode_short_message
    _CODECS[_cls].fast_decode = _fast_decode_short_message
_CODECS_BY_ID: dict[int, _Codec] = {cls.command_id: c for cls, c in _CODECS.items()}
assert set(_CODECS_BY_ID) == set(PDU_CLASSES), "every PDU class needs a layout"

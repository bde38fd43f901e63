"""SMS text: choosing an alphabet, encoding, decoding, and splitting into SMPP parts.

Pure functions, no I/O, no dependency on the PDU classes. The GSM 03.38 tables come from
the `gsm0338` codec (not written by hand); everything that counts or splits works on
*characters* with a known cost in the encoding's units, so a GSM escape sequence
(0x1B + char) or a UTF-16 surrogate pair can never be cut in two — the defect the
research note (§3) found in the existing Python SMPP libraries.

Units: GSM 7-bit text is carried *unpacked* in SMPP (one octet per septet), so a part's
limit in septets is also its limit in payload octets.
"""

from __future__ import annotations

import codecs
import math
from dataclasses import dataclass
from enum import StrEnum

import gsm0338  # noqa: F401  (importing registers the "gsm03.38" codec)

__all__ = [
    "ConcatInfo",
    "Encoding",
    "Segment",
    "SegmentationError",
    "SplitMode",
    "TextEncodingError",
    "choose_encoding",
    "count_segments",
    "data_coding",
    "decode",
    "decode_udh_payload",
    "encode",
    "parse_concat",
    "part_limit",
    "single_limit",
    "split",
    "units",
]

_CODEC = "gsm03.38"
_ESC = 0x1B
_REPLACEMENT = "\ufffd"
MAX_PARTS = 255
MAX_PAYLOAD_OCTETS = 65535  # message_payload TLV length is a 16-bit field


class TextEncodingError(ValueError):
    """The text cannot be represented in the requested encoding."""


class SegmentationError(ValueError):
    """The text cannot be split as asked (bad reference, too many parts, too long)."""


class Encoding(StrEnum):
    GSM7 = "gsm7"  # GSM 03.38 default alphabet + extension table, unpacked septets
    LATIN1 = "latin1"  # ISO-8859-1
    UCS2 = "ucs2"  # UTF-16-BE (astral characters as surrogate pairs)
    ASCII = "ascii"  # IA5


class SplitMode(StrEnum):
    UDH8 = "udh8"  # concatenation IE 0x00, 8-bit reference, in the short_message
    UDH16 = "udh16"  # concatenation IE 0x08, 16-bit reference, in the short_message
    SAR = "sar"  # sar_msg_ref_num / sar_total_segments / sar_segment_seqnum TLVs
    PAYLOAD = "payload"  # the whole text in one message_payload TLV, never split


_DATA_CODING = {
    Encoding.GSM7: 0x00,  # "SMSC default alphabet"
    Encoding.ASCII: 0x01,
    Encoding.LATIN1: 0x03,
    Encoding.UCS2: 0x08,
}


def data_coding(enc: Encoding) -> int:
    """The SMPP data_coding value announcing `enc`."""
    return _DATA_CODING[Encoding(enc)]


# ---------------------------------------------------------------------------------------
# GSM 03.38 tables, derived once from the gsm0338 codec.


def _load_gsm_tables() -> tuple[dict[str, bytes], tuple[str, ...], dict[int, str]]:
    basic_decode: list[str] = [_REPLACEMENT] * 256
    encode_map: dict[str, bytes] = {}
    for code in range(0x80):
        if code == _ESC:
            continue
        char = bytes((code,)).decode(_CODEC)
        basic_decode[code] = char
        encode_map[char] = bytes((code,))
    ext_decode: dict[int, str] = {}
    for code in range(0x80):
        try:
            char = bytes((_ESC, code)).decode(_CODEC)
        except UnicodeDecodeError:
            continue
        ext_decode[code] = char
        encode_map.setdefault(char, bytes((_ESC, code)))
    # The lone ESC control character is not text: it would corrupt the next septet.
    encode_map.pop("\x1b", None)
    return encode_map, tuple(basic_decode), ext_decode


_GSM_ENCODE, _GSM_BASIC_DECODE, _GSM_EXT_DECODE = _load_gsm_tables()
# The basic table as a charmap, for the C decoder: a receipt's text is decoded on
# every deliver_sm, and a Python loop over its ~100 septets cost ~3 us.
_GSM_BASIC_CHARMAP = "".join(_GSM_BASIC_DECODE)
_GSM_EXTENSION_CHARS = frozenset(c for c, b in _GSM_ENCODE.items() if len(b) == 2)


# ---------------------------------------------------------------------------------------
# Choosing and encoding.


def choose_encoding(text: str, *, allow_latin1: bool = False) -> Encoding:
    """GSM7 when every character is in the GSM basic or extension table; else Latin-1
    when allowed (many SMSCs mangle data_coding 3, hence opt-in) and representable;
    else UCS2, which can carry anything."""
    gsm = _GSM_ENCODE
    if all(c in gsm for c in text):
        return Encoding.GSM7
    if allow_latin1 and all(ord(c) < 0x100 for c in text):
        return Encoding.LATIN1
    return Encoding.UCS2


def _unencodable(text: str, index: int, enc: Encoding) -> TextEncodingError:
    # Quote the one offending code point only: message texts are not to be logged.
    return TextEncodingError(
        f"character U+{ord(text[index]):04X} at index {index} cannot be encoded as {enc.value}"
    )


def encode(text: str, enc: Encoding) -> bytes:
    """The octets of `text` in `enc` (GSM7 unpacked, one septet per octet).

    Raises TextEncodingError naming the first character that cannot be represented
    (for UCS2 that is only a lone surrogate in the Python string).
    """
    enc = Encoding(enc)
    if enc is Encoding.GSM7:
        gsm = _GSM_ENCODE
        try:
            return b"".join([gsm[c] for c in text])
        except KeyError:
            index = next(i for i, c in enumerate(text) if c not in gsm)
            raise _unencodable(text, index, enc) from None
    codec = {Encoding.LATIN1: "latin-1", Encoding.ASCII: "ascii", Encoding.UCS2: "utf-16-be"}[enc]
    try:
        return text.encode(codec)
    except UnicodeEncodeError as exc:
        raise _unencodable(text, exc.start, enc) from None


def _costs(text: str, enc: Encoding) -> list[int] | None:
    """Per-character cost in the encoding's units, or None when every cost is 1.

    Raises TextEncodingError for a character the encoding cannot carry.
    """
    if enc is Encoding.GSM7:
        gsm, ext = _GSM_ENCODE, _GSM_EXTENSION_CHARS
        for i, c in enumerate(text):
            if c not in gsm:
                raise _unencodable(text, i, enc)
        if not any(c in ext for c in text):
            return None
        return [2 if c in ext else 1 for c in text]
    if enc is Encoding.UCS2:
        for i, c in enumerate(text):
            if 0xD800 <= ord(c) <= 0xDFFF:
                raise _unencodable(text, i, enc)
        if all(ord(c) <= 0xFFFF for c in text):
            return None
        return [2 if ord(c) > 0xFFFF else 1 for c in text]
    top = 0x100 if enc is Encoding.LATIN1 else 0x80
    for i, c in enumerate(text):
        if ord(c) >= top:
            raise _unencodable(text, i, enc)
    return None


def units(text: str, enc: Encoding) -> int:
    """Length of `text` in `enc`'s units: septets (escapes count 2) for GSM7, octets for
    Latin-1/ASCII, UTF-16 code units for UCS2. Raises TextEncodingError if unrepresentable."""
    costs = _costs(text, Encoding(enc))
    return len(text) if costs is None else sum(costs)


# ---------------------------------------------------------------------------------------
# Limits and splitting.

_SINGLE_LIMIT = {Encoding.GSM7: 160, Encoding.UCS2: 70, Encoding.LATIN1: 140, Encoding.ASCII: 140}
# Per part, in the encoding's units, for a 6-octet (UDH8, and SAR, which the SMSC turns
# into a UDH8 for the handset) or 7-octet (UDH16) header inside 140 octets.
_PART_LIMIT = {
    (Encoding.GSM7, False): 153,
    (Encoding.GSM7, True): 152,
    (Encoding.UCS2, False): 67,
    (Encoding.UCS2, True): 66,
    (Encoding.LATIN1, False): 134,
    (Encoding.LATIN1, True): 133,
    (Encoding.ASCII, False): 134,
    (Encoding.ASCII, True): 133,
}


def single_limit(enc: Encoding) -> int:
    """Units that fit one SMS without any header (160 / 70 / 140)."""
    return _SINGLE_LIMIT[Encoding(enc)]


def part_limit(enc: Encoding, mode: SplitMode) -> int:
    """Units per part of a long message in `mode` (PAYLOAD: the message_payload maximum)."""
    enc, mode = Encoding(enc), SplitMode(mode)
    if mode is SplitMode.PAYLOAD:
        return MAX_PAYLOAD_OCTETS // (2 if enc is Encoding.UCS2 else 1)
    return _PART_LIMIT[(enc, mode is SplitMode.UDH16)]


@dataclass(frozen=True, slots=True)
class Segment:
    """One submit_sm worth of text.

    short_message: what goes in the short_message field; for UDH modes the UDH followed by
    the payload, and then esm_udhi is True and the caller must set esm_class bit 0x40.
    sar: (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum) for SAR mode.
    payload_tlv: the *value* of the message_payload TLV (0x0424) in PAYLOAD mode; the
    caller adds tag and length and leaves short_message empty.
    """

    short_message: bytes
    udh: bytes
    part: int  # 1-based
    total: int
    reference: int
    esm_udhi: bool
    sar: tuple[int, int, int] | None = None
    payload_tlv: bytes | None = None


def _check_reference(mode: SplitMode, reference: int) -> None:
    top = 0xFFFF if mode is SplitMode.UDH16 else 0xFF
    if isinstance(reference, bool) or not isinstance(reference, int):
        raise SegmentationError(f"reference must be an int, got {type(reference).__name__}")
    if not 0 <= reference <= top:
        raise SegmentationError(f"reference {reference} out of range 0..{top} for {mode.value}")


def _chunks(costs: list[int] | None, length: int, limit: int) -> list[tuple[int, int]]:
    """Greedy [start, end) character ranges whose cost stays within `limit`.

    Splitting on character boundaries is what keeps escapes and surrogate pairs whole.
    """
    if costs is None:
        return [(i, min(i + limit, length)) for i in range(0, length, limit)]
    out: list[tuple[int, int]] = []
    start, used = 0, 0
    for i, cost in enumerate(costs):
        if used + cost > limit:
            out.append((start, i))
            start, used = i, 0
        used += cost
    out.append((start, length))
    return out


def count_segments(text: str, enc: Encoding, mode: SplitMode = SplitMode.UDH8) -> int:
    """How many parts `split` would make, without building them.

    Unlike `split`, it does not refuse more than 255 parts, so a caller can report the
    real number; it raises TextEncodingError when `text` is not representable in `enc`.
    """
    enc, mode = Encoding(enc), SplitMode(mode)
    costs = _costs(text, enc)
    if mode is SplitMode.PAYLOAD:
        return 1
    total = len(text) if costs is None else sum(costs)
    if total <= _SINGLE_LIMIT[enc]:
        return 1
    limit = part_limit(enc, mode)
    if costs is None:
        return math.ceil(total / limit)
    return len(_chunks(costs, len(text), limit))


def split(text: str, enc: Encoding, mode: SplitMode, reference: int) -> list[Segment]:
    """Split `text` into submit_sm parts.

    One segment without any header when the text fits a single SMS (or in PAYLOAD mode);
    otherwise parts numbered 1..N, each within `part_limit(enc, mode)`.
    `reference` is 0..255 (UDH8, SAR) or 0..65535 (UDH16), validated in every mode.
    Raises TextEncodingError (unrepresentable text) or SegmentationError (bad reference,
    more than 255 parts, payload over 65535 octets).
    """
    enc, mode = Encoding(enc), SplitMode(mode)
    _check_reference(mode, reference)
    costs = _costs(text, enc)
    if mode is SplitMode.PAYLOAD:
        data = encode(text, enc)
        if len(data) > MAX_PAYLOAD_OCTETS:
            raise SegmentationError(
                f"text needs {len(data)} octets, message_payload holds {MAX_PAYLOAD_OCTETS}"
            )
        return [Segment(b"", b"", 1, 1, reference, False, None, data)]
    total_units = len(text) if costs is None else sum(costs)
    if total_units <= _SINGLE_LIMIT[enc]:
        return [Segment(encode(text, enc), b"", 1, 1, reference, False)]
    ranges = _chunks(costs, len(text), part_limit(enc, mode))
    total = len(ranges)
    if total > MAX_PARTS:
        raise SegmentationError(f"text needs {total} parts, at most {MAX_PARTS} are possible")
    out: list[Segment] = []
    for part, (start, end) in enumerate(ranges, 1):
        payload = encode(text[start:end], enc)
        if mode is SplitMode.SAR:
            out.append(
                Segment(payload, b"", part, total, reference, False, (reference, total, part))
            )
            continue
        if mode is SplitMode.UDH8:
            udh = bytes((0x05, 0x00, 0x03, reference, total, part))
        else:
            udh = bytes((0x06, 0x08, 0x04, reference >> 8, reference & 0xFF, total, part))
        out.append(Segment(udh + payload, udh, part, total, reference, True))
    return out


# ---------------------------------------------------------------------------------------
# Decoding (never raises).


def _decode_gsm7(data: bytes) -> str:
    """Unpacked GSM 7-bit. Bytes >= 0x80 and a trailing lone ESC become U+FFFD; ESC
    followed by a code the extension table lacks shows the basic-table character and
    ESC ESC shows a space, as 3GPP TS 23.038 tells receivers to do."""
    if _ESC not in data:
        return codecs.charmap_decode(data, "strict", _GSM_BASIC_CHARMAP)[0]
    basic = _GSM_BASIC_DECODE
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b != _ESC:
            out.append(basic[b])
            i += 1
            continue
        if i + 1 >= n:
            out.append(_REPLACEMENT)
            break
        nxt = data[i + 1]
        char = _GSM_EXT_DECODE.get(nxt)
        if char is None:
            char = " " if nxt == _ESC else basic[nxt]
        out.append(char)
        i += 2
    return "".join(out)


_CONTROL_TO_REPLACEMENT = {
    c: _REPLACEMENT for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n\r"
}


def _decode_binary(data: bytes) -> str:
    """A safe rendering of 8-bit data, which has no defined characters.

    UTF-8 with replacement keeps readable the text some ESMEs do send as 8-bit data;
    undecodable octets and control characters (other than tab/newline/CR) become U+FFFD,
    so the result is safe to show, log or put in JSON. Callers that need the exact octets
    must keep the bytes themselves.
    """
    return data.decode("utf-8", "replace").translate(_CONTROL_TO_REPLACEMENT)


_PYTHON_CODECS = {
    0x01: "ascii",
    0x03: "latin-1",
    0x05: "shift_jis",  # JIS X 0208
    0x06: "iso8859-5",  # Cyrillic
    0x07: "iso8859-8",  # Latin/Hebrew
    0x08: "utf-16-be",  # UCS-2; UTF-16 so surrogate pairs come out as one character
    0x0A: "iso2022_jp",
    0x0E: "euc_kr",  # KS C 5601
}


def _alphabet(dc: int) -> str:
    """'gsm7', 'ucs2', 'binary' or a Python codec name for an SMPP data_coding value.

    0x00-0x0F follow SMPP 3.4 §5.2.19; above that, the GSM 03.38 data coding scheme groups
    (general 0x10-0x7F by alphabet bits 3-2, compressed -> binary; 0xC0-0xDF GSM7;
    0xE0-0xEF UCS2; 0xF0-0xFF bit 2 set = 8-bit data else GSM7). Reserved -> binary.
    """
    if dc == 0x00:
        return "gsm7"
    if dc in _PYTHON_CODECS:
        return _PYTHON_CODECS[dc]
    if 0x10 <= dc <= 0x7F:
        if dc & 0x20:
            return "binary"
        return {0: "gsm7", 2: "utf-16-be"}.get((dc >> 2) & 0x03, "binary")
    if 0xC0 <= dc <= 0xDF:
        return "gsm7"
    if 0xE0 <= dc <= 0xEF:
        return "utf-16-be"
    if 0xF0 <= dc <= 0xFF:
        return "binary" if dc & 0x04 else "gsm7"
    return "binary"


def decode(data: bytes, data_coding: int) -> str:
    """Best-effort text of `data` announced as `data_coding`. Never raises.

    Undecodable input yields U+FFFD replacement characters (odd-length or lone-surrogate
    UCS-2 included). Binary and reserved codings are decoded as UTF-8 with replacement.
    """
    data = bytes(data)
    alphabet = _alphabet(data_coding)
    if alphabet == "gsm7":
        return _decode_gsm7(data)
    if alphabet == "binary":
        return _decode_binary(data)
    return data.decode(alphabet, "replace")


# ---------------------------------------------------------------------------------------
# Reading concatenation headers (MO reassembly).


@dataclass(frozen=True, slots=True)
class ConcatInfo:
    """Which part of which long message a short_message is."""

    reference: int
    total: int
    part: int  # 1-based
    bits: int  # 8 or 16: width of the reference in the UDH


def parse_concat(short_message: bytes, udhi: bool) -> tuple[ConcatInfo | None, bytes]:
    """The concatenation info (IE 0x00 or 0x08) and the payload after the UDH.

    Without UDHI the message is returned as is. Other IEs are skipped; when an IE repeats
    the last one counts. A concatenation IE with a wrong length, total 0 or part outside
    1..total is ignored. If the UDH length overruns the message, nothing can be trusted:
    (None, short_message) is returned unchanged. Never raises.
    """
    data = bytes(short_message)
    if not udhi or not data:
        return None, data
    udhl = data[0]
    if 1 + udhl > len(data):
        return None, data
    header, payload = data[1 : 1 + udhl], data[1 + udhl :]
    info: ConcatInfo | None = None
    i = 0
    while i + 2 <= len(header):
        iei, length = header[i], header[i + 1]
        value = header[i + 2 : i + 2 + length]
        if len(value) < length:
            break  # truncated IE: stop reading, keep what was found
        i += 2 + length
        if iei == 0x00 and length == 3:
            candidate = ConcatInfo(value[0], value[1], value[2], 8)
        elif iei == 0x08 and length == 4:
            candidate = ConcatInfo((value[0] << 8) | value[1], value[2], value[3], 16)
        else:
            continue
        if candidate.total >= 1 and 1 <= candidate.part <= candidate.total:
            info = candidate
    return info, payload


def decode_udh_payload(
    short_message: bytes, data_coding: int, udhi: bool
) -> tuple[ConcatInfo | None, str]:
    """`parse_concat` then `decode` of the payload. Never raises.

    To reassemble a long message, join the parts' *payload bytes* (from parse_concat) in
    part order and decode once: a sender that split an escape or a surrogate pair across
    parts is then still decoded correctly.
    """
    info, payload = parse_concat(short_message, udhi)
    return info, decode(payload, data_coding)

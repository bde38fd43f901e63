"""SMS text encoding, decoding and segmentation (smsmesh.smpp.text)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsmesh.smpp.text import (
    ConcatInfo,
    Encoding,
    Segment,
    SegmentationError,
    SplitMode,
    TextEncodingError,
    choose_encoding,
    count_segments,
    data_coding,
    decode,
    decode_udh_payload,
    encode,
    parse_concat,
    part_limit,
    single_limit,
    split,
    units,
)

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCXYZÄÖÑÜ§¿abcxyzäöñüà"
)
GSM_EXTENSION = "^{}\\[~]|€\x0c"


def payload_of(segment: Segment) -> bytes:
    if segment.payload_tlv is not None:
        return segment.payload_tlv
    return segment.short_message[len(segment.udh) :]


# --- encodings -------------------------------------------------------------------------


def test_data_coding_values() -> None:
    assert data_coding(Encoding.GSM7) == 0x00
    assert data_coding(Encoding.ASCII) == 0x01
    assert data_coding(Encoding.LATIN1) == 0x03
    assert data_coding(Encoding.UCS2) == 0x08


@pytest.mark.parametrize(
    ("text", "allow_latin1", "expected"),
    [
        ("", False, Encoding.GSM7),
        ("Hello @ £5 {ok} €", False, Encoding.GSM7),
        ("naïve", False, Encoding.UCS2),  # ï is not in GSM 03.38
        ("naïve", True, Encoding.LATIN1),
        ("back`tick", True, Encoding.LATIN1),  # ASCII, but not GSM
        ("€ and ï", True, Encoding.UCS2),  # € is GSM but not Latin-1, ï the reverse
        ("Привет", True, Encoding.UCS2),
        ("\x1b", False, Encoding.UCS2),  # a raw ESC is not a character of the alphabet
    ],
)
def test_choose_encoding(text: str, allow_latin1: bool, expected: Encoding) -> None:
    assert choose_encoding(text, allow_latin1=allow_latin1) is expected


def test_encode_gsm7_uses_escape_for_extension_table() -> None:
    assert encode("@a€[", Encoding.GSM7) == b"\x00a\x1be\x1b<"
    assert encode("\x0c", Encoding.GSM7) == b"\x1b\x0a"


def test_encode_ucs2_astral_is_a_surrogate_pair() -> None:
    assert encode("Ж😀", Encoding.UCS2) == b"\x04\x16\xd8\x3d\xde\x00"


def test_encode_latin1_and_ascii() -> None:
    assert encode("café", Encoding.LATIN1) == b"caf\xe9"
    assert encode("cafe", Encoding.ASCII) == b"cafe"


@pytest.mark.parametrize(
    ("text", "enc", "index"),
    [
        ("abcЖ", Encoding.GSM7, 3),
        ("ab\x1b", Encoding.GSM7, 2),
        ("a€", Encoding.LATIN1, 1),
        ("é", Encoding.ASCII, 0),
        ("x\ud83d", Encoding.UCS2, 1),  # lone surrogate in the Python string
    ],
)
def test_encode_unrepresentable_names_the_character(text: str, enc: Encoding, index: int) -> None:
    with pytest.raises(TextEncodingError, match=f"U\\+{ord(text[index]):04X} at index {index}"):
        encode(text, enc)
    with pytest.raises(TextEncodingError):
        units(text, enc)
    with pytest.raises(TextEncodingError):
        split(text, enc, SplitMode.UDH8, 1)


def test_units() -> None:
    assert units("a€b", Encoding.GSM7) == 4
    assert units("Ж😀", Encoding.UCS2) == 3
    assert units("café", Encoding.LATIN1) == 4
    assert units("", Encoding.GSM7) == 0


# --- the research note's tricky cases ---------------------------------------------------


def test_161_a_is_two_parts() -> None:
    parts = split("a" * 161, Encoding.GSM7, SplitMode.UDH8, 0x42)
    assert [len(payload_of(p)) for p in parts] == [153, 8]
    assert [p.short_message[:6] for p in parts] == [
        bytes.fromhex("050003420201"),
        bytes.fromhex("050003420202"),
    ]
    assert all(p.esm_udhi for p in parts)


def test_160_a_is_one_part_without_udh() -> None:
    (only,) = split("a" * 160, Encoding.GSM7, SplitMode.UDH8, 1)
    assert only == Segment(b"a" * 160, b"", 1, 1, 1, False, None, None)


def test_81_euro_is_two_parts_none_over_153() -> None:
    parts = split("€" * 81, Encoding.GSM7, SplitMode.UDH8, 1)
    assert len(parts) == 2
    lengths = [len(payload_of(p)) for p in parts]
    assert lengths == [152, 10]  # 76 + 5 escaped euros; 153 would cut an escape
    assert all(not payload_of(p).endswith(b"\x1b") for p in parts)
    assert "".join(decode(payload_of(p), 0) for p in parts) == "€" * 81


def test_escape_not_split_from_its_character() -> None:
    text = "a" * 152 + "€" + "b" * 10
    parts = split(text, Encoding.GSM7, SplitMode.UDH8, 1)
    assert [payload_of(p) for p in parts] == [b"a" * 152, b"\x1be" + b"b" * 10]


def test_71_cyrillic_ucs2_is_two_parts() -> None:
    parts = split("Ж" * 71, Encoding.UCS2, SplitMode.UDH8, 9)
    assert [len(payload_of(p)) for p in parts] == [134, 8]
    assert count_segments("Ж" * 70, Encoding.UCS2) == 1


def test_36_emoji_surrogate_pairs_intact() -> None:
    parts = split("😀" * 36, Encoding.UCS2, SplitMode.UDH8, 9)
    assert [len(payload_of(p)) for p in parts] == [132, 12]  # 33 pairs, not 33.5
    for p in parts:
        data = payload_of(p)
        assert data[:2] == b"\xd8\x3d"
        assert data[-2:] == b"\xde\x00"
    assert "".join(decode(payload_of(p), 8) for p in parts) == "😀" * 36


# --- modes, headers, limits -------------------------------------------------------------


def test_udh16_header_bytes_and_limit() -> None:
    parts = split("a" * 161, Encoding.GSM7, SplitMode.UDH16, 0x1234)
    assert [p.udh for p in parts] == [
        bytes.fromhex("06080412340201"),
        bytes.fromhex("06080412340202"),
    ]
    assert [len(payload_of(p)) for p in parts] == [152, 9]
    assert all(p.short_message.startswith(p.udh) and p.esm_udhi for p in parts)


def test_sar_mode_has_no_udh_and_carries_tlv_values() -> None:
    parts = split("x" * 400, Encoding.GSM7, SplitMode.SAR, 200)
    assert [(p.sar, p.part, p.total, p.esm_udhi, p.udh) for p in parts] == [
        ((200, 3, 1), 1, 3, False, b""),
        ((200, 3, 2), 2, 3, False, b""),
        ((200, 3, 3), 3, 3, False, b""),
    ]
    assert [len(p.short_message) for p in parts] == [153, 153, 94]


def test_payload_mode_never_splits() -> None:
    (only,) = split("é" * 1000, Encoding.LATIN1, SplitMode.PAYLOAD, 0)
    assert only.short_message == b""
    assert only.payload_tlv == b"\xe9" * 1000
    assert (only.part, only.total, only.esm_udhi, only.sar) == (1, 1, False, None)
    assert count_segments("é" * 1000, Encoding.LATIN1, SplitMode.PAYLOAD) == 1


def test_payload_mode_limit() -> None:
    with pytest.raises(SegmentationError, match="65535"):
        split("Ж" * 40000, Encoding.UCS2, SplitMode.PAYLOAD, 0)


@pytest.mark.parametrize(
    ("enc", "mode", "limit"),
    [
        (Encoding.GSM7, SplitMode.UDH8, 153),
        (Encoding.GSM7, SplitMode.SAR, 153),
        (Encoding.GSM7, SplitMode.UDH16, 152),
        (Encoding.UCS2, SplitMode.UDH8, 67),
        (Encoding.UCS2, SplitMode.UDH16, 66),
        (Encoding.LATIN1, SplitMode.UDH8, 134),
        (Encoding.ASCII, SplitMode.UDH16, 133),
    ],
)
def test_part_limits_are_filled_exactly(enc: Encoding, mode: SplitMode, limit: int) -> None:
    char = "Ж" if enc is Encoding.UCS2 else "a"
    text = char * (limit * 3)
    parts = split(text, enc, mode, 1)
    assert len(parts) == 3
    assert all(units(decode(payload_of(p), data_coding(enc)), enc) == limit for p in parts)
    assert part_limit(enc, mode) == limit
    assert count_segments(text, enc, mode) == 3
    assert count_segments(text + char, enc, mode) == 4


@pytest.mark.parametrize(
    ("enc", "limit"),
    [(Encoding.GSM7, 160), (Encoding.UCS2, 70), (Encoding.LATIN1, 140), (Encoding.ASCII, 140)],
)
def test_single_limits(enc: Encoding, limit: int) -> None:
    char = "Ж" if enc is Encoding.UCS2 else "a"
    assert single_limit(enc) == limit
    assert len(split(char * limit, enc, SplitMode.UDH8, 1)) == 1
    assert len(split(char * (limit + 1), enc, SplitMode.UDH8, 1)) == 2


def test_extension_chars_count_double_for_single_sms() -> None:
    assert count_segments("€" * 80, Encoding.GSM7) == 1
    assert count_segments("€" * 80 + "a", Encoding.GSM7) == 2


@pytest.mark.parametrize(
    ("mode", "reference"),
    [
        (SplitMode.UDH8, 256),
        (SplitMode.SAR, 256),
        (SplitMode.UDH8, -1),
        (SplitMode.UDH16, 65536),
    ],
)
def test_reference_range_is_validated(mode: SplitMode, reference: int) -> None:
    with pytest.raises(SegmentationError, match="reference"):
        split("short", Encoding.GSM7, mode, reference)


def test_reference_upper_bounds_are_accepted() -> None:
    assert split("a" * 200, Encoding.GSM7, SplitMode.UDH8, 255)[0].udh[3] == 255
    assert split("a" * 200, Encoding.GSM7, SplitMode.UDH16, 65535)[0].udh[3:5] == b"\xff\xff"


def test_more_than_255_parts_is_refused_but_counted() -> None:
    assert len(split("a" * 153 * 255, Encoding.GSM7, SplitMode.UDH8, 1)) == 255
    text = "a" * (153 * 255 + 1)
    with pytest.raises(SegmentationError, match="256 parts"):
        split(text, Encoding.GSM7, SplitMode.UDH8, 1)
    assert count_segments(text, Encoding.GSM7) == 256


def test_string_values_of_enums_are_accepted() -> None:
    parts = split("a" * 161, "gsm7", "udh8", 3)  # type: ignore[arg-type]
    assert len(parts) == 2


# --- decoding -----------------------------------------------------------------------------


def test_decode_gsm7_basic_and_extension() -> None:
    assert decode(b"\x00\x01\x1be\x1b<a", 0) == "@£€[a"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\x1b", "a\ufffd"),  # trailing lone escape
        (b"\x1bA", "A"),  # escape + unmapped code: the basic-table character
        (b"\x1b\x1bx", " x"),  # ESC ESC: a space (TS 23.038)
        (b"a\x80\xff", "a\ufffd\ufffd"),  # not septets
        (b"\x1b\x90", "\ufffd"),
    ],
)
def test_decode_gsm7_tolerates_bad_input(data: bytes, expected: str) -> None:
    assert decode(data, 0) == expected


@pytest.mark.parametrize(
    ("data", "dc", "expected"),
    [
        (b"caf\xe9", 0x03, "café"),
        (b"cafe\xe9", 0x01, "cafe\ufffd"),
        (b"\x04\x16", 0x08, "Ж"),
        (b"\x04\x16\x00", 0x08, "Ж\ufffd"),  # odd length
        (b"\xd8\x3d\x00a", 0x08, "\ufffda"),  # lone high surrogate
        (b"\xde\x00", 0x08, "\ufffd"),  # lone low surrogate
        (b"\xd8\x3d\xde\x00", 0x08, "😀"),
        (b"\xc0\xff", 0x04, "\ufffd\ufffd"),  # binary
        (b"ok \xc3\xa9", 0x02, "ok é"),  # binary that happens to be UTF-8
        (b"\x00a\tb\x7f\xc2\x85", 0x04, "\ufffda\tb\ufffd\ufffd"),  # controls replaced
        (b"\x00a", 0xF0, "@a"),  # class 0, GSM7
        (b"\x00a", 0xF4, "\ufffda"),  # class 0, 8-bit data
        (b"\x04\x16", 0x18, "Ж"),  # general group, class meaningful, UCS2
        (b"\x00", 0x10, "@"),  # general group, GSM7
        (b"\x00", 0x30, "\ufffd"),  # compressed: binary
        (b"\x04\x16", 0xE0, "Ж"),  # message waiting, UCS2
        (b"\xb6", 0x06, "Ж"),  # ISO-8859-5
        (b"\x00a", 0x0B, "\ufffda"),  # reserved
        (b"\x00a", 0x1234, "\ufffda"),  # nonsense value
    ],
)
def test_decode_by_data_coding(data: bytes, dc: int, expected: str) -> None:
    assert decode(data, dc) == expected


@given(st.binary(max_size=300), st.integers(min_value=-1, max_value=300))
def test_decode_never_raises(data: bytes, dc: int) -> None:
    assert isinstance(decode(data, dc), str)


# --- parse_concat ------------------------------------------------------------------------


def test_parse_concat_udh8_and_udh16() -> None:
    assert parse_concat(bytes.fromhex("05000342030261 62"), True) == (
        ConcatInfo(0x42, 3, 2, 8),
        b"ab",
    )
    assert parse_concat(bytes.fromhex("060804123403 03 78"), True) == (
        ConcatInfo(0x1234, 3, 3, 16),
        b"x",
    )


def test_parse_concat_skips_other_ies() -> None:
    # IE 0x05 (application port, 4 octets) before the concatenation IE
    sm = bytes.fromhex("0b 0504 0b8423f0 000302 0201") + b"hi"
    assert parse_concat(sm, True) == (ConcatInfo(2, 2, 1, 8), b"hi")


def test_parse_concat_without_udhi_returns_message() -> None:
    sm = bytes.fromhex("050003420302") + b"ab"
    assert parse_concat(sm, False) == (None, sm)


@pytest.mark.parametrize(
    ("sm", "expected"),
    [
        (bytes.fromhex("05000342030061"), (None, b"a")),  # part 0
        (bytes.fromhex("05000342020361"), (None, b"a")),  # part > total
        (bytes.fromhex("05000300000061"), (None, b"a")),  # total 0
        (bytes.fromhex("050002420261 61"), (None, b"a")),  # wrong IE length
        (bytes.fromhex("040003420161"), (None, b"a")),  # IE overruns the UDH
        (bytes.fromhex("0900034202016162"), (None, bytes.fromhex("0900034202016162"))),
        (b"", (None, b"")),
    ],
)
def test_parse_concat_malformed(sm: bytes, expected: tuple[ConcatInfo | None, bytes]) -> None:
    assert parse_concat(sm, True) == expected


@given(st.binary(max_size=200), st.booleans())
def test_parse_concat_never_raises(sm: bytes, udhi: bool) -> None:
    info, payload = parse_concat(sm, udhi)
    assert sm.endswith(payload)
    if info is not None:
        assert 1 <= info.part <= info.total


def test_decode_udh_payload_round_trip_of_split() -> None:
    text = "Grüße aus Köln — 😀 " * 10
    enc = choose_encoding(text)
    parts = split(text, enc, SplitMode.UDH16, 777)
    decoded = [decode_udh_payload(p.short_message, data_coding(enc), p.esm_udhi) for p in parts]
    assert [info for info, _ in decoded] == [
        ConcatInfo(777, len(parts), n, 16) for n in range(1, len(parts) + 1)
    ]
    assert "".join(t for _, t in decoded) == text


# --- properties --------------------------------------------------------------------------

_GSM_CHARS = list(GSM_BASIC) + list(GSM_EXTENSION)
_LATIN1_CHARS = list("àéïõÿ¡«»`")
_OTHER_CHARS = list("ЖПривет") + list("😀🎉𝄞")
# One alphabet per draw, so that GSM-only and Latin-1-only texts (which are unlikely
# from a single mixed alphabet) are as common as UCS-2 ones; the length is drawn
# first so that multi-part texts (hypothesis favours short ones) are common too.
_texts = st.sampled_from(
    [_GSM_CHARS, list(GSM_EXTENSION), _GSM_CHARS + _LATIN1_CHARS, _GSM_CHARS + _OTHER_CHARS]
).flatmap(
    lambda alphabet: st.integers(0, 700).flatmap(
        lambda n: st.text(alphabet=st.sampled_from(alphabet), min_size=n, max_size=n)
    )
)


def _code_units(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


@settings(max_examples=300)
@given(_texts, st.sampled_from(list(SplitMode)), st.integers(0, 255), st.booleans())
def test_split_round_trips_and_respects_limits(
    text: str, mode: SplitMode, reference: int, allow_latin1: bool
) -> None:
    enc = choose_encoding(text, allow_latin1=allow_latin1)
    parts = split(text, enc, mode, reference)
    dc = data_coding(enc)

    assert "".join(decode(payload_of(p), dc) for p in parts) == text
    assert len(parts) == count_segments(text, enc, mode)
    assert [p.part for p in parts] == list(range(1, len(parts) + 1))
    assert all(p.total == len(parts) for p in parts)

    if mode is SplitMode.PAYLOAD or len(parts) == 1:
        assert len(parts) == 1
        assert parts[0].udh == b""
        assert not parts[0].esm_udhi
        assert parts[0].sar is None
        if mode is not SplitMode.PAYLOAD:
            assert units(text, enc) <= single_limit(enc)
        return

    limit = part_limit(enc, mode)
    for p in parts:
        payload = payload_of(p)
        octets = len(payload)
        assert octets <= (2 * limit if enc is Encoding.UCS2 else limit)
        if enc is Encoding.GSM7:
            assert not payload.endswith(b"\x1b")
        if enc is Encoding.UCS2:
            cu = _code_units(payload)
            assert not 0xDC00 <= cu[0] <= 0xDFFF
            assert not 0xD800 <= cu[-1] <= 0xDBFF
        if mode is SplitMode.SAR:
            assert p.sar == (reference, len(parts), p.part)
            assert p.udh == b""
            assert not p.esm_udhi
        else:
            info, rest = parse_concat(p.short_message, p.esm_udhi)
            assert info == ConcatInfo(reference, len(parts), p.part, 16 if mode == "udh16" else 8)
            assert rest == payload
        # 140 octets is the hard limit of one SMS once the UDH is packed with the payload
        # (for SAR the SMSC adds a 6-octet UDH itself)
        udh_octets = len(p.udh) if mode is not SplitMode.SAR else 6
        payload_bits = octets * 7 if enc is Encoding.GSM7 else octets * 8
        assert udh_octets * 8 + payload_bits <= 140 * 8


@given(_texts)
def test_greedy_parts_are_full(text: str) -> None:
    """Every part but the last is as full as it can be without cutting a character."""
    enc = choose_encoding(text)
    parts = split(text, enc, SplitMode.UDH8, 1)
    if len(parts) < 2:
        return
    limit = part_limit(enc, SplitMode.UDH8)
    dc = data_coding(enc)
    for current, following in itertools.pairwise(parts):
        used = units(decode(payload_of(current), dc), enc)
        next_char = decode(payload_of(following), dc)[0]
        assert used + units(next_char, enc) > limit


@given(st.binary(max_size=300))
def test_gsm7_decoding_is_the_basic_table_byte_by_byte_without_escapes(data: bytes) -> None:
    """The C charmap decoder used when no ESC occurs reads every byte as the basic
    table says (>= 0x80: U+FFFD), like the septet-by-septet path."""
    data = data.replace(b"\x1b", b"")
    expected = "".join("\ufffd" if b >= 0x80 else bytes((b,)).decode("gsm03.38") for b in data)
    assert decode(data, 0) == expected

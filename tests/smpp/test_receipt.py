"""Delivery receipts: text parsing, states, deliver_sm -> Receipt, id forms."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsmesh.model import Receipt, ReceiptState
from smsmesh.smpp.receipt import (
    ReceiptError,
    ReceiptFields,
    format_receipt_text,
    id_candidates,
    is_receipt,
    message_state_value,
    parse_receipt_text,
    receipt_from_deliver,
    stat_code,
    state_from_message_state,
    state_from_stat,
)

RECEIPTED_MESSAGE_ID = 0x001E
NETWORK_ERROR_CODE = 0x0423
MESSAGE_PAYLOAD = 0x0424
MESSAGE_STATE = 0x0427


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- parse_receipt_text ------------------------------------------------------------------


def test_parse_standard_receipt() -> None:
    fields = parse_receipt_text(
        "id:1234567890 sub:001 dlvrd:001 submit date:2401151230 done date:2401151231"
        " stat:DELIVRD err:000 text:Hello world"
    )
    assert fields == ReceiptFields(
        id="1234567890",
        sub="001",
        dlvrd="001",
        submit_date=utc(2024, 1, 15, 12, 30),
        done_date=utc(2024, 1, 15, 12, 31),
        stat="DELIVRD",
        err="000",
        text="Hello world",
    )


@pytest.mark.parametrize(
    ("text", "expected_id", "stat", "err"),
    [
        # hex id, capitalised Text key
        (
            "id:7A3F9C21 sub:001 dlvrd:001 submit date:2312312359 done date:2401010000"
            " stat:DELIVRD err:000 Text:Test",
            "7A3F9C21",
            "DELIVRD",
            "000",
        ),
        # decimal id with leading zeros
        (
            "id:0000012345 sub:001 dlvrd:000 submit date:2402291000 done date:2402291002"
            " stat:UNDELIV err:034 text:",
            "0000012345",
            "UNDELIV",
            "034",
        ),
        # upper/mixed case keys
        (
            "ID:abc123 SUB:001 DLVRD:000 Submit Date:2403010000 DONE DATE:2403010005"
            " STAT:EXPIRED ERR:000 TEXT:x",
            "abc123",
            "EXPIRED",
            "000",
        ),
        # UUID-like id, missing err
        (
            "id:5b1e6f2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b sub:001 dlvrd:001"
            " submit date:2405051200 done date:2405051201 stat:DELIVRD text:ok",
            "5b1e6f2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
            "DELIVRD",
            None,
        ),
        # fields out of order, no text, vendor field
        (
            "stat:REJECTD err:0x0B id:AB-77 mccmnc:20404 sub:001",
            "AB-77",
            "REJECTD",
            "0x0B",
        ),
    ],
)
def test_parse_real_world_variants(text: str, expected_id: str, stat: str, err: str | None) -> None:
    fields = parse_receipt_text(text)
    assert fields is not None
    assert (fields.id, fields.stat, fields.err) == (expected_id, stat, err)


def test_parse_dates_with_seconds_and_long_years() -> None:
    fields = parse_receipt_text(
        "id:1 submit date:240315093045 done_date:20240315093112 stat:DELIVRD"
    )
    assert fields is not None
    assert fields.submit_date == utc(2024, 3, 15, 9, 30, 45)
    assert fields.done_date == utc(2024, 3, 15, 9, 31, 12)


def test_parse_iso_date_with_colons() -> None:
    fields = parse_receipt_text("id:1 submit date:2024-03-15 09:30:45 stat:ACCEPTD err:000")
    assert fields is not None
    assert fields.submit_date == utc(2024, 3, 15, 9, 30, 45)
    assert (fields.stat, fields.err) == ("ACCEPTD", "000")


@pytest.mark.parametrize("bad", ["2413011200", "24011", "soon", "2401011261"])
def test_parse_invalid_date_is_none(bad: str) -> None:
    fields = parse_receipt_text(f"id:9 done date:{bad} stat:DELIVRD")
    assert fields is not None
    assert fields.done_date is None
    assert fields.stat == "DELIVRD"


def test_parse_text_last_keeps_colons() -> None:
    fields = parse_receipt_text("id:42 stat:DELIVRD err:000 text:Meet at 10:30 id:fake stat:x")
    assert fields is not None
    assert fields.text == "Meet at 10:30 id:fake stat:x"
    assert (fields.id, fields.stat) == ("42", "DELIVRD")


def test_parse_extra_vendor_fields_are_kept() -> None:
    fields = parse_receipt_text("id:1 stat:DELIVRD err:000 MCCMNC:23410 price:0.01 text:hi")
    assert fields is not None
    assert fields.extra == {"mccmnc": "23410", "price": "0.01"}


@pytest.mark.parametrize("text", ["", "Hello, how are you?", "time: 10:30", "sub:001 err:000"])
def test_parse_non_receipt_is_none(text: str) -> None:
    assert parse_receipt_text(text) is None


@given(st.text(max_size=300))
def test_parse_never_raises(text: str) -> None:
    result = parse_receipt_text(text)
    assert result is None or isinstance(result, ReceiptFields)


_ids = st.text(alphabet="0123456789abcdefABCDEF-xyz", min_size=1, max_size=40)
_minutes = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
)


@given(
    _ids,
    st.sampled_from(list(ReceiptState)),
    st.integers(0, 999),
    _minutes,
    _minutes,
    st.text(max_size=40),
)
def test_format_then_parse_round_trips(
    smsc_id: str, state: ReceiptState, err: int, submitted: datetime, done: datetime, text: str
) -> None:
    written = format_receipt_text(smsc_id, state, err, submitted, done, text)
    fields = parse_receipt_text(written)
    assert fields is not None
    assert fields.id == smsc_id
    assert state_from_stat(fields.stat or "") is state
    assert fields.err == f"{err:03d}"
    assert (fields.submit_date, fields.done_date) == (submitted, done)
    assert fields.text == text[:20].strip()
    assert fields.dlvrd == ("001" if state is ReceiptState.DELIVERED else "000")


def test_format_receipt_text_exact() -> None:
    assert format_receipt_text(
        "0A1B", "UNDELIV", 11, utc(2024, 1, 2, 3, 4, 59), 1704164700.0, "x" * 30, dlvrd=0
    ) == (
        "id:0A1B sub:001 dlvrd:000 submit date:2401020304 done date:2401020305"
        " stat:UNDELIV err:011 text:" + "x" * 20
    )


def test_format_naive_datetime_is_utc() -> None:
    written = format_receipt_text(
        "1",
        ReceiptState.DELIVERED,
        "000",
        datetime(2024, 6, 1, 8, 0),
        datetime(2024, 6, 1, 8, 1),
        "",
    )
    assert "submit date:2406010800 done date:2406010801 stat:DELIVRD" in written
    assert "dlvrd:001" in written


# --- states --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stat", "state"),
    [
        ("DELIVRD", ReceiptState.DELIVERED),
        ("delivrd", ReceiptState.DELIVERED),
        ("DELIVERED", ReceiptState.DELIVERED),
        ("EXPIRED", ReceiptState.EXPIRED),
        ("DELETED", ReceiptState.DELETED),
        ("UNDELIV", ReceiptState.UNDELIVERABLE),
        ("UNDELIVERABLE", ReceiptState.UNDELIVERABLE),
        ("FAILED", ReceiptState.UNDELIVERABLE),
        ("ACCEPTD", ReceiptState.ACCEPTED),
        ("UNKNOWN", ReceiptState.UNKNOWN),
        ("REJECTD", ReceiptState.REJECTED),
        ("REJECTED", ReceiptState.REJECTED),
        ("ENROUTE", ReceiptState.ENROUTE),
        ("EN_ROUTE", ReceiptState.ENROUTE),
        (" Delivrd ", ReceiptState.DELIVERED),
        ("WHATEVER", ReceiptState.UNKNOWN),
        ("", ReceiptState.UNKNOWN),
    ],
)
def test_state_from_stat(stat: str, state: ReceiptState) -> None:
    assert state_from_stat(stat) is state


def test_state_from_message_state() -> None:
    assert [state_from_message_state(v) for v in range(10)] == [
        ReceiptState.UNKNOWN,
        ReceiptState.ENROUTE,
        ReceiptState.DELIVERED,
        ReceiptState.EXPIRED,
        ReceiptState.DELETED,
        ReceiptState.UNDELIVERABLE,
        ReceiptState.ACCEPTED,
        ReceiptState.UNKNOWN,
        ReceiptState.REJECTED,
        ReceiptState.UNKNOWN,
    ]


@pytest.mark.parametrize("state", list(ReceiptState))
def test_state_codes_round_trip(state: ReceiptState) -> None:
    assert state_from_stat(stat_code(state)) is state
    assert len(stat_code(state)) == 7
    assert state_from_message_state(message_state_value(state)) is state


# --- receipt_from_deliver --------------------------------------------------------------------

STANDARD = (
    b"id:0A1B2C sub:001 dlvrd:001 submit date:2401151230 done date:2401151231"
    b" stat:DELIVRD err:000 text:Hello world"
)


def test_deliver_text_only_receipt() -> None:
    receipt = receipt_from_deliver(0x04, 0x00, STANDARD, {}, "conn-a", 12.5)
    assert receipt == Receipt(
        connection="conn-a",
        smsc_message_id="0A1B2C",
        state=ReceiptState.DELIVERED,
        at=12.5,
        error_code="000",
        raw=STANDARD.decode(),
    )


def test_deliver_tlvs_win_over_text() -> None:
    tlvs = {
        RECEIPTED_MESSAGE_ID: b"FFEE\x00",
        MESSAGE_STATE: bytes([5]),
        NETWORK_ERROR_CODE: bytes([3, 0x00, 0x0B]),
    }
    receipt = receipt_from_deliver(0x04, 0x00, STANDARD, tlvs, "c", 1.0)
    assert receipt is not None
    assert receipt.smsc_message_id == "FFEE"
    assert receipt.state is ReceiptState.UNDELIVERABLE
    assert receipt.error_code == "3:11"
    assert receipt.raw == STANDARD.decode()


@pytest.mark.parametrize("bad_state", [b"", b"\x00", b"\x09", b"\x02\x02"])
def test_deliver_unusable_message_state_falls_back_to_text(bad_state: bytes) -> None:
    text = STANDARD.replace(b"DELIVRD", b"EXPIRED")
    tlvs = {RECEIPTED_MESSAGE_ID: b"1\x00", MESSAGE_STATE: bad_state, NETWORK_ERROR_CODE: b"\x03"}
    receipt = receipt_from_deliver(0x04, 0x00, text, tlvs, "c", 1.0)
    assert receipt is not None
    assert receipt.state is ReceiptState.EXPIRED
    assert receipt.error_code == "000"  # the 1-octet network_error_code is malformed


def test_deliver_tlv_only_receipt_without_text() -> None:
    tlvs = {RECEIPTED_MESSAGE_ID: b"abc-1\x00", MESSAGE_STATE: b"\x02"}
    receipt = receipt_from_deliver(0x04, 0x00, b"", tlvs, "c", 1.0)
    assert receipt == Receipt("c", "abc-1", ReceiptState.DELIVERED, 1.0, None, None)


def test_deliver_receipted_message_id_marks_receipt_whatever_esm_class() -> None:
    tlvs = {RECEIPTED_MESSAGE_ID: b"77\x00", MESSAGE_STATE: b"\x03"}
    assert is_receipt(0x00, tlvs)
    receipt = receipt_from_deliver(0x00, 0x00, b"", tlvs, "c", 1.0)
    assert receipt is not None
    assert (receipt.smsc_message_id, receipt.state) == ("77", ReceiptState.EXPIRED)


def test_deliver_intermediate_notification() -> None:
    text = b"id:55 sub:001 dlvrd:000 submit date:2401010000 done date:2401010001 stat:ENROUTE"
    receipt = receipt_from_deliver(0x20, 0x00, text, {}, "c", 1.0)
    assert receipt is not None
    assert receipt.state is ReceiptState.ENROUTE


@pytest.mark.parametrize("esm_class", [0x00, 0x08, 0x10, 0x40, 0x03])
def test_deliver_non_receipt_is_none(esm_class: int) -> None:
    # an MO (or an SME acknowledgement) that merely looks like a receipt is not one
    assert receipt_from_deliver(esm_class, 0x00, STANDARD, {}, "c", 1.0) is None
    assert not is_receipt(esm_class, {})


def test_deliver_text_in_message_payload() -> None:
    receipt = receipt_from_deliver(0x04, 0x00, b"", {MESSAGE_PAYLOAD: STANDARD}, "c", 1.0)
    assert receipt is not None
    assert (receipt.smsc_message_id, receipt.state) == ("0A1B2C", ReceiptState.DELIVERED)


def test_deliver_ucs2_receipt_text() -> None:
    data = STANDARD.decode().encode("utf-16-be")
    receipt = receipt_from_deliver(0x04, 0x08, data, {}, "c", 1.0)
    assert receipt is not None
    assert receipt.smsc_message_id == "0A1B2C"


def test_deliver_receipt_with_udh_is_stripped() -> None:
    udh = bytes.fromhex("050003010101")
    receipt = receipt_from_deliver(0x44, 0x00, udh + STANDARD, {}, "c", 1.0)
    assert receipt is not None
    assert receipt.raw == STANDARD.decode()


@pytest.mark.parametrize(
    ("short_message", "tlvs"),
    [
        (b"sub:001 dlvrd:001 stat:DELIVRD err:000", {}),
        (b"\xff\xfe binary", {MESSAGE_STATE: b"\x02"}),
        (b"", {}),
        (b"", {RECEIPTED_MESSAGE_ID: b"\x00"}),
    ],
)
def test_deliver_receipt_without_id_raises(short_message: bytes, tlvs: dict[int, bytes]) -> None:
    with pytest.raises(ReceiptError, match="no message id"):
        receipt_from_deliver(0x04, 0x00, short_message, tlvs, "c", 1.0)


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=200),
    st.dictionaries(
        st.sampled_from([RECEIPTED_MESSAGE_ID, MESSAGE_STATE, NETWORK_ERROR_CODE, MESSAGE_PAYLOAD]),
        st.binary(max_size=40),
    ),
)
def test_deliver_only_ever_raises_receipt_error(
    esm_class: int, dc: int, short_message: bytes, tlvs: dict[int, bytes]
) -> None:
    try:
        receipt = receipt_from_deliver(esm_class, dc, short_message, tlvs, "c", 1.0)
    except ReceiptError:
        assert is_receipt(esm_class, tlvs)
        return
    assert (receipt is not None) == is_receipt(esm_class, tlvs)
    if receipt is not None:
        assert receipt.smsc_message_id


# --- id_candidates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("submit_id", "receipt_id"),
    [
        ("1234567890", "499602D2"),  # decimal in the resp, hex in the receipt
        ("499602d2", "1234567890"),  # and the other way round
        ("0000012345", "12345"),  # leading zeros
        ("00ABCDEF", "abcdef"),  # case and leading zeros
        ("255", "FF"),
        ("msg-1", "MSG-1"),  # not a number at all
    ],
)
def test_id_candidates_match_both_ways(submit_id: str, receipt_id: str) -> None:
    assert set(id_candidates(submit_id)) & set(id_candidates(receipt_id))
    assert set(id_candidates(receipt_id)) & set(id_candidates(submit_id))


@pytest.mark.parametrize(("a", "b"), [("10", "11"), ("abc", "abd"), ("msg-1", "msg-2")])
def test_id_candidates_different_ids_do_not_match(a: str, b: str) -> None:
    assert not set(id_candidates(a)) & set(id_candidates(b))


def test_id_candidates_canonical_first() -> None:
    assert id_candidates(" 00AB ") == ("00ab", "ab", "171")
    assert id_candidates("0") == ("0",)


@given(st.integers(0, 2**64))
def test_id_candidates_decimal_and_hex_of_same_number_meet(n: int) -> None:
    assert set(id_candidates(str(n))) & set(id_candidates(format(n, "X")))


def test_tlv_receipt_keeps_the_text_error_and_raw_text_without_parsing_dates() -> None:
    text = b"id:77 sub:001 dlvrd:000 submit date:bogus done date:bogus stat:UNDELIV err:034 text:x"
    tlvs = {0x001E: b"77\x00", 0x0427: bytes([5])}
    receipt = receipt_from_deliver(0x04, 0, text, tlvs, "c", 1.0)
    assert receipt is not None
    assert receipt.smsc_message_id == "77"
    assert receipt.state is ReceiptState.UNDELIVERABLE
    assert receipt.error_code == "034"
    assert receipt.raw == text.decode()

"""Destination parsing and sender classification: formats, error codes, robustness."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsmesh.addresses import (
    AddressError,
    SenderKind,
    classify_sender,
    normalize_sender_glob,
    parse_destination,
)

# -- destinations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "+31612345678",
        "0031612345678",
        "31612345678",
        "+31 6 1234 5678",
        "+31-6-1234-5678",
        " +31 (6) 1234.5678 ",
        "0031 6 12345678",
    ],
)
def test_international_forms_give_the_same_e164(raw: str) -> None:
    dest = parse_destination(raw)
    assert dest.e164 == "31612345678"
    assert dest.plus == "+31612345678"
    assert dest.region == "NL"
    assert dest.country_code == 31
    assert dest.number_type == "mobile"
    assert dest.valid


@pytest.mark.parametrize(
    ("raw", "region", "e164", "expected_region"),
    [
        ("0612345678", "NL", "31612345678", "NL"),
        ("06 12 34 56 78", "nl", "31612345678", "NL"),  # region is case-insensitive
        ("612345678", "NL", "31612345678", "NL"),  # national without trunk prefix
        ("31612345678", "NL", "31612345678", "NL"),  # starts with NL's own code
        ("4915123456789", "NL", "4915123456789", "DE"),  # not possible in NL: international
        ("(212) 555-1234", "US", "12125551234", "US"),
        ("12125551234", "US", "12125551234", "US"),
        ("+4915123456789", "NL", "4915123456789", "DE"),  # '+' always wins
        ("0049 151 23456789", "NL", "4915123456789", "DE"),
    ],
)
def test_default_region(raw: str, region: str, e164: str, expected_region: str) -> None:
    dest = parse_destination(raw, region)
    assert (dest.e164, dest.region) == (e164, expected_region)


def test_shared_country_code_resolves_region() -> None:
    assert parse_destination("+14165550123").region == "CA"
    assert parse_destination("+12125551234").region == "US"


def test_non_geographic_number_has_no_region() -> None:
    dest = parse_destination("+80012345678")
    assert dest.region is None
    assert dest.country_code == 800
    assert dest.number_type == "toll_free"


def test_possible_but_unassigned_range_is_accepted_and_flagged() -> None:
    # +31 1 1... is not a range the Dutch plan assigns, but the length is possible:
    # the SMSC decides, smsmesh only refuses what cannot be a number.
    dest = parse_destination("+31112345678")
    assert dest.e164 == "31112345678"
    assert not dest.valid
    assert dest.number_type == "unknown"


@pytest.mark.parametrize(
    ("raw", "region", "code"),
    [
        ("", None, "invalid_number"),
        ("   ", None, "invalid_number"),
        ("hello", None, "invalid_number"),
        ("1-800-FLOWERS", None, "invalid_number"),  # no vanity letters
        ("+31 6 1234 567a", None, "invalid_number"),
        ("++31612345678", None, "invalid_number"),
        ("+", None, "invalid_number"),
        ("3" * 80, None, "invalid_number"),
        ("+999123456789", None, "invalid_country_code"),
        ("0612345678", None, "national_number_without_region"),
        ("+3161", None, "not_a_possible_number"),
        ("+316123456789012", None, "not_a_possible_number"),
        ("31", None, "not_a_possible_number"),
        ("0612345678", "XX", "invalid_region"),
        ("061", "NL", "not_a_possible_number"),
    ],
)
def test_destination_errors(raw: str, region: str | None, code: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_destination(raw, region)
    assert info.value.code == code
    assert info.value.message
    assert str(info.value) == info.value.message


def test_every_region_example_round_trips() -> None:
    """For every region: its example mobile number, in international and in national
    form (with the region as default), parses to the same E.164 digits and region."""
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        if example is None:
            continue
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        dest = parse_destination(e164)
        assert dest.e164 == e164[1:], region
        # Regions sharing a country code (AX/FI, ...) resolve as phonenumbers does.
        assert dest.region == phonenumbers.region_code_for_number(example), region
        national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
        assert parse_destination(national, region).e164 == e164[1:], (region, national)
        checked += 1
    assert checked > 200


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.from_regex(r"\A[+0 ]{0,3}[0-9 ()\-]{0,20}\Z"),
    ),
    st.sampled_from([None, "NL", "US", "DE", "GB", "IN", "xx", ""]),
)
def test_parse_destination_raises_only_address_error(raw: str, region: str | None) -> None:
    try:
        dest = parse_destination(raw, region)
    except AddressError as exc:
        code: str | None = exc.code
    else:
        code = None
    if code is not None:
        assert code in {
            "invalid_number",
            "invalid_country_code",
            "national_number_without_region",
            "not_a_possible_number",
            "invalid_region",
        }
        return
    assert dest.e164.isdigit()
    assert 2 <= len(dest.e164) <= 17
    assert dest.e164[0] != "0"
    # Parsing the canonical form again is stable.
    assert parse_destination("+" + dest.e164).e164 == dest.e164


# -- senders ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind", "value", "ton", "npi"),
    [
        ("Acme", SenderKind.ALPHANUMERIC, "Acme", 5, 0),
        ("  Acme Bank ", SenderKind.ALPHANUMERIC, "Acme Bank", 5, 0),
        ("ACME-2FA", SenderKind.ALPHANUMERIC, "ACME-2FA", 5, 0),
        ("Info@Shop", SenderKind.ALPHANUMERIC, "Info@Shop", 5, 0),
        ("12345678901", SenderKind.INTERNATIONAL, "12345678901", 1, 1),
        ("+31612345678", SenderKind.INTERNATIONAL, "31612345678", 1, 1),
        ("+31 6 1234 5678", SenderKind.INTERNATIONAL, "31612345678", 1, 1),
        ("0031612345678", SenderKind.INTERNATIONAL, "31612345678", 1, 1),
        ("31612345678", SenderKind.INTERNATIONAL, "31612345678", 1, 1),
        ("1234", SenderKind.SHORTCODE, "1234", 3, 0),
        ("123", SenderKind.SHORTCODE, "123", 3, 0),
        ("12345678", SenderKind.SHORTCODE, "12345678", 3, 0),
        ("0612345678", SenderKind.NATIONAL, "0612345678", 2, 1),
    ],
)
def test_classify_sender(raw: str, kind: SenderKind, value: str, ton: int, npi: int) -> None:
    sender = classify_sender(raw)
    assert (sender.kind, sender.value, sender.ton, sender.npi) == (kind, value, ton, npi)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("Acme Corporation", "at most 11"),
        ("Acme€", "'€'"),
        ("Ac{me}", "'{'"),
        ("Ünïcode", "'Ü'"),
        ("12", "short code"),
        ("+", "followed by digits"),
        ("+31abc", "followed by digits"),
        ("00", "followed by digits"),
        ("+123", "7 to 15"),
        ("+1234567890123456", "7 to 15"),
        ("9991234567", "country code"),
        ("---", "no letter or digit"),
    ],
)
def test_invalid_senders(raw: str, fragment: str) -> None:
    with pytest.raises(AddressError) as info:
        classify_sender(raw)
    assert info.value.code == "invalid_sender"
    assert fragment in info.value.message


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=30), st.from_regex(r"\A\+?[0-9]{0,17}\Z")))
def test_classify_sender_raises_only_address_error_and_is_idempotent(raw: str) -> None:
    try:
        sender = classify_sender(raw)
    except AddressError as exc:
        code: str | None = exc.code
    else:
        code = None
    if code is not None:
        assert code == "invalid_sender"
        return
    # The wire value, with '+' for international numbers, classifies the same again.
    plus = "+" if sender.kind == SenderKind.INTERNATIONAL else ""
    assert classify_sender(plus + sender.value) == sender
    if sender.kind == SenderKind.ALPHANUMERIC:
        assert 1 <= len(sender.value) <= 11
    else:
        assert sender.value.isdigit()


def test_address_error_pickles_with_its_code() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(AddressError("invalid_sender", "nope")))
    assert (err.code, err.message) == ("invalid_sender", "nope")


@pytest.mark.parametrize(
    ("glob", "normalized"),
    [("+3161*", "3161*"), ("003161*", "3161*"), ("Acme*", "Acme*"), ("+Acme", "+Acme")],
)
def test_numeric_sender_globs_are_written_like_sender_values(glob: str, normalized: str) -> None:
    assert normalize_sender_glob(glob) == normalized

"""Phone numbers and sender addresses: parse once, at the edge, into plain values.

Destinations become E.164 digits (no '+') plus the facts routing needs (region,
country calling code). Senders are classified into the four kinds an SMSC
distinguishes, each with the TON/NPI it goes out with. Every failure is an
`AddressError` with a machine-readable `code` the HTTP API returns as is.

Speed matters (this runs for every message): a destination is parsed once with
`phonenumbers` (~15 µs); the number type, which costs as much again, is only worked
out when someone asks for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType, ValidationResult

MAX_RAW_LENGTH = 64  # longer input is not a phone number; refuse before any work

_NUMBER_CHARS = re.compile(r"^\s*(\+|00)?[0-9 \-().\/]*[0-9][0-9 \-().\/]*$")
_STRIP = str.maketrans("", "", " -().\t/")
_DIGITS = re.compile(r"^[0-9]+$")

_TYPE_NAMES = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}

_POSSIBLE_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "of a length no number in that country has",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "only dialable locally",
}


class AddressError(ValueError):
    """A destination or sender that cannot be used. `code` is stable and machine-readable:

    invalid_number, invalid_country_code, national_number_without_region,
    not_a_possible_number, invalid_region, invalid_sender.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[AddressError], tuple[str, str]]:
        return (AddressError, (self.code, self.message))


@dataclass(frozen=True, slots=True)
class Destination:
    """A possible phone number in international form.

    `region` is the ISO 3166-1 alpha-2 code, or None for non-geographic numbers
    (+800, +882, ...). Numbers are checked for a possible length, not against the
    numbering plan's ranges: new ranges appear faster than libraries update, and the
    SMSC is the authority. `valid` tells whether the plan knows the range.
    """

    e164: str  # digits, country code first, no '+'
    region: str | None
    country_code: int
    _number: PhoneNumber = field(repr=False, compare=False)

    @property
    def number_type(self) -> str:
        """mobile, fixed_line, fixed_line_or_mobile, toll_free, ... or unknown."""
        return _TYPE_NAMES.get(phonenumbers.number_type(self._number), "unknown")

    @property
    def valid(self) -> bool:
        return phonenumbers.is_valid_number(self._number)

    @property
    def plus(self) -> str:
        return "+" + self.e164


def _region_arg(default_region: str | None) -> str | None:
    if default_region is None:
        return None
    region = default_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise AddressError("invalid_region", f"{default_region!r} is not a known region code")
    return region


def _parse(text: str, region: str | None) -> PhoneNumber:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            raise AddressError(
                "invalid_country_code", f"{text!r} does not start with a known country code"
            ) from None
        # The characters were checked before, so phonenumbers' other complaints
        # (NOT_A_NUMBER included) are about the number of digits.
        raise AddressError(
            "not_a_possible_number", f"{text!r} is too short or too long for a phone number"
        ) from None


def _possible(number: PhoneNumber) -> str | None:
    """None when possible, else why not."""
    result = phonenumbers.is_possible_number_with_reason(number)
    if result == ValidationResult.IS_POSSIBLE:
        return None
    if result == ValidationResult.INVALID_COUNTRY_CODE:
        return "of an unknown country code"
    return _POSSIBLE_REASONS.get(result, "not possible")


def _destination(number: PhoneNumber) -> Destination:
    region = phonenumbers.region_code_for_number(number)
    return Destination(
        e164=f"{number.country_code}{phonenumbers.national_significant_number(number)}",
        region=region if region and region not in ("001", "ZZ") else None,
        country_code=number.country_code or 0,
        _number=number,
    )


def _reading(text: str, region: str | None) -> PhoneNumber | AddressError:
    """One way of reading the input: the number if it is possible, else the error."""
    try:
        number = _parse(text, region)
    except AddressError as exc:
        return exc
    why = _possible(number)
    if why is None:
        return number
    return AddressError("not_a_possible_number", f"{text!r} is {why}")


def parse_destination(raw: str, default_region: str | None = None) -> Destination:
    """Parse a destination number given as "+31612345678", "0031612345678",
    "31612345678" (country code first) or, with `default_region`, "0612345678".

    Spaces, dashes, dots, slashes and parentheses are ignored. Digits without '+' or
    '00' are read with the country code first; when `default_region` is given and they
    do not start with that region's country code, they are read as a national number
    first. If the first reading is not a possible number the other one is tried, and
    the first reading's error is reported when neither works.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise AddressError("invalid_number", "destination is empty")
    if len(raw) > MAX_RAW_LENGTH or not _NUMBER_CHARS.match(raw):
        raise AddressError(
            "invalid_number", "destination must be digits, optionally with a leading '+' or '00'"
        )
    region = _region_arg(default_region)
    text = raw.strip().translate(_STRIP)
    if text.startswith("+"):
        result = _reading(text, None)
    elif text.startswith("00"):
        result = _reading("+" + text[2:], None)
    elif region is None:
        if text.startswith("0"):
            raise AddressError(
                "national_number_without_region",
                f"{raw.strip()!r} looks like a national number; "
                "give it with its country code, e.g. +31612345678",
            )
        result = _reading("+" + text, None)
    else:
        own_code = str(phonenumbers.country_code_for_region(region))
        readings = [("+" + text, None), (text, region)]
        if text.startswith("0") or not text.startswith(own_code):
            readings.reverse()
        result = _reading(*readings[0])
        if isinstance(result, AddressError):
            second = _reading(*readings[1])
            if not isinstance(second, AddressError):
                result = second
    if isinstance(result, AddressError):
        raise result
    return _destination(result)


# -- senders ----------------------------------------------------------------------------


class SenderKind(StrEnum):
    ALPHANUMERIC = "alphanumeric"
    SHORTCODE = "shortcode"
    INTERNATIONAL = "international"
    NATIONAL = "national"


# TON/NPI per kind, as SMSCs expect them when the connection's sourceTon/Npi are "auto".
_TON_NPI = {
    SenderKind.ALPHANUMERIC: (5, 0),
    SenderKind.SHORTCODE: (3, 0),
    SenderKind.INTERNATIONAL: (1, 1),
    SenderKind.NATIONAL: (2, 1),
}

MAX_ALPHANUMERIC = 11
# ASCII characters of the GSM 03.38 default alphabet: safe in an alphanumeric sender.
_ALPHANUMERIC_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 !\"#$%&'()*+,-./:;<=>?@_"
)
_HAS_ALNUM = re.compile(r"[A-Za-z0-9]")


@dataclass(frozen=True, slots=True)
class Sender:
    """A classified sender. `value` is what goes on the wire: digits without '+' for
    numbers, the text itself for alphanumeric senders."""

    kind: SenderKind
    value: str
    ton: int
    npi: int


def _known_country_code(digits: str) -> bool:
    if digits.startswith("0"):
        return False
    return any(
        int(digits[:n]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
        for n in (1, 2, 3)
        if len(digits) >= n
    )


def _number_sender(kind: SenderKind, digits: str) -> Sender:
    ton, npi = _TON_NPI[kind]
    return Sender(kind=kind, value=digits, ton=ton, npi=npi)


def classify_sender(raw: str) -> Sender:
    """Classify a sender address.

    * "+31612345678", "0031612345678" or 9-15 digits not starting with 0:
      international (TON 1, NPI 1), value without '+'.
    * 3-8 digits: short code (TON 3, NPI 0).
    * 9-15 digits starting with a single 0: national (TON 2, NPI 1).
    * otherwise up to 11 GSM-safe characters with a letter or digit: alphanumeric
      (TON 5, NPI 0).
    """
    if not isinstance(raw, str):
        raise AddressError("invalid_sender", "sender must be a string")
    text = raw.strip()
    if not text:
        raise AddressError("invalid_sender", "sender is empty")
    if len(text) > MAX_RAW_LENGTH:
        raise AddressError("invalid_sender", "sender is too long")
    if text.startswith("+"):
        international, digits = True, text[1:].translate(_STRIP)
    elif _DIGITS.match(text):
        international = text.startswith("00")
        digits = text[2:] if international else text
    else:
        international, digits = False, ""
    if international or digits:
        if not _DIGITS.match(digits):
            raise AddressError(
                "invalid_sender", f"sender {text!r}: '+' or '00' must be followed by digits"
            )
        if international or (len(digits) >= 9 and not digits.startswith("0")):
            if not 7 <= len(digits) <= 15:
                raise AddressError(
                    "invalid_sender",
                    f"international sender {text!r} must have 7 to 15 digits",
                )
            if not _known_country_code(digits):
                raise AddressError(
                    "invalid_sender", f"sender {text!r} does not start with a known country code"
                )
            return _number_sender(SenderKind.INTERNATIONAL, digits)
        if 3 <= len(digits) <= 8:
            return _number_sender(SenderKind.SHORTCODE, digits)
        if 9 <= len(digits) <= 15:
            return _number_sender(SenderKind.NATIONAL, digits)
        raise AddressError(
            "invalid_sender",
            f"numeric sender {text!r} must be a 3-8 digit short code or a full number",
        )
    bad = sorted({c for c in text if c not in _ALPHANUMERIC_CHARS})
    if bad:
        raise AddressError(
            "invalid_sender",
            f"alphanumeric sender {text!r} has characters an SMSC may not carry: "
            + " ".join(repr(c) for c in bad),
        )
    if len(text) > MAX_ALPHANUMERIC:
        raise AddressError(
            "invalid_sender",
            f"alphanumeric sender {text!r} has {len(text)} characters; "
            f"at most {MAX_ALPHANUMERIC} are allowed",
        )
    if not _HAS_ALNUM.search(text):
        raise AddressError("invalid_sender", f"sender {text!r} has no letter or digit")
    ton, npi = _TON_NPI[SenderKind.ALPHANUMERIC]
    return Sender(kind=SenderKind.ALPHANUMERIC, value=text, ton=ton, npi=npi)


_NUMERIC_GLOB = re.compile(r"^(\+|00)[0-9*?]+$")


def normalize_sender_glob(glob: str) -> str:
    """Write a numeric sender glob the way `Sender.value` is written: "+3161*" and
    "003161*" become "3161*", so that globs and senders compare like for like."""
    if _NUMERIC_GLOB.match(glob):
        return glob[1:] if glob.startswith("+") else glob[2:]
    return glob

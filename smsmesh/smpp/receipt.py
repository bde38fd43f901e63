"""Delivery receipts: parsing, state normalisation and message-id correlation forms."""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from smsmesh.model import Receipt, ReceiptState
from smsmesh.smpp.text import decode, parse_concat

_HEX = frozenset(string.hexdigits)


def id_candidates(smsc_id: str) -> tuple[str, ...]:
    """Every form in which an SMSC may quote the same message id, canonical form first.

    Carriers are known to return an id in decimal in submit_sm_resp and in hex in the
    receipt (or the other way round), with or without leading zeros, in either case.
    The store matches a receipt against a submit when any candidate is equal.
    """
    raw = smsc_id.strip().lower()
    out: list[str] = [raw]

    def add(value: str) -> None:
        if value and value not in out:
            out.append(value)

    stripped = raw.lstrip("0") or "0"
    add(stripped)
    if raw.isdigit():
        add(format(int(raw, 10), "x"))
    if raw and len(raw) <= 32 and _HEX.issuperset(raw):
        add(str(int(raw, 16)))
    return tuple(out)


# ---------------------------------------------------------------------------------------
# Receipt text (SMPP 3.4 Appendix B, de facto format).


class ReceiptError(ValueError):
    """A PDU marked as a delivery receipt that cannot be used (e.g. it names no message id).

    The caller should still acknowledge the deliver_sm (refusing it only makes the SMSC
    send it again) and count/log it as malformed.
    """


@dataclass(frozen=True, slots=True)
class ReceiptFields:
    """The fields of a receipt text, raw except for the dates.

    sub, dlvrd, stat and err are kept as written ("001", "DELIVRD", "000"); dates are
    aware UTC datetimes (the format carries no zone; SMSCs mostly mean UTC or their local
    time, which cannot be known here). `extra` holds vendor fields, keys lower-cased.
    """

    id: str | None
    sub: str | None = None
    dlvrd: str | None = None
    submit_date: datetime | None = None
    done_date: datetime | None = None
    stat: str | None = None
    err: str | None = None
    text: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


# A key is a word (optionally followed by " date"/"_date") and a colon, at the start or
# after whitespace/,;| — so that colons inside values (times, the text) are not keys.
_KEY = re.compile(r"(?:^|(?<=[\s,;|]))([a-z][a-z0-9_\-]*(?:[ _]date)?)\s*:", re.IGNORECASE)
_KEY_NOISE = re.compile(r"[\s_\-]")
_KEY_ALIASES = {
    "id": "id",
    "sub": "sub",
    "dlvrd": "dlvrd",
    "submitdate": "submit_date",
    "donedate": "done_date",
    "stat": "stat",
    "status": "stat",
    "err": "err",
    "error": "err",
    "text": "text",
}


def _parse_date(value: str) -> datetime | None:
    """YYMMDDhhmm, YYMMDDhhmmss, YYYYMMDDhhmmss or ISO 8601; UTC; None if invalid.

    A two-digit year is 20YY (strptime's %y would make 69..99 the 1900s).
    """
    try:
        if value.isascii() and value.isdigit() and len(value) in (10, 12, 14):
            # Sliced by hand: strptime costs more than the rest of a receipt's parsing.
            full = value if len(value) == 14 else "20" + value
            return datetime(
                int(full[0:4]), int(full[4:6]), int(full[6:8]),
                int(full[8:10]), int(full[10:12]), int(full[12:14] or 0), tzinfo=UTC,
            )  # fmt: skip
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_receipt_text(text: str) -> ReceiptFields | None:
    """Parse `id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…`.

    Lenient: any order, any key case, missing fields, seconds in dates, vendor fields
    (kept in `extra`), ids with letters or dashes. `text:` takes the rest of the string,
    colons included. The first occurrence of a key wins. Returns None when the text has
    neither an `id` nor a `stat` field, i.e. does not look like a receipt. Never raises.
    """
    matches = list(_KEY.finditer(text))
    values: dict[str, str] = {}
    extra: dict[str, str] = {}
    for i, match in enumerate(matches):
        key = _KEY_NOISE.sub("", match.group(1)).lower()
        name = _KEY_ALIASES.get(key)
        if name == "text":
            values.setdefault("text", text[match.end() :].strip())
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[match.end() : end].strip().strip(",;|").strip()
        if name is None:
            extra.setdefault(match.group(1).lower(), value)
        else:
            values.setdefault(name, value)
    if "id" not in values and "stat" not in values:
        return None

    def token(name: str) -> str | None:
        # ids and codes never contain spaces; anything after the first word is noise
        words = values.get(name, "").split()
        return words[0] if words else None

    def date(name: str) -> datetime | None:
        value = values.get(name, "")
        return _parse_date(value) if value else None

    return ReceiptFields(
        id=token("id"),
        sub=token("sub"),
        dlvrd=token("dlvrd"),
        submit_date=date("submit_date"),
        done_date=date("done_date"),
        stat=token("stat"),
        err=token("err"),
        text=values.get("text"),
        extra=extra,
    )


# ---------------------------------------------------------------------------------------
# States.

_STAT_STATES = {
    "DELIVRD": ReceiptState.DELIVERED,
    "DELIVERED": ReceiptState.DELIVERED,
    "DELIVER": ReceiptState.DELIVERED,
    "EXPIRED": ReceiptState.EXPIRED,
    "EXPIRD": ReceiptState.EXPIRED,
    "DELETED": ReceiptState.DELETED,
    "DELETD": ReceiptState.DELETED,
    "UNDELIV": ReceiptState.UNDELIVERABLE,
    "UNDELIVERABLE": ReceiptState.UNDELIVERABLE,
    "UNDELIVERED": ReceiptState.UNDELIVERABLE,
    "UNDELIVRD": ReceiptState.UNDELIVERABLE,
    "FAILED": ReceiptState.UNDELIVERABLE,
    "FAIL": ReceiptState.UNDELIVERABLE,
    "ACCEPTD": ReceiptState.ACCEPTED,
    "ACCEPTED": ReceiptState.ACCEPTED,
    "UNKNOWN": ReceiptState.UNKNOWN,
    "REJECTD": ReceiptState.REJECTED,
    "REJECTED": ReceiptState.REJECTED,
    "REJECT": ReceiptState.REJECTED,
    "ENROUTE": ReceiptState.ENROUTE,  # also "EN_ROUTE", "en route" after normalising
    "BUFFERED": ReceiptState.ENROUTE,
    "BUFFRED": ReceiptState.ENROUTE,
}

_MESSAGE_STATES = {
    1: ReceiptState.ENROUTE,
    2: ReceiptState.DELIVERED,
    3: ReceiptState.EXPIRED,
    4: ReceiptState.DELETED,
    5: ReceiptState.UNDELIVERABLE,
    6: ReceiptState.ACCEPTED,
    7: ReceiptState.UNKNOWN,
    8: ReceiptState.REJECTED,
}

_STAT_CODES = {
    ReceiptState.ENROUTE: "ENROUTE",
    ReceiptState.DELIVERED: "DELIVRD",
    ReceiptState.EXPIRED: "EXPIRED",
    ReceiptState.DELETED: "DELETED",
    ReceiptState.UNDELIVERABLE: "UNDELIV",
    ReceiptState.ACCEPTED: "ACCEPTD",
    ReceiptState.UNKNOWN: "UNKNOWN",
    ReceiptState.REJECTED: "REJECTD",
}


def state_from_stat(stat: str) -> ReceiptState:
    """The state named by a `stat:` value: the SMPP 3.4 codes, case-insensitive, plus
    vendor spellings (DELIVERED, UNDELIVERABLE, FAILED -> undeliverable, EN_ROUTE,
    BUFFERED -> enroute …). Anything else is UNKNOWN."""
    return _STAT_STATES.get(re.sub(r"[^A-Z]", "", stat.upper()), ReceiptState.UNKNOWN)


def state_from_message_state(value: int) -> ReceiptState:
    """The state of an SMPP message_state value (1..8); anything else is UNKNOWN."""
    return _MESSAGE_STATES.get(value, ReceiptState.UNKNOWN)


def message_state_value(state: ReceiptState) -> int:
    """The SMPP message_state value (1..8) of a state, for a receipted deliver_sm TLV."""
    return next(v for v, s in _MESSAGE_STATES.items() if s is state)


def stat_code(state: ReceiptState) -> str:
    """The 7-character SMPP 3.4 `stat:` code of a state (DELIVRD, UNDELIV, …)."""
    return _STAT_CODES[state]


# ---------------------------------------------------------------------------------------
# From a deliver_sm.

_TAG_RECEIPTED_MESSAGE_ID = 0x001E
_TAG_NETWORK_ERROR_CODE = 0x0423
_TAG_MESSAGE_PAYLOAD = 0x0424
_TAG_MESSAGE_STATE = 0x0427
_ESM_TYPE_MASK = 0x3C
_ESM_RECEIPT_TYPES = (0x04, 0x20)  # SMSC delivery receipt, intermediate notification
_ESM_UDHI = 0x40


def is_receipt(esm_class: int, tlvs: Mapping[int, bytes]) -> bool:
    """Whether a deliver_sm carries a delivery receipt rather than a mobile-originated SMS:
    esm_class message type 0x04 (SMSC delivery receipt) or 0x20 (intermediate
    notification), or a receipted_message_id TLV whatever the esm_class says."""
    return (esm_class & _ESM_TYPE_MASK) in _ESM_RECEIPT_TYPES or _TAG_RECEIPTED_MESSAGE_ID in tlvs


def _c_string(value: bytes) -> str:
    return value.split(b"\x00", 1)[0].decode("latin-1").strip()


def receipt_from_deliver(
    esm_class: int,
    data_coding: int,
    short_message: bytes,
    tlvs: Mapping[int, bytes],
    connection: str,
    at: float,
) -> Receipt | None:
    """The Receipt a deliver_sm carries, or None when it is not a receipt (see is_receipt).

    TLVs win over the text: receipted_message_id (0x001E) for the id, message_state
    (0x0427, when 1..8) for the state, network_error_code (0x0423, 3 octets) for the error,
    written "<network type>:<error code>" in decimal (e.g. "3:11" = GSM error 11). The text
    comes from short_message (UDH stripped when esm_class has UDHI), or from
    message_payload (0x0424) when short_message holds none, decoded with text.decode.

    Raises ReceiptError when the PDU is a receipt but names no message id anywhere.
    """
    if not is_receipt(esm_class, tlvs):
        return None
    tlv_id = _c_string(tlvs.get(_TAG_RECEIPTED_MESSAGE_ID, b""))
    state_tlv = tlvs.get(_TAG_MESSAGE_STATE, b"")
    if tlv_id and len(state_tlv) == 1 and state_tlv[0] in _MESSAGE_STATES:
        # Fast path: the TLVs say everything that counts, so the text is kept for the
        # timeline but not parsed (parsing dates was most of a connector's CPU).
        return _receipt_from_tlvs(
            tlv_id, state_tlv[0], esm_class, data_coding, short_message, tlvs, connection, at
        )
    raw: str | None = None
    fields: ReceiptFields | None = None
    for body in (short_message, tlvs.get(_TAG_MESSAGE_PAYLOAD, b"")):
        if not body:
            continue
        _, payload = parse_concat(body, bool(esm_class & _ESM_UDHI))
        candidate = decode(payload, data_coding)
        parsed = parse_receipt_text(candidate)
        if raw is None or (fields is None and parsed is not None):
            raw, fields = candidate, parsed
        if fields is not None:
            break

    smsc_id = _c_string(tlvs.get(_TAG_RECEIPTED_MESSAGE_ID, b""))
    if not smsc_id and fields is not None:
        smsc_id = fields.id or ""
    if not smsc_id:
        raise ReceiptError("delivery receipt names no message id (no TLV 0x001E, no id: field)")

    state = ReceiptState.UNKNOWN
    state_tlv = tlvs.get(_TAG_MESSAGE_STATE, b"")
    if len(state_tlv) == 1 and state_tlv[0] in _MESSAGE_STATES:
        state = state_from_message_state(state_tlv[0])
    elif fields is not None and fields.stat:
        state = state_from_stat(fields.stat)

    error = fields.err if fields is not None else None
    network_error = tlvs.get(_TAG_NETWORK_ERROR_CODE, b"")
    if len(network_error) == 3:
        error = f"{network_error[0]}:{int.from_bytes(network_error[1:], 'big')}"

    return Receipt(
        connection=connection,
        smsc_message_id=smsc_id,
        state=state,
        at=at,
        error_code=error,
        raw=raw,
    )


_ERR_FIELD = re.compile(r"\berr:\s*(\S+)", re.IGNORECASE)


def _receipt_from_tlvs(
    smsc_id: str,
    message_state: int,
    esm_class: int,
    data_coding: int,
    short_message: bytes,
    tlvs: Mapping[int, bytes],
    connection: str,
    at: float,
) -> Receipt:
    body = short_message or tlvs.get(_TAG_MESSAGE_PAYLOAD, b"")
    raw: str | None = None
    if body:
        _, payload = parse_concat(body, bool(esm_class & _ESM_UDHI))
        raw = decode(payload, data_coding)
    network_error = tlvs.get(_TAG_NETWORK_ERROR_CODE, b"")
    error: str | None = None
    if len(network_error) == 3:
        error = f"{network_error[0]}:{int.from_bytes(network_error[1:], 'big')}"
    elif raw:
        found = _ERR_FIELD.search(raw)
        error = found.group(1) if found else None
    return Receipt(
        connection=connection,
        smsc_message_id=smsc_id,
        state=state_from_message_state(message_state),
        at=at,
        error_code=error,
        raw=raw,
    )


# ---------------------------------------------------------------------------------------
# Writing receipts (SMSC simulator).


def _format_date(value: datetime | float) -> str:
    if type(value) is float:  # the simulator's case, first: unix seconds
        return _minute_text(int(value // 60))
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%y%m%d%H%M")
    return _minute_text(int(value // 60))


@functools.lru_cache(maxsize=16)
def _minute_text(minute: int) -> str:
    """YYMMDDhhmm of a minute since the epoch: a receipt stream writes the same few."""
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%y%m%d%H%M")


# sub, dlvrd and err are written with three digits at least; from a table, as
# f"{n:03d}" costs more than the rest of a receipt's text (the simulator writes
# thousands a second).
_THREE_DIGITS = tuple(f"{n:03d}" for n in range(1000))


def _three_digits(n: int) -> str:
    return _THREE_DIGITS[n] if 0 <= n < 1000 else f"{n:03d}"


def format_receipt_text(
    id: str,
    stat: ReceiptState | str,
    err: int | str,
    submit_date: datetime | float,
    done_date: datetime | float,
    text: str,
    sub: int = 1,
    dlvrd: int | None = None,
) -> str:
    """A receipt text in the standard format, as SMSCs send it.

    `stat` is a ReceiptState (written as its SMPP code) or a code as is; `err` an int is
    written as three digits; dates (datetime, naive = UTC, or unix seconds) as YYMMDDhhmm
    in UTC; `text` is cut to its first 20 characters; `dlvrd` defaults to 1 when the stat
    is DELIVRD, else 0.
    """
    code = _STAT_CODES[stat] if isinstance(stat, ReceiptState) else stat
    if dlvrd is None:
        dlvrd = 1 if code.upper() == "DELIVRD" else 0
    err_text = _three_digits(err) if isinstance(err, int) else err
    return (
        f"id:{id} sub:{_three_digits(sub)} dlvrd:{_three_digits(dlvrd)}"
        f" submit date:{_format_date(submit_date)} done date:{_format_date(done_date)}"
        f" stat:{code} err:{err_text} text:{text[:20]}"
    )

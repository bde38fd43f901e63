"""submit_sm composition: alphabet, splitting, addressing, validity (pure, no I/O)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from connkit import make_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from smsmesh.model import ClaimedMessage, Priority
from smsmesh.smpp.codec import decode as decode_pdu
from smsmesh.smpp.codec import encode as encode_pdu
from smsmesh.smpp.pdu import SubmitSm, Tag
from smsmesh.smpp.text import Encoding, SplitMode, decode, parse_concat
from smsmesh_connector.compose import ComposeError, Composer, validity_period
from smsmesh_connector.settings import Addressing, ConnectorSettings

BASE = make_settings(2775, Path("x.db"))


def claimed(text: str = "hi", source: str = "smsmesh", expires_at: float = 0.0) -> ClaimedMessage:
    return ClaimedMessage(
        id="m1",
        application="app",
        source=source,
        destination="31612345678",
        text=text,
        priority=Priority.NORMAL,
        expires_at=expires_at or time.time() + 3600,
        attempts=0,
        client_ref=None,
        trace_context={},
    )


def compose(text: str, **changes: object) -> list[SubmitSm]:
    s: ConnectorSettings = replace(BASE, **changes)  # type: ignore[arg-type]
    return Composer(s).compose(claimed(text))


def test_validity_period_is_absolute_utc() -> None:
    assert validity_period(0) == "700101000000000+"
    assert validity_period(1_767_323_045.9) == "260102030405000+"


def test_short_gsm_text_is_one_plain_part() -> None:
    (pdu,) = compose("Hello @ world {€}")
    assert (pdu.data_coding, pdu.esm_class, pdu.registered_delivery) == (0, 0, 1)
    assert decode(pdu.short_message, 0) == "Hello @ world {€}"
    assert (pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr) == (1, 1, "31612345678")
    assert pdu.tlvs == ()
    assert len(pdu.validity_period) == 16


@pytest.mark.parametrize(
    ("source", "ton", "npi"),
    [("smsmesh", 5, 0), ("31612345678", 1, 1), ("1234", 3, 0), ("0612345678", 2, 1)],
)
def test_source_ton_npi_auto(source: str, ton: int, npi: int) -> None:
    (pdu,) = Composer(BASE).compose(claimed(source=source))
    assert (pdu.source_addr, pdu.source_addr_ton, pdu.source_addr_npi) == (source, ton, npi)


def test_source_ton_npi_explicit_and_half_auto() -> None:
    s = replace(BASE, addressing=Addressing(source_ton=0, source_npi=None, dest_ton=2, dest_npi=9))
    (pdu,) = Composer(s).compose(claimed(source="smsmesh"))
    assert (pdu.source_addr_ton, pdu.source_addr_npi) == (0, 0)
    assert (pdu.dest_addr_ton, pdu.dest_addr_npi) == (2, 9)


def test_unaddressable_sender_is_a_compose_error() -> None:
    with pytest.raises(ComposeError, match="sender"):
        Composer(BASE).compose(claimed(source="!!"))


def test_text_beyond_255_parts_is_a_compose_error() -> None:
    with pytest.raises(ComposeError, match="255"):
        compose("x" * 153 * 256)


def test_latin1_default_alphabet_uses_data_coding_0() -> None:
    (pdu,) = compose("Café [ok]", default_alphabet=Encoding.LATIN1)
    assert (pdu.data_coding, pdu.short_message) == (0, "Café [ok]".encode("latin-1"))
    (euro,) = compose("5 €", default_alphabet=Encoding.LATIN1)  # not in Latin-1
    assert (euro.data_coding, euro.short_message) == (8, "5 €".encode("utf-16-be"))


def test_latin1_opt_in_with_a_gsm_default() -> None:
    (pdu,) = compose("São Tomé", allow_latin1=True)  # ã is not GSM
    assert (pdu.data_coding, pdu.short_message) == (3, "São Tomé".encode("latin-1"))
    (ucs2,) = compose("São Tomé")
    assert ucs2.data_coding == 8


def test_payload_mode_sends_one_pdu_with_message_payload() -> None:
    text = "long " * 100
    (pdu,) = compose(text, long_messages=SplitMode.PAYLOAD)
    assert pdu.short_message == b""
    assert pdu.get_tlv(Tag.MESSAGE_PAYLOAD) == text.encode("ascii")


def test_udh16_mode_and_references_that_roll() -> None:
    composer = Composer(replace(BASE, long_messages=SplitMode.UDH16))
    first = composer.compose(claimed("y" * 400))
    second = composer.compose(claimed("y" * 400))
    refs = set()
    for pdus in (first, second):
        infos = [parse_concat(p.short_message, True)[0] for p in pdus]
        assert all(i is not None and i.bits == 16 for i in infos)
        refs |= {i.reference for i in infos if i}
    assert len(refs) == 2


def test_unregistered_delivery() -> None:
    (pdu,) = compose("hi", registered_delivery=False)
    assert pdu.registered_delivery == 0


def _reassemble(pdus: list[SubmitSm], mode: SplitMode) -> str:
    chunks: dict[int, bytes] = {}
    totals = set()
    for pdu in pdus:
        if mode is SplitMode.SAR:
            part = pdu.get_tlv_int(Tag.SAR_SEGMENT_SEQNUM) or 1
            totals.add(pdu.get_tlv_int(Tag.SAR_TOTAL_SEGMENTS) or 1)
            chunks[part] = pdu.short_message
        else:
            info, payload = parse_concat(pdu.short_message, bool(pdu.esm_class & 0x40))
            part = info.part if info else 1
            totals.add(info.total if info else 1)
            chunks[part] = payload
    assert totals == {len(pdus)}
    assert sorted(chunks) == list(range(1, len(pdus) + 1))
    return decode(b"".join(chunks[p] for p in sorted(chunks)), pdus[0].data_coding)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=700),
    mode=st.sampled_from([SplitMode.UDH8, SplitMode.UDH16, SplitMode.SAR]),
    latin1=st.booleans(),
)
def test_any_text_survives_splitting_and_fits_the_wire(
    text: str, mode: SplitMode, latin1: bool
) -> None:
    pdus = compose(text, long_messages=mode, allow_latin1=latin1)
    assert _reassemble(pdus, mode) == text
    for pdu in pdus:
        assert len(pdu.short_message) <= 140
        assert decode_pdu(encode_pdu(pdu)) == pdu  # every PDU encodes and decodes

"""Turning a claimed message into the submit_sm PDUs that carry it.

Pure and synchronous (no I/O): alphabet choice, splitting, addressing, validity. A
message that can never be sent as it is (a sender auto-addressing cannot classify, a
text beyond 255 parts) raises `ComposeError`, which the submitter reports as REJECTED:
retrying would fail the same way.
"""

from __future__ import annotations

import random
import time

from smsmesh.addresses import AddressError
from smsmesh.model import ClaimedMessage
from smsmesh.smpp.pdu import ESM_CLASS_UDHI, SubmitSm, Tag, Tlv
from smsmesh.smpp.text import (
    Encoding,
    SegmentationError,
    SplitMode,
    TextEncodingError,
    choose_encoding,
    data_coding,
    split,
)
from smsmesh_connector.settings import ConnectorSettings


class ComposeError(ValueError):
    """The message cannot be put on the wire with these settings (a permanent problem)."""


def validity_period(expires_at: float) -> str:
    """SMPP absolute time "YYMMDDhhmmss000+" (UTC: tenths 0, offset 00) for a unix time."""
    return time.strftime("%y%m%d%H%M%S000+", time.gmtime(expires_at))


class Composer:
    """Builds submit_sm PDUs for one connection. Holds the rolling concatenation
    reference, so one Composer is used per connector (references then differ between
    consecutive long messages to the same handset)."""

    def __init__(self, settings: ConnectorSettings) -> None:
        self._settings = settings
        self._mode = settings.long_messages
        self._ref_modulo = 0x10000 if self._mode is SplitMode.UDH16 else 0x100
        # A random start makes a restarted connector unlikely to reuse the references
        # of the messages its predecessor sent last.
        self._reference = random.randrange(self._ref_modulo)
        self._source_cache: dict[str, tuple[int, int]] = {}
        self._registered = 1 if settings.registered_delivery else 0

    def _encoding(self, text: str) -> tuple[Encoding, int]:
        settings = self._settings
        if settings.default_alphabet is Encoding.LATIN1:
            # data_coding 0 means Latin-1 to this SMSC: GSM-only texts go as Latin-1 too.
            if all(ord(c) < 0x100 for c in text):
                return Encoding.LATIN1, 0x00
            return Encoding.UCS2, data_coding(Encoding.UCS2)
        enc = choose_encoding(text, allow_latin1=settings.allow_latin1)
        return enc, data_coding(enc)

    def _source(self, sender: str) -> tuple[int, int]:
        cached = self._source_cache.get(sender)
        if cached is None:
            try:
                cached = self._settings.addressing.source(sender)
            except AddressError as exc:
                raise ComposeError(f"sender cannot be addressed: {exc.message}") from None
            if len(self._source_cache) > 10_000:
                self._source_cache.clear()
            self._source_cache[sender] = cached
        return cached

    def _next_reference(self) -> int:
        self._reference = (self._reference + 1) % self._ref_modulo
        return self._reference

    def compose(self, message: ClaimedMessage) -> list[SubmitSm]:
        """The PDUs for `message`, in part order (one for a text that fits one SMS)."""
        settings = self._settings
        addressing = settings.addressing
        source_ton, source_npi = self._source(message.source)
        enc, dc = self._encoding(message.text)
        try:
            # Every message takes a reference (single parts ignore it): cheaper than
            # splitting twice, and consecutive long messages still differ.
            segments = split(message.text, enc, self._mode, self._next_reference())
        except (SegmentationError, TextEncodingError) as exc:
            raise ComposeError(str(exc)) from None
        validity = validity_period(message.expires_at)
        pdus: list[SubmitSm] = []
        for segment in segments:
            tlvs: tuple[Tlv, ...] = ()
            if segment.sar is not None:
                ref, total, seq = segment.sar
                tlvs = (
                    Tlv.u16(Tag.SAR_MSG_REF_NUM, ref),
                    Tlv.u8(Tag.SAR_TOTAL_SEGMENTS, total),
                    Tlv.u8(Tag.SAR_SEGMENT_SEQNUM, seq),
                )
            elif segment.payload_tlv is not None:
                tlvs = (Tlv(Tag.MESSAGE_PAYLOAD, segment.payload_tlv),)
            pdus.append(
                SubmitSm(
                    service_type=settings.service_type,
                    source_addr_ton=source_ton,
                    source_addr_npi=source_npi,
                    source_addr=message.source,
                    dest_addr_ton=addressing.dest_ton,
                    dest_addr_npi=addressing.dest_npi,
                    destination_addr=message.destination,
                    esm_class=ESM_CLASS_UDHI if segment.esm_udhi else 0,
                    validity_period=validity,
                    registered_delivery=self._registered,
                    data_coding=dc,
                    short_message=segment.short_message,
                    tlvs=tlvs,
                )
            )
        return pdus

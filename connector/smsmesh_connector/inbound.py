"""The inbound half of a connector: deliver_sm / data_sm from the SMSC.

Accepted means durable, for receipts as for MOs: a request is answered ESME_ROK only
after the store committed what it carried (group commit, so many concurrent answers
share one transaction: MOs through a `Batcher`, receipts with the submit reports they
follow, through the submitter's `OutcomeWriter`). If the store fails, the answer is
ESME_RX_T_APPN, which tells the SMSC to deliver it again later. A receipt that names no
message id is answered ESME_ROK anyway (re-sending would not add the id), counted and
logged. Concatenated MOs are reassembled when their parts arrive together; see `mo`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import replace

from opentelemetry import context as otel_context
from opentelemetry.trace import Link, SpanKind

from smsmesh.batching import Batcher
from smsmesh.model import InboundMessage, Receipt, ReceiptMatch, new_message_id
from smsmesh.smpp.pdu import (
    ESM_CLASS_UDHI,
    CommandStatus,
    DataSm,
    DeliverSm,
    Pdu,
    Tag,
    make_response,
)
from smsmesh.smpp.receipt import ReceiptError, receipt_from_deliver
from smsmesh.smpp.text import decode, parse_concat
from smsmesh.store import Store
from smsmesh.telemetry import tracing
from smsmesh_connector.mo import MoAssembler
from smsmesh_connector.outcomes import OutcomeWriter
from smsmesh_connector.settings import ConnectorSettings
from smsmesh_connector.state import ConnectorState

log = logging.getLogger("smsmesh.connector")

OK = CommandStatus.ESME_ROK
RETRY_LATER = CommandStatus.ESME_RX_T_APPN


class InboundHandler:
    def __init__(
        self,
        settings: ConnectorSettings,
        store: Store,
        state: ConnectorState,
        outcomes: OutcomeWriter,
    ) -> None:
        self._settings = settings
        self._name = settings.name
        self._store = store
        self._counters = state.counters
        self._metrics = state.metrics
        self._outcomes = outcomes  # receipts are stored with the submit reports
        self._mos: Batcher[InboundMessage, None] = Batcher(
            self._record_inbound, name=f"{settings.name}-inbound"
        )
        self.assembler = MoAssembler(self._store_text, settings.mo_reassembly_wait)

    def handle(self, pdu: Pdu) -> Pdu | Awaitable[Pdu | None] | None:
        """`AsyncSession.on_request`: the response to a request from the SMSC.

        A delivery receipt is answered from a Future, which the outcome writer's
        completion callback resolves once stored (no task or extra Future per receipt:
        an SMSC sends one for nearly every message); an MO message from a coroutine;
        anything else at once.
        """
        if isinstance(pdu, DeliverSm | DataSm):
            short_message = pdu.short_message if isinstance(pdu, DeliverSm) else b""
            tlvs: dict[int, bytes] = {}
            for tlv in pdu.tlvs:
                tlvs.setdefault(tlv.tag, tlv.value)  # the first occurrence counts
            try:
                receipt = receipt_from_deliver(
                    pdu.esm_class, pdu.data_coding, short_message, tlvs, self._name, time.time()
                )
            except ReceiptError:
                self._counters.receipts_malformed += 1
                self._metrics.receipts_malformed.inc()
                log.warning(
                    "%s: delivery receipt without a message id (esm_class 0x%02X) "
                    "acknowledged and dropped",
                    self._name,
                    pdu.esm_class,
                )
                return make_response(pdu, OK)
            if receipt is not None:
                return self._receipt(pdu, receipt)
            return self._message(pdu, short_message or tlvs.get(Tag.MESSAGE_PAYLOAD, b""))
        if pdu.response_class is None:
            return None  # alert_notification and the like: nothing to answer
        return make_response(pdu, CommandStatus.ESME_RINVCMDID)

    def session_lost(self) -> None:
        """Parts held for reassembly can no longer be answered; the SMSC re-sends them."""
        self.assembler.discard()

    async def close(self) -> None:
        """Finish what is being stored (call after the session is closed; the
        receipts are the outcome writer's to finish)."""
        await self.assembler.close()
        await self._mos.close()

    # -- receipts and MOs -----------------------------------------------------------------

    async def _message(self, pdu: DeliverSm | DataSm, body: bytes) -> Pdu:
        """An MO message (or one part of it) stored, then acknowledged."""
        info, payload = parse_concat(body, bool(pdu.esm_class & ESM_CLASS_UDHI))
        if info is not None and info.total > 1:
            status = await self.assembler.add(
                pdu.source_addr, pdu.destination_addr, info, payload, pdu.data_coding
            )
        else:
            text = decode(payload, pdu.data_coding)
            status = await self._store_text(pdu.source_addr, pdu.destination_addr, text)
        return make_response(pdu, status)

    def _receipt(self, pdu: Pdu, receipt: Receipt) -> asyncio.Future[Pdu | None]:
        """The receipt's answer: OK once its batch is stored, else "retry later"."""
        if self._settings.receipt_group:
            receipt = replace(receipt, receipt_group=self._settings.receipt_group)
        started = tracing.now_ns()
        answer: asyncio.Future[Pdu | None] = asyncio.get_running_loop().create_future()

        def stored(match: ReceiptMatch | None, error: BaseException | None) -> None:
            if answer.done():  # cancelled by whoever held it: nothing to answer
                return
            if error is not None or match is None:
                log.warning("%s: storing a receipt failed (SMSC asked to retry): %s",
                            self._name, error)  # fmt: skip
                answer.set_result(make_response(pdu, RETRY_LATER))
                return
            try:
                self._receipt_stored(match, started)
            except Exception:  # the receipt is stored: it is acknowledged regardless
                log.exception("%s: recording a stored receipt's metrics failed", self._name)
            answer.set_result(make_response(pdu, OK))

        try:
            self._outcomes.receipt(receipt, stored)
        except RuntimeError as exc:  # closing: the SMSC will send it again
            log.warning("%s: receipt not stored (%s); SMSC asked to retry", self._name, exc)
            answer.set_result(make_response(pdu, RETRY_LATER))
        return answer

    def _receipt_stored(self, match: ReceiptMatch, started: int) -> None:
        """Counters, metrics and the receipt's span, for a receipt now stored."""
        receipt = match.receipt
        self._counters.receipts += 1
        if match.message_id is None:
            self._counters.receipts_unmatched += 1
            self._metrics.receipts_unmatched.inc()
        submitted_at = tracing.submitted_at(match.trace_context)
        latency = None if submitted_at is None else receipt.at - submitted_at
        self._metrics.receipt(receipt.state.value, latency)
        if tracing.enabled():
            links = tracing.link_to(match.trace_context)
            # A message whose trace was not sampled gets no receipt span either.
            if not links or links[0].context.trace_flags.sampled:
                self._receipt_span(match, started, links)

    def _deliver_sm_attributes(self) -> dict[str, str | int]:
        """What every span about a deliver_sm from this bind says (messaging conventions)."""
        return {
            **tracing.messaging_attributes("smpp", "receive", "deliver_sm", self._name),
            tracing.SERVER_ADDRESS: self._settings.host,
            tracing.SERVER_PORT: self._settings.port,
        }

    def _receipt_span(self, match: ReceiptMatch, started: int, links: list[Link]) -> None:
        """The receipt as a span of a new trace, linked to the submit span it answers.

        SMPP carries no trace context and a receipt may come hours after its submit,
        so it is not a child of it; the store kept the submit span's context, and the
        link joins the two. Recorded after the match, when the message id is known.
        """
        receipt = match.receipt
        attributes: dict[str, str | int] = {
            **self._deliver_sm_attributes(),
            "smpp.message_id": receipt.smsc_message_id,
            "smsmesh.receipt.state": receipt.state.value,
            "smsmesh.receipt.matched": match.message_id is not None,
        }
        if match.message_id is not None:
            attributes.update(tracing.message_attributes(match.message_id))
        if match.part is not None:
            attributes["smsmesh.part"] = match.part
        if match.message_status is not None:
            attributes["smsmesh.message.status"] = match.message_status.value
        if receipt.error_code:
            attributes["smsmesh.receipt.error_code"] = receipt.error_code
        span = tracing.tracer().start_span(
            f"receipt {self._name}",
            context=otel_context.Context(),  # a new trace
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
            start_time=started,
        )
        span.end()

    async def _store_text(self, source: str, destination: str, text: str) -> int:
        application, webhook_url = self._settings.inbound_target(destination)
        message_id = new_message_id()
        # An MO starts a trace of its own; its webhook to the application continues it.
        with tracing.tracer().start_as_current_span(
            f"inbound {self._name}",
            context=otel_context.Context(),
            kind=SpanKind.CONSUMER,
            attributes={
                **tracing.message_attributes(message_id),
                **self._deliver_sm_attributes(),
                **({tracing.APPLICATION: application} if application else {}),
            },
        ) as span:
            message = InboundMessage(
                id=message_id,
                connection=self._name,
                source=source,
                destination=destination,
                text=text,
                received_at=time.time(),
                application=application,
                trace_context=tracing.inject(span) if span.is_recording() else {},
                webhook_url=webhook_url,
            )
            try:
                await self._mos.submit(message)
            except Exception as exc:
                log.warning("%s: storing an MO failed (SMSC asked to retry): %s", self._name, exc)
                tracing.fail(span, "store_failed")
                return RETRY_LATER
        self._counters.mo += 1
        self._metrics.inbound.inc()
        return OK

    async def _record_inbound(self, messages: Sequence[InboundMessage]) -> list[None]:
        await self._store.record_inbound(messages)
        return [None] * len(messages)

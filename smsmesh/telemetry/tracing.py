"""OpenTelemetry tracing for every smsmesh process, configured by the standard OTEL_* env.

One trace follows a message across processes that never call each other: the router
stores the W3C context of its `accept` span with the message, the connector continues
from it when it claims the message, and replaces it after the submit with the context
of its `submit_sm` span, so the delivery receipt (hours later, over SMPP, which has no
headers) can be recorded as a new trace *linked* to that submit, and the webhook back
to the application continues the message's trace.

The stored carrier is a plain `dict[str, str]`: `traceparent` / `tracestate`, plus
`smsmesh-submitted-at` (unix seconds of the submit), which the connector reads back to
measure receipt latency even with tracing off. Only `traceparent` and `tracestate` ever
leave smsmesh.

Cost: `setup_tracing` installs an SDK provider only when spans can go somewhere
(OTEL_TRACES_EXPORTER is not `none`, an OTLP endpoint is set, OTEL_SDK_DISABLED is not
true). Otherwise the API's no-op tracer answers every call and no span is recorded;
the caller's context still passes through untouched. When exporting over OTLP, spans
are smsmesh's own lighter `RecordingSpan`s (spans.py) handed to the SDK's
`BatchSpanProcessor` (its thread encodes them with otlp.py and sends them; OTEL_BSP_*
tune it), and `shutdown_tracing` flushes what is left — every process calls it on its
SIGTERM path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from smsmesh.telemetry.spans import Active, RecordingSpan

log = logging.getLogger("smsmesh.telemetry")

TRACER_NAME = "smsmesh"
SUBMITTED_AT = "smsmesh-submitted-at"
W3C_KEYS = ("traceparent", "tracestate")
MAX_HEADER = 512

# Attribute names (OpenTelemetry semantic conventions where they fit, `smsmesh.*` else).
MESSAGE_ID = "smsmesh.message.id"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_DESTINATION = "messaging.destination.name"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
APPLICATION = "smsmesh.application"
ROUTE = "smsmesh.route"
CONNECTION = "smsmesh.connection"

_propagator = TraceContextTextMapPropagator()
_provider: Any = None  # the SDK TracerProvider this process installed, if any


def _exporters() -> list[str]:
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    return [name.strip().lower() for name in raw.split(",") if name.strip()]


def _endpoint() -> str | None:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )


def tracing_wanted() -> bool:
    """Whether the environment asks for spans to be exported somewhere."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    names = _exporters()
    if not names or names == ["none"]:
        return False
    if "console" in names:
        return True
    return "otlp" in names and _endpoint() is not None


def setup_tracing(default_service_name: str, **resource: str) -> bool:
    """Install the SDK tracer provider if the environment asks for export; idempotent.

    `default_service_name` applies unless OTEL_SERVICE_NAME (or service.name in
    OTEL_RESOURCE_ATTRIBUTES) names the service. `resource` adds attributes such as
    `smsmesh.connection`. Returns True when spans are exported.
    """
    global _provider
    if _provider is not None:
        return True
    if not tracing_wanted():
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from smsmesh.telemetry.otlp import OtlpSpanExporter
    from smsmesh.telemetry.spans import SpanTracer

    attributes: dict[str, str] = {"service.namespace": "smsmesh", **resource}
    named = bool(os.environ.get("OTEL_SERVICE_NAME")) or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if not named:
        attributes["service.name"] = default_service_name
    provider = TracerProvider(resource=Resource.create(attributes))  # sampler from env
    exporters: list[SpanExporter] = []
    for name in _exporters():
        if name == "otlp" and _endpoint() is not None:
            protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            if protocol != "http/protobuf":
                log.warning("OTLP protocol %r is not supported; using http/protobuf", protocol)
            exporters.append(OtlpSpanExporter())  # endpoint, headers, timeout from env
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            log.warning("OTEL_TRACES_EXPORTER %r is not supported (otlp, console, none)", name)
    if not exporters:
        return False
    processors = [BatchSpanProcessor(exporter) for exporter in exporters]
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _provider = provider
    base: trace.Tracer = _tracer
    if len(exporters) == 1 and isinstance(exporters[0], OtlpSpanExporter):
        # smsmesh's lighter spans (see spans.py); other exporters get the SDK's.
        scope = InstrumentationScope(TRACER_NAME)
        base = SpanTracer(provider.sampler, processors[0], provider.resource, scope)
    global _sampling_tracer
    _sampling_tracer = _ParentBasedTracer(base) if _parent_based() else base
    log.info("tracing: exporting spans (%s)", ", ".join(type(e).__name__ for e in exporters))
    return True


def shutdown_tracing() -> None:
    """Flush queued spans and stop the exporter threads (no-op without a provider)."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()


# A proxy: it delegates to whatever provider `setup_tracing` installs later.
_tracer = trace.get_tracer(TRACER_NAME)


class _NullTracer(trace.NoOpTracer):
    """The tracer while tracing is off: a span is the parent's non-recording span.

    The API's own no-op path also attaches and detaches a context and runs decorator
    machinery for every span, which measured about a tenth of a busy connector's CPU with
    tracing off. Here nothing becomes current; the span still names the parent's context,
    so a carrier injected from it passes the caller's trace through.
    """

    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: otel_context.Context | None = None, *args: Any, **kwargs: Any
    ) -> contextlib.nullcontext[Span]:
        return contextlib.nullcontext(trace.get_current_span(context))


_null_tracer = _NullTracer()


def _parent_based() -> bool:
    """Whether the sampler (OTEL_TRACES_SAMPLER, default parentbased_always_on) follows
    the parent's decision, so a child of an unsampled span is never sampled."""
    name = os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    return name.startswith("parentbased_")


class _ParentBasedTracer(trace.Tracer):
    """A tracer (smsmesh's or the SDK's), minus the work of creating spans nobody will
    record.

    With a parent-based sampler a span whose parent was not sampled is a non-recording
    span by definition; a tracer still runs the sampler, makes ids and a span object,
    and attaches a context for each. Sampling one message in ten, that was most of what
    tracing cost. Here such a span is simply the parent's own non-recording span, made
    current for its block: a carrier injected from it still says "not sampled". A root
    span the sampler drops is made current the same light way.
    """

    def __init__(self, delegate: trace.Tracer) -> None:
        self._delegate = delegate

    @staticmethod
    def _unsampled_parent(context: otel_context.Context | None) -> Span | None:
        parent = trace.get_current_span(context)
        span_context = parent.get_span_context()
        if (
            span_context.is_valid
            and not span_context.trace_flags.sampled
            and not parent.is_recording()
        ):
            return parent
        return None

    def start_span(
        self, name: str, context: otel_context.Context | None = None, *args: Any, **kwargs: Any
    ) -> Span:
        parent = self._unsampled_parent(context)
        if parent is not None:
            return parent  # ending it is a no-op: it is not recording
        return self._delegate.start_span(name, context, *args, **kwargs)

    def start_as_current_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Any:
        parent = self._unsampled_parent(context)
        if parent is not None:
            if context is None:  # the parent is the current span already: keep it
                return contextlib.nullcontext(parent)
            return Active(parent)  # current for the block: nested spans see "unsampled"
        span = self._delegate.start_span(
            name, context, kind, attributes, links, start_time,
            record_exception, set_status_on_exception,
        )  # fmt: skip
        if isinstance(span, RecordingSpan) or not span.is_recording():
            return Active(span, end_on_exit)  # smsmesh's own span, or a dropped root
        return trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )


_sampling_tracer: trace.Tracer = _tracer


def tracer() -> trace.Tracer:
    if _provider is None:
        return _null_tracer
    return _sampling_tracer


def enabled() -> bool:
    return _provider is not None


# -- context carriers -------------------------------------------------------------------------


# The common stored carrier: version 00, no tracestate. Anything else (other versions,
# surrounding whitespace, a tracestate, malformed values) goes to the W3C propagator.
_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def extract(carrier: Mapping[str, str] | None) -> otel_context.Context:
    """The context a stored or received W3C carrier names (an empty context if none).

    The same context the W3C propagator extracts, read directly for the carrier every
    stored message holds (one per message on the connector's hot path).
    """
    if not carrier:
        return otel_context.Context()
    header = carrier.get("traceparent")
    if header is not None and "tracestate" not in carrier:
        match = _TRACEPARENT_00.fullmatch(header)
        if match is not None:
            trace_id, span_id = int(match[1], 16), int(match[2], 16)
            if trace_id and span_id:
                flags = TraceFlags(int(match[3], 16))
                span = NonRecordingSpan(SpanContext(trace_id, span_id, True, flags))
                return trace.set_span_in_context(span, otel_context.Context())
    return _propagator.extract(carrier, context=otel_context.Context())


def inject(span: Span | None = None) -> dict[str, str]:
    """W3C headers naming `span` (default: the current span); empty if it is invalid.

    What the W3C propagator writes, formatted directly."""
    span_context = (span if span is not None else trace.get_current_span()).get_span_context()
    if not span_context.is_valid:
        return {}
    carrier = {
        "traceparent": f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
        f"-{span_context.trace_flags:02x}"
    }
    if span_context.trace_state:
        carrier["tracestate"] = span_context.trace_state.to_header()
    return carrier


def w3c_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """`traceparent` / `tracestate` from incoming headers, bounded in size."""
    out = {}
    for name in W3C_KEYS:
        value = headers.get(name)
        if value and len(value) <= MAX_HEADER:
            out[name] = value
    return out


def link_to(carrier: Mapping[str, str] | None) -> list[Link]:
    """A Link to the span a carrier names, as a list (empty when it names none)."""
    span_context = trace.get_current_span(extract(carrier)).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def submitted_at(carrier: Mapping[str, str] | None) -> float | None:
    """The submit time the connector stored with the message, if any."""
    if not carrier or SUBMITTED_AT not in carrier:
        return None
    try:
        return float(carrier[SUBMITTED_AT])
    except ValueError:
        return None


def messaging_attributes(
    system: str, operation_type: str, operation: str, destination: str
) -> dict[str, str | int]:
    """OpenTelemetry messaging attributes: which system, what kind of step, which queue."""
    return {
        MESSAGING_SYSTEM: system,
        MESSAGING_OPERATION_TYPE: operation_type,
        MESSAGING_OPERATION_NAME: operation,
        MESSAGING_DESTINATION: destination,
    }


def message_attributes(message_id: str) -> dict[str, str]:
    """The two attributes every span about a message carries, so one query finds them all."""
    return {MESSAGE_ID: message_id, MESSAGING_MESSAGE_ID: message_id}


def fail(span: Span, error_type: str, description: str | None = None) -> None:
    """Mark `span` failed with a short, low-cardinality `error.type`."""
    if span.is_recording():
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, description))


def ns(seconds: float) -> int:
    """Unix seconds as the nanoseconds a span start/end time takes."""
    return int(seconds * 1e9)


def now_ns() -> int:
    return time.time_ns()


__all__ = [
    "Link",
    "SpanKind",
    "extract",
    "inject",
    "link_to",
    "setup_tracing",
    "shutdown_tracing",
    "tracer",
]

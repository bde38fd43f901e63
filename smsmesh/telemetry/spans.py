"""smsmesh's tracer: the SDK's sampling, ids and batching, with a lighter recording span.

Why not the SDK's own spans: creating one with ten attributes costs about 30 us here
(a lock per span and per attribute, a validation pass over every value, a bounded
container per list), and each message makes four to six of them. `RecordingSpan` is
a plain slotted object whose attributes are a dict, about 9 us all in. What the SDK
does well is kept: the sampler (OTEL_TRACES_SAMPLER, read by the SDK's
TracerProvider), the BatchSpanProcessor (OTEL_BSP_*), the resource and the exporter.

A `RecordingSpan` offers what the SDK's ReadableSpan offers an exporter (`context`,
`parent`, `attributes`, `events`, `links`, `status`, times, resource, scope, dropped
counts), so both smsmesh's OTLP encoder and the SDK's accept it. Values are not
checked as they are set: the encoder drops a value OTLP cannot carry, as the SDK's
would. Attribute, event and link counts are capped at the SDK's default of 128.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

if TYPE_CHECKING:  # the SDK is imported only once tracing is set up
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, SpanProcessor
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

LIMIT = 128  # attributes, events and links per span: the SDK's defaults

_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_NOT_SAMPLED = TraceFlags(TraceFlags.RANDOM_TRACE_ID)
_random_bits = random.getrandbits


class RecordingSpan(trace.Span):
    """A sampled span being recorded; handed to the span processor when it ends."""

    __slots__ = (
        "_processor", "_record_exception", "_set_status_on_exception", "attributes",
        "context", "dropped_attributes", "dropped_events", "dropped_links", "end_time",
        "events", "instrumentation_scope", "kind", "links", "name", "parent", "resource",
        "start_time", "status",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        tracer: SpanTracer,
        attributes: types.Attributes,
        links: Sequence[Link],
        start_time: int | None,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.attributes: dict[str, types.AnyValue] = {}
        self.events: list[Event] = []
        self.links: list[Link] = list(links[:LIMIT])
        self.status = _UNSET
        self.start_time = start_time or time.time_ns()
        self.end_time: int | None = None
        self.resource = tracer.resource
        self.instrumentation_scope = tracer.scope
        self.dropped_attributes = 0
        self.dropped_events = 0
        self.dropped_links = len(links) - len(self.links)
        self._processor = tracer.processor
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        if attributes:
            self.set_attributes(attributes)

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        attributes = self.attributes
        if self.end_time is not None:
            return
        if key in attributes:
            del attributes[key]  # a replaced key moves to the end, as in the SDK
        elif len(attributes) >= LIMIT:
            self.dropped_attributes += 1
            return
        attributes[key] = tuple(value) if value.__class__ is list else value

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self.end_time is not None:
            return
        if len(self.events) >= LIMIT:
            self.dropped_events += 1
            return
        from opentelemetry.sdk.trace import Event

        self.events.append(Event(name, attributes, timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self.end_time is not None or not context.is_valid:
            return
        if len(self.links) >= LIMIT:
            self.dropped_links += 1
            return
        self.links.append(Link(context, attributes))

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK: OK is final, UNSET is never set, a description goes with ERROR."""
        if self.end_time is not None or self.status.status_code is StatusCode.OK:
            return
        if not isinstance(status, Status):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self.status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """An `exception` event, with the attributes OpenTelemetry's conventions name."""
        kind = type(exception)
        module = kind.__module__
        event: dict[str, types.AnyValue] = {
            "exception.type": kind.__qualname__
            if module in (None, "builtins")
            else f"{module}.{kind.__qualname__}",
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        event.update(attributes or {})
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is None:
            self.end_time = end_time or time.time_ns()
            self._processor.on_end(self)  # type: ignore[arg-type]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None:
            failed(self, exc_val, escaped=True)
        self.end()

    def __repr__(self) -> str:
        return f"RecordingSpan({self.name!r}, {self.context!r})"


def failed(span: RecordingSpan, exc: BaseException, escaped: bool) -> None:
    """What leaving a span's block by an exception records, if the span asked for it
    (`escaped` as the SDK says it: True for `with span`, False for a current span)."""
    if span.end_time is not None:
        return
    if span._record_exception:
        span.record_exception(exc, escaped=escaped)
    if span._set_status_on_exception:
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class SpanTracer(trace.Tracer):
    """Starts `RecordingSpan`s for what the sampler keeps; a non-recording span else."""

    def __init__(
        self,
        sampler: Sampler,
        processor: SpanProcessor,
        resource: Resource,
        scope: InstrumentationScope,
    ) -> None:
        self.sampler = sampler
        self.processor = processor
        self.resource = resource
        self.scope = scope

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent: SpanContext | None = trace.get_current_span(context).get_span_context()
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
            random_id = parent.trace_flags.random_trace_id
        else:
            parent, trace_id, random_id = None, _random_bits(128) or 1, True
        links = links or ()
        decision = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
        # sampling.Decision: DROP 0, RECORD_ONLY 1, RECORD_AND_SAMPLE 2 (its methods are untyped)
        verdict = decision.decision.value
        flags = _SAMPLED if verdict == 2 else _NOT_SAMPLED
        if not random_id:
            flags = TraceFlags(flags & ~TraceFlags.RANDOM_TRACE_ID)
        span_context = SpanContext(
            trace_id, _random_bits(64) or 1, False, flags, decision.trace_state
        )
        if not verdict:
            return trace.NonRecordingSpan(span_context)
        return RecordingSpan(
            name, span_context, parent, kind, self, decision.attributes, links, start_time,
            record_exception, set_status_on_exception,
        )  # fmt: skip

    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Active:
        span = self.start_span(
            name, context, kind, attributes, links, start_time,
            record_exception, set_status_on_exception,
        )  # fmt: skip
        return Active(span, end_on_exit)


class Active:
    """Makes a span current for a block, and (for a recording span) records an escaping
    exception and ends it: `trace.use_span` without its generator machinery."""

    __slots__ = ("_end", "_span", "_token")

    def __init__(self, span: trace.Span, end_on_exit: bool = True) -> None:
        self._span = span
        self._end = end_on_exit and isinstance(span, RecordingSpan)
        self._token: Any = None

    def __enter__(self) -> trace.Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self._token)
        span = self._span
        if isinstance(span, RecordingSpan):
            if isinstance(exc_val, Exception):  # not a cancellation, as use_span
                failed(span, exc_val, escaped=False)
            if self._end:
                span.end()

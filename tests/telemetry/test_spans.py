"""smsmesh's lighter spans against the OpenTelemetry SDK's: the same calls through the API
must export the same spans (ids and times aside), sample the same way, and flow through
the SDK's BatchSpanProcessor to the exporter."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from smsmesh.telemetry.otlp import encode_request
from smsmesh.telemetry.spans import LIMIT, RecordingSpan, SpanTracer

RESOURCE = Resource.create({"service.name": "smsmesh-connector"})
REMOTE = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1))


class Collect(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def sdk_tracer(sampler: Sampler = ALWAYS_ON) -> tuple[trace.Tracer, Collect]:
    collect = Collect()
    provider = TracerProvider(sampler=sampler, resource=RESOURCE)
    provider.add_span_processor(collect)
    return provider.get_tracer("smsmesh"), collect


def our_tracer(sampler: Sampler = ALWAYS_ON) -> tuple[trace.Tracer, Collect]:
    collect = Collect()
    return SpanTracer(sampler, collect, RESOURCE, InstrumentationScope("smsmesh")), collect


def everything(tracer: trace.Tracer) -> None:
    """Every call smsmesh and a user of the API might make on a span."""
    remote = trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    with tracer.start_as_current_span(
        "dispatch sim", context=remote, kind=SpanKind.CONSUMER, attributes={"a": 1}
    ) as outer:
        outer.set_attribute("smsmesh.targets", ["sim", "backup"])  # a list is kept as is
        outer.set_attributes({"smsmesh.attempt": 2, "a": "replaced: moves to the end"})
        outer.add_event("throttled", {"smsmesh.backoff_s": 0.5})
        outer.update_name("dispatch sim (renamed)")
        outer.set_status(StatusCode.ERROR, "first")
        outer.set_status(Status(StatusCode.UNSET))  # ignored
        with tracer.start_as_current_span("submit_sm sim", kind=SpanKind.CLIENT) as inner:
            inner.set_status(Status(StatusCode.OK))
            inner.set_status(StatusCode.ERROR, "ignored: OK is final")
        with pytest.raises(ValueError, match="bad PDU"), tracer.start_as_current_span("encode"):
            raise ValueError("bad PDU")  # recorded as an event and an ERROR status
        with (
            pytest.raises(KeyError),
            tracer.start_as_current_span("quiet", record_exception=False),
        ):
            raise KeyError("status only")
        with pytest.raises(RuntimeError), tracer.start_span("used directly") as direct:
            raise RuntimeError("escaped=True through the span's own __exit__")
        assert not direct.is_recording()
    outer.set_attribute("after", "the end: ignored")
    receipt = tracer.start_span(
        "receipt sim",
        context=trace.set_span_in_context(trace.INVALID_SPAN),
        kind=SpanKind.CONSUMER,
        links=[Link(REMOTE, {"smsmesh.link": "submit"})],
        start_time=1_700_000_000_000_000_000,
    )
    receipt.end(end_time=1_700_000_001_000_000_000)
    receipt.end()  # a second end is a no-op


def normalised(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    """The SDK-encoded request with ids numbered by first appearance and times zeroed
    (they differ by nature), except for the explicit receipt times."""
    request = encode_spans(spans)
    ids: dict[bytes, bytes] = {b"": b""}

    def number(value: bytes) -> bytes:
        return ids.setdefault(value, len(ids).to_bytes(8, "big"))

    for span in request.resource_spans[0].scope_spans[0].spans:
        span.trace_id, span.span_id = number(span.trace_id), number(span.span_id)
        span.parent_span_id = number(span.parent_span_id)
        if span.name != "receipt sim":
            span.start_time_unix_nano = span.end_time_unix_nano = 0
        for event in span.events:
            event.time_unix_nano = 0
            for attribute in event.attributes:
                if attribute.key == "exception.stacktrace":  # frame lines differ
                    attribute.value.string_value = attribute.value.string_value[:30]
        for link in span.links:
            link.trace_id, link.span_id = number(link.trace_id), number(link.span_id)
    return request


def test_the_same_calls_export_the_same_spans_as_the_sdk() -> None:
    theirs, from_sdk = sdk_tracer()
    ours, from_us = our_tracer()
    everything(theirs)
    everything(ours)
    assert all(isinstance(span, RecordingSpan) for span in from_us.spans)
    assert normalised(from_us.spans) == normalised(from_sdk.spans)
    # And smsmesh's encoder agrees with the SDK's on these spans too.
    assert ExportTraceServiceRequest.FromString(encode_request(from_us.spans)) == encode_spans(
        from_us.spans
    )


def test_trace_ids_parents_and_flags() -> None:
    tracer, collect = our_tracer()
    root = tracer.start_span("root")
    assert root.get_span_context().trace_flags == TraceFlags(0x03)  # sampled, random id
    child = tracer.start_span("child", context=trace.set_span_in_context(root))
    remote_child = tracer.start_span(
        "remote child", context=trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    )
    for span in (child, root, remote_child):
        span.end()
    child_span, root_span, remote_span = collect.spans
    assert child_span.parent == root.get_span_context()
    assert child_span.context.trace_id == root.get_span_context().trace_id
    assert root_span.parent is None
    # A remote parent without the random flag: its trace id is kept, the flag is not set.
    assert remote_span.context.trace_id == REMOTE.trace_id
    assert remote_span.context.trace_flags == TraceFlags(0x01)
    assert remote_span.parent == REMOTE


@pytest.mark.parametrize("make", [sdk_tracer, our_tracer], ids=["sdk", "smsmesh"])
def test_sampling_follows_the_sampler(
    make: Callable[[Sampler], tuple[trace.Tracer, Collect]],
) -> None:
    tracer, collect = make(ParentBased(TraceIdRatioBased(0.25)))
    roots = [tracer.start_span("root") for _ in range(2000)]
    for span in roots:
        assert span.is_recording() == span.get_span_context().trace_flags.sampled
        child = tracer.start_span("child", context=trace.set_span_in_context(span))
        assert child.is_recording() == span.is_recording()  # children follow their parent
        child.end()
        span.end()
    sampled = sum(span.get_span_context().trace_flags.sampled for span in roots)
    assert 300 < sampled < 700  # about a quarter of 2000 roots
    assert len(collect.spans) == 2 * sampled  # each sampled root and its child, no others


def test_counts_are_capped_as_the_sdk_caps_them() -> None:
    tracer, collect = our_tracer()
    span = tracer.start_span("many", links=[Link(REMOTE)] * (LIMIT + 2))
    for n in range(LIMIT + 5):
        span.set_attribute(f"k{n}", n)
        span.add_event(f"e{n}")
    span.set_attribute("k0", "an existing key is replaced even when full")
    span.end()
    (done,) = collect.spans
    assert (len(done.attributes), done.dropped_attributes) == (LIMIT, 5)
    assert done.attributes["k0"] == "an existing key is replaced even when full"
    assert (len(done.events), done.dropped_events) == (LIMIT, 5)
    assert (len(done.links), done.dropped_links) == (LIMIT, 2)


def test_spans_reach_the_exporter_through_the_sdks_batch_processor() -> None:
    exported: list[ReadableSpan] = []

    class Keep(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            exported.extend(spans)  # type: ignore[call-overload]
            return SpanExportResult.SUCCESS

    processor = BatchSpanProcessor(Keep())
    tracer = SpanTracer(ParentBased(ALWAYS_ON), processor, RESOURCE, InstrumentationScope("s"))
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
        pass
    processor.shutdown()  # flushes
    assert [span.name for span in exported] == ["inner", "outer"]
    assert exported[0].parent == exported[1].context

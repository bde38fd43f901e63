"""smsmesh's OTLP span encoder against the OpenTelemetry SDK's own: for the same finished
spans, the bytes smsmesh writes must decode (through opentelemetry-proto) into exactly the
request the SDK's encoder builds; and the exporter must deliver them to a real OTLP/HTTP
receiver on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from smsmesh.telemetry.otlp import OtlpSpanExporter, encode_request
from tests.telemetry.otlp import OtlpReceiver


class Collect(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def provider(name: str, limits: SpanLimits | None = None) -> tuple[TracerProvider, Collect]:
    collect = Collect()
    tp = TracerProvider(
        resource=Resource.create({"service.name": name, "smsmesh.connection": "sim"}),
        span_limits=limits,
    )
    tp.add_span_processor(collect)
    return tp, collect


def assert_same_request(spans: list[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert ours == encode_spans(spans)


REMOTE = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "opaque"), ("other", "x1")]),
)


def test_every_field_a_span_can_carry_matches_the_sdk_encoder() -> None:
    tp, collect = provider("smsmesh-router", SpanLimits(max_attributes=12, max_events=2))
    tracer = tp.get_tracer("smsmesh", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.26")
    other = tp.get_tracer("smsmesh.store")  # a second scope in the same resource
    remote = trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    with tracer.start_as_current_span(
        "POST /v1/messages",
        context=remote,  # parent from another process, with a tracestate
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "POST",
            "http.response.status_code": 202,
            "smsmesh.route.failover": False,
            "smsmesh.targets": ["sim", "backup"],
            "ratio": 0.25,
            "negative": -7,
            "big": 2**62,
            "flags": [True, False],
            "counts": [1, 2, 3],
            "weights": [0.5, 1.5],
            "empty": [],
            "text.unicode": "Grüße, 你好 🎉",
        },
    ) as server:
        server.add_event("retry", {"attempt": 2, "reason": "throttled"})
        server.add_event("bare")
        server.add_event("dropped by the limit")
        server.set_attribute("over.the.limit", "evicts the oldest")
        with tracer.start_as_current_span("accept sim", kind=SpanKind.PRODUCER) as accept:
            accept.set_status(Status(StatusCode.ERROR, "store unavailable"))
        with other.start_as_current_span("claim", kind=SpanKind.CONSUMER) as claim:
            claim.set_status(Status(StatusCode.OK))
    receipt = tracer.start_span(
        "receipt sim",
        kind=SpanKind.CONSUMER,
        links=[Link(REMOTE, {"smsmesh.link": "submit"}), Link(accept.get_span_context())],
    )
    receipt.end()
    client = tracer.start_span("webhook", kind=SpanKind.CLIENT)
    client.end()
    internal = tracer.start_span("internal")
    internal.end()

    spans = collect.spans
    assert {s.kind for s in spans} == set(SpanKind)
    assert any(s.dropped_attributes for s in spans)
    assert any(s.dropped_events for s in spans)
    assert_same_request(spans)


def test_spans_of_two_processes_are_grouped_by_resource() -> None:
    router, from_router = provider("smsmesh-router")
    connector, from_connector = provider("smsmesh-connector")
    for tp in (router, connector, router):
        tp.get_tracer("smsmesh").start_span("step", attributes={"n": 1}).end()
    spans = [from_router.spans[0], from_connector.spans[0], from_router.spans[1]]
    assert_same_request(spans)
    decoded = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert [len(r.scope_spans[0].spans) for r in decoded.resource_spans] == [2, 1]


attribute_values: st.SearchStrategy[Any] = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=8), max_size=4),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=4),
    st.lists(st.booleans(), max_size=4),
)


@settings(max_examples=150, deadline=None)
@given(
    attributes=st.dictionaries(st.text(min_size=1, max_size=20), attribute_values, max_size=12),
    name=st.text(st.characters(exclude_categories=("Cs",)), max_size=60),
)
def test_any_attributes_encode_as_the_sdk_encodes_them(
    attributes: Mapping[str, Any], name: str
) -> None:
    tp, collect = provider("smsmesh-connector")
    span = tp.get_tracer("smsmesh").start_span(name, attributes=attributes)
    span.add_event("e", attributes)
    span.end()
    assert_same_request(collect.spans)


def test_a_value_the_sdk_cannot_encode_is_dropped_alike() -> None:
    tp, collect = provider("smsmesh-router")
    # Out of int64 range: protobuf refuses it, the SDK logs and drops the attribute.
    tp.get_tracer("smsmesh").start_span("x", attributes={"ok": 1, "huge": 2**64}).end()
    assert_same_request(collect.spans)
    (span,) = (
        ExportTraceServiceRequest.FromString(encode_request(collect.spans))
        .resource_spans[0]
        .scope_spans[0]
        .spans
    )
    assert [a.key for a in span.attributes] == ["ok"]


@pytest.fixture
def exporter_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def test_the_exporter_delivers_to_a_real_receiver(
    otlp: OtlpReceiver, exporter_env: pytest.MonkeyPatch
) -> None:
    exporter_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint)
    exporter_env.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    exporter = OtlpSpanExporter()
    assert exporter.fast, "this SDK's exporter has no HTTP client to hand smsmesh's bytes to"
    tp, collect = provider("smsmesh-router")
    with tp.get_tracer("smsmesh").start_as_current_span("accept sim") as span:
        span.set_attribute("smsmesh.message.id", "m-1")
    try:
        result = await asyncio.to_thread(exporter.export, collect.spans)
    finally:
        exporter.shutdown()
    assert result.name == "SUCCESS"
    (received,) = await otlp.wait_for(lambda spans: len(spans) == 1, timeout=10)
    assert (received.service, received.name) == ("smsmesh-router", "accept sim")
    assert received.attributes == {"smsmesh.message.id": "m-1"}
    assert received.span_id == f"{span.get_span_context().span_id:016x}"

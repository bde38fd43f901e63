"""OTLP/protobuf encoding of finished spans, and the exporter that sends it.

Why smsmesh encodes spans itself: the OpenTelemetry SDK's encoder builds a protobuf
object for every span, attribute and value before serialising them, about 30 us a span
here, more than the span's own creation; with six spans per message that was the
largest single cost of tracing. The wire format of the few messages a span export
needs (`ExportTraceServiceRequest` down to `AnyValue`, opentelemetry-proto's
trace/v1 and common/v1) is small and stable, so the bytes are written directly, with
each attribute key, resource and scope encoded once. The result is checked in the
tests to decode, through opentelemetry-proto, into exactly what the SDK's encoder
produces for the same spans.

`OtlpSpanExporter` is the SDK's OTLP/HTTP exporter (endpoint, headers, TLS,
compression, timeout and retries from the standard `OTEL_EXPORTER_OTLP_*` variables)
with only the encoding replaced. It reaches for the SDK's HTTP client, a private
attribute; should a future SDK lack it, it exports through the SDK's own path.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext

log = logging.getLogger("smsmesh.telemetry")

# Span.flags / Link.flags: the W3C flags are not repeated; these say whether the
# parent (linked) context came from another process.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_INT64 = 1 << 63

_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = tuple(_varint(n) for n in range(128))


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte(s), the length, the payload."""
    size = len(payload)
    return tag + (_SMALL[size] if size < 128 else _varint(size)) + payload


def _text(tag: bytes, value: str) -> bytes:
    # A lone surrogate cannot be UTF-8; the SDK's encoder would fail the whole batch.
    return _field(tag, value.encode("utf-8", "replace"))


def _any_value(value: Any) -> bytes | None:
    """An `AnyValue` body; None for a value the SDK's encoder would also drop."""
    cls = value.__class__
    if cls is str:
        return _text(b"\x0a", value)
    if cls is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if cls is int:
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF) if -_INT64 <= value < _INT64 else None
    if cls is float:
        return b"\x21" + _pack_double(value)
    if value is None:
        return b""
    if isinstance(value, bool):
        return _any_value(bool(value))
    if isinstance(value, str):
        return _any_value(str(value))
    if isinstance(value, int):
        return _any_value(int(value))
    if isinstance(value, float):
        return _any_value(float(value))
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        items = [_any_value(item) for item in value]
        if None in items:
            return None
        return _field(b"\x2a", b"".join(_field(b"\x0a", item) for item in items))  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        return _field(b"\x32", _attributes(b"\x0a", value))
    return None


class _Keys(dict[str, bytes]):
    """`KeyValue.key` fields, encoded once per attribute name."""

    def __missing__(self, key: str) -> bytes:
        encoded = self[key] = _text(b"\x0a", key)
        return encoded


_keys = _Keys()


def _attributes(tag: bytes, attributes: Mapping[str, Any]) -> bytes:
    """Repeated `KeyValue` fields under `tag`, in the mapping's order."""
    out = []
    for key, value in attributes.items():
        body = _any_value(value)
        if body is None:
            log.debug("attribute %r: a value OTLP cannot carry, dropped", key)
            continue
        out.append(_field(tag, _keys[str(key)] + _field(b"\x12", body)))
    return b"".join(out)


def _flags(context: SpanContext | None) -> bytes:
    remote = context is not None and context.is_remote
    return _pack_fixed32(_HAS_IS_REMOTE | (_IS_REMOTE if remote else 0))


def _count(tag: bytes, value: int) -> bytes:
    return tag + _varint(value) if value else b""


def encode_span(span: ReadableSpan) -> bytes:
    """One `Span` message."""
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    parts = [
        b"\x0a\x10",
        context.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        context.span_id.to_bytes(8, "big"),
    ]
    if context.trace_state:
        parts.append(_text(b"\x1a", ",".join(f"{k}={v}" for k, v in context.trace_state.items())))
    if parent is not None:
        parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
    parts += (
        _text(b"\x2a", span.name),
        b"\x30",
        _SMALL[span.kind.value + 1],  # the API's INTERNAL is 0, OTLP's is 1
        b"\x39",
        _pack_fixed64(span.start_time or 0),
        b"\x41",
        _pack_fixed64(span.end_time or 0),
    )
    if span.attributes:
        parts.append(_attributes(b"\x4a", span.attributes))
    parts.append(_count(b"\x50", span.dropped_attributes))
    for event in span.events:
        body = b"\x09" + _pack_fixed64(event.timestamp) + _text(b"\x12", event.name)
        if event.attributes:
            body += _attributes(b"\x1a", event.attributes)
        parts.append(_field(b"\x5a", body + _count(b"\x20", event.dropped_attributes)))
    parts.append(_count(b"\x60", span.dropped_events))
    for link in span.links:
        linked = link.context
        body = b"\x0a\x10" + linked.trace_id.to_bytes(16, "big")
        body += b"\x12\x08" + linked.span_id.to_bytes(8, "big")
        if link.attributes:
            body += _attributes(b"\x22", link.attributes)
        body += _count(b"\x28", link.dropped_attributes) + b"\x35" + _flags(linked)
        parts.append(_field(b"\x6a", body))
    parts.append(_count(b"\x70", span.dropped_links))
    status = span.status
    if status is not None:
        body = _text(b"\x12", status.description) if status.description else b""
        body += _count(b"\x18", status.status_code.value)
        parts.append(_field(b"\x7a", body))
    parts += (b"\x85\x01", _flags(parent))
    return b"".join(parts)


class _Once:
    """Encoded resources and scopes, by object identity (each process has one or two)."""

    def __init__(self) -> None:
        self._encoded: dict[int, tuple[object, bytes]] = {}

    def get(self, key: object, encode: Any) -> bytes:
        cached = self._encoded.get(id(key))
        if cached is None or cached[0] is not key:
            cached = self._encoded[id(key)] = (key, encode(key))
        return cached[1]


_resources = _Once()
_scopes = _Once()


def _resource(resource: Any) -> bytes:
    return _field(b"\x0a", _attributes(b"\x0a", resource.attributes))


def _scope(scope: Any) -> bytes:
    if scope is None:
        return _field(b"\x0a", b"")
    body = _text(b"\x0a", scope.name) if scope.name else b""
    body += _text(b"\x12", scope.version) if scope.version else b""
    if scope.attributes:
        body += _attributes(b"\x1a", scope.attributes)
    return _field(b"\x0a", body)


def encode_request(spans: Iterable[ReadableSpan]) -> bytes:
    """An `ExportTraceServiceRequest` holding `spans`, grouped by resource and scope."""
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        by_scope = groups.setdefault(id(resource), (resource, {}))[1]
        by_scope.setdefault(id(scope), (scope, []))[1].append(encode_span(span))
    out = []
    for resource, by_scope in groups.values():
        body = [_resources.get(resource, _resource)]
        for scope, encoded in by_scope.values():
            scope_body = _scopes.get(scope, _scope) + b"".join(
                _field(b"\x12", span) for span in encoded
            )
            if scope is not None and scope.schema_url:
                scope_body += _text(b"\x1a", scope.schema_url)
            body.append(_field(b"\x12", scope_body))
        if resource.schema_url:
            body.append(_text(b"\x1a", resource.schema_url))
        out.append(_field(b"\x0a", b"".join(body)))
    return b"".join(out)


class OtlpSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, configured the same way, encoding with
    `encode_request`."""

    @property
    def fast(self) -> bool:
        """Whether spans go through smsmesh's encoder (the SDK's HTTP client is there)."""
        return callable(getattr(getattr(self, "_client", None), "export", None))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if getattr(self, "_shutdown", False) or not self.fast:
            return super().export(spans)
        try:
            data = encode_request(spans)
        except Exception:  # a bug here must not lose the batch: the SDK can encode it
            log.exception("encoding %d spans failed; using the SDK's encoder", len(spans))
            return super().export(spans)
        result = self._client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE

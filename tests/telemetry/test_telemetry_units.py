"""The telemetry modules on their own: when tracing turns on, what /metrics lets through,
how ports are read, and what the carriers hold."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import example, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from smsmesh.telemetry import metrics, tracing
from smsmesh.telemetry.http import MetricsServer, metrics_handler, metrics_port_from_env

Client = TestClient[web.Request, web.Application]

OTEL_VARS = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),  # no endpoint: nowhere to send spans
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                "OTEL_TRACES_EXPORTER": "none",
            },
            False,
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_tracing_is_wanted_only_when_spans_can_go_somewhere(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], wanted: bool
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert tracing.tracing_wanted() is wanted


def test_without_export_no_provider_is_installed_and_the_context_passes_through(
    clean_env: pytest.MonkeyPatch,
) -> None:
    assert tracing.setup_tracing("smsmesh-test") is False
    assert not tracing.enabled()
    parent = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    # The no-op tracer keeps the parent's context: a carrier injected under it names it.
    with tracing.tracer().start_as_current_span("x", context=tracing.extract(parent)) as span:
        assert not span.is_recording()
        assert tracing.inject(span) == parent


def test_carriers() -> None:
    ctx = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracing.SUBMITTED_AT: "1700000000.250",
    }
    [link] = tracing.link_to(ctx)
    assert format(link.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(link.context.span_id, "016x") == "b7ad6b7169203331"
    assert tracing.submitted_at(ctx) == 1700000000.25
    assert tracing.link_to({}) == []
    assert tracing.link_to({"traceparent": "garbage"}) == []
    assert tracing.submitted_at({tracing.SUBMITTED_AT: "soon"}) is None
    assert tracing.w3c_headers({"traceparent": "x" * 600, "tracestate": "a=b", "other": "c"}) == {
        "tracestate": "a=b"
    }


W3C = TraceContextTextMapPropagator()
HEX = "0123456789abcdef"
traceparents = st.one_of(
    st.builds(
        lambda *parts: "-".join(parts[:4]) + parts[4],
        st.sampled_from(["00", "00", "00", "01", "ff", "0G", "0"]),
        st.text(HEX, min_size=32, max_size=32) | st.text(HEX, max_size=33) | st.just("0" * 32),
        st.text(HEX, min_size=16, max_size=16) | st.text(HEX, max_size=17) | st.just("0" * 16),
        st.text(HEX, min_size=2, max_size=2) | st.sampled_from(["0X", "1"]),
        st.sampled_from(["", "", "", "-extra", " ", "\n"]),
    ),
    st.text(max_size=60),
)


@settings(max_examples=400, deadline=None)
@example("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None)
@example("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", "vendor=opaque")
@given(
    traceparent=traceparents,
    tracestate=st.none() | st.sampled_from(["", "vendor=opaque", "a=1,b=2", "bad state!"]),
)
def test_carriers_are_read_as_the_w3c_propagator_reads_them(
    traceparent: str, tracestate: str | None
) -> None:
    carrier = {"traceparent": traceparent, tracing.SUBMITTED_AT: "1.0"}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    ours = trace.get_current_span(tracing.extract(carrier)).get_span_context()
    theirs = trace.get_current_span(W3C.extract(carrier, context=Context())).get_span_context()
    assert ours == theirs
    assert ours.trace_state == theirs.trace_state
    # And written back out as the propagator writes it.
    written: dict[str, str] = {}
    W3C.inject(written, context=trace.set_span_in_context(trace.NonRecordingSpan(ours)))
    assert tracing.inject(trace.NonRecordingSpan(ours)) == written


@pytest.mark.parametrize(("raw", "port"), [("", 9464), ("0", 0), ("9100", 9100)])
def test_metrics_port_from_env(monkeypatch: pytest.MonkeyPatch, raw: str, port: int) -> None:
    monkeypatch.setenv("SMSMESH_METRICS_PORT", raw)
    assert metrics_port_from_env() == port


@pytest.mark.parametrize("raw", ["http", "-1", "70000"])
def test_a_bad_metrics_port_is_named(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("SMSMESH_METRICS_PORT", raw)
    with pytest.raises(ValueError, match="SMSMESH_METRICS_PORT"):
        metrics_port_from_env()


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler("s3cret"))
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic czNjcmV0"},
        {"Authorization": "s3cret"},
    ],
)
async def test_metrics_refuse_anything_but_the_token(
    client: Client, headers: dict[str, str]
) -> None:
    response = await client.get("/metrics", headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json())["error"] == "unauthorized"


async def test_metrics_run_scrape_hooks_and_render(client: Client) -> None:
    calls = []

    async def hook() -> None:
        calls.append(1)
        metrics.QUEUE_DEPTH.labels("unit-test").set(7)

    def broken() -> None:
        raise RuntimeError("a broken hook must not cost the scrape")

    remove, remove_broken = metrics.on_scrape(hook), metrics.on_scrape(broken)
    try:
        response = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await response.text()
    finally:
        remove()
        remove_broken()
    assert calls == [1]
    assert 'smsmesh_connection_queue_depth{connection="unit-test"} 7.0' in text
    for metric in metrics.ALL:
        assert f"# TYPE {metric._name}" in text


def test_every_metric_follows_the_naming_conventions() -> None:
    for metric in metrics.ALL:
        name = metric._name
        assert name.startswith("smsmesh_")
        kind = metric._type
        full = name + ("_total" if kind == "counter" else "")
        if "duration" in name or "latency" in name:
            assert name.endswith("_seconds"), name
        if kind == "counter":
            assert not name.endswith("_total")  # prometheus_client adds it
        assert full.islower()


async def test_the_connector_server_answers_probes() -> None:
    ready = False
    server = MetricsServer("127.0.0.1", 0, ready=lambda: ready, token="t")
    assert await server.start()
    try:
        async with TestClient(TestServer(web.Application())) as c:
            session = c.session
            async with session.get(f"{server.url}/healthz") as r:
                assert r.status == 200
            async with session.get(f"{server.url}/readyz") as r:
                assert r.status == 503
            ready = True
            async with session.get(f"{server.url}/readyz") as r:
                assert r.status == 200
            async with session.get(f"{server.url}/metrics") as r:
                assert r.status == 401
        # A port that is taken is logged, not raised: the connector keeps working.
        second = MetricsServer("127.0.0.1", server.port, ready=lambda: True)
        assert await second.start() is False
    finally:
        await server.stop()

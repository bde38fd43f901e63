"""One trace per message across real processes: an application's request with a
`traceparent`, the router (subprocess), the connector (subprocess), the SMSC simulator,
the delivery receipt and the webhook back to the application, exported over OTLP/HTTP
to a real receiver and checked span by span."""

from __future__ import annotations

import secrets
from typing import Any

from tests.e2e.conftest import GatewayFactory
from tests.e2e.harness import WebhookReceiver
from tests.telemetry.otlp import OtlpReceiver, ReceivedSpan


def tracing_env(otlp: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # milliseconds: spans arrive quickly in tests
        "OTEL_SERVICE_NAME": "",  # each process names itself
    }


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"expected one {name!r} span, got {[s.name for s in spans]}"
    return found[0]


def complete(message_id: str) -> Any:
    names = {"POST /v1/messages", "accept sim", "dispatch sim", "submit_sm sim",
             "receipt sim", "webhook message.status"}  # fmt: skip

    def check(spans: list[ReceivedSpan]) -> bool:
        mine = {s.name for s in spans if s.attributes.get("smsmesh.message.id") == message_id}
        return names <= mine

    return check


async def test_a_message_is_one_trace_from_request_to_webhook(
    make_gateway: GatewayFactory, hooks: WebhookReceiver, otlp: OtlpReceiver
) -> None:
    gateway = await make_gateway(env=tracing_env(otlp))
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    status, body = await gateway.send(
        {"to": "+4915112345678", "text": "traced"},
        traceparent=f"00-{trace_id}-{caller_span}-01",
    )
    assert status == 202, body
    message_id = body["id"]
    calls = await hooks.wait_for(lambda c: any(h.body.get("id") == message_id for h in c))
    await otlp.wait_for(complete(message_id))
    spans = otlp.of_message(message_id)

    # Every span about the message carries its id twice over.
    for span in spans:
        assert span.attributes["messaging.message.id"] == message_id, span.name

    # Router: the SERVER span continues the caller's trace, as its child.
    server = one(spans, "POST /v1/messages")
    assert (server.service, server.kind) == ("smsmesh-router", "SERVER")
    assert (server.trace_id, server.parent_span_id) == (trace_id, caller_span)
    assert server.attributes["http.response.status_code"] == 202
    assert server.attributes["http.route"] == "/v1/messages"
    assert server.attributes["smsmesh.application"] == "app"
    assert server.attributes["smsmesh.route"] == "default"
    assert server.attributes["smsmesh.targets"] == ["sim"]
    assert server.attributes["smsmesh.route.failover"] is False
    accept = one(spans, "accept sim")
    assert (accept.kind, accept.parent_span_id) == ("PRODUCER", server.span_id)
    assert accept.attributes["messaging.destination.name"] == "sim"

    # Connector: continues from the context stored with the message.
    dispatch = one(spans, "dispatch sim")
    assert (dispatch.service, dispatch.kind) == ("smsmesh-connector", "CONSUMER")
    assert (dispatch.trace_id, dispatch.parent_span_id) == (trace_id, accept.span_id)
    assert dispatch.attributes["smsmesh.outcome"] == "submitted"
    submit = one(spans, "submit_sm sim")
    assert (submit.kind, submit.trace_id) == ("CLIENT", trace_id)
    assert submit.parent_span_id == dispatch.span_id
    record = await gateway.message(message_id)
    assert submit.attributes["messaging.system"] == "smpp"
    assert submit.attributes["messaging.operation.type"] == "send"
    assert submit.attributes["server.address"] == "127.0.0.1"
    assert submit.attributes["server.port"] == gateway.sim.port
    assert submit.attributes["smpp.command_status"] == 0
    assert submit.attributes["smpp.message_id"] == record["smsc_message_ids"][0]

    # The receipt: a new trace, linked to the submit span it answers.
    receipt = one(spans, "receipt sim")
    assert receipt.kind == "CONSUMER"
    assert receipt.trace_id != trace_id
    assert receipt.parent_span_id == ""
    assert (trace_id, submit.span_id) in receipt.links
    assert receipt.attributes["smsmesh.receipt.state"] == "delivered"
    assert receipt.attributes["messaging.operation.type"] == "receive"

    # The webhook: a CLIENT span in the message's trace, whose traceparent the
    # application received.
    webhook = one(spans, "webhook message.status")
    assert (webhook.service, webhook.kind) == ("smsmesh-router", "CLIENT")
    assert webhook.trace_id == trace_id
    assert webhook.parent_span_id == submit.span_id
    assert webhook.attributes["http.response.status_code"] == 204
    [call] = [c for c in calls if c.body.get("id") == message_id]
    assert call.headers["traceparent"] == f"00-{trace_id}-{webhook.span_id}-01"


async def test_without_a_caller_traceparent_the_router_starts_the_trace(
    make_gateway: GatewayFactory, hooks: WebhookReceiver, otlp: OtlpReceiver
) -> None:
    gateway = await make_gateway(env=tracing_env(otlp))
    status, body = await gateway.send({"to": "+4915112345678", "text": "no parent"})
    assert status == 202, body
    message_id = body["id"]
    await otlp.wait_for(complete(message_id))
    spans = otlp.of_message(message_id)
    server = one(spans, "POST /v1/messages")
    assert server.parent_span_id == ""
    assert one(spans, "dispatch sim").trace_id == server.trace_id


async def test_a_caller_that_did_not_sample_gets_no_spans_but_its_trace_id_back(
    make_gateway: GatewayFactory, hooks: WebhookReceiver, otlp: OtlpReceiver
) -> None:
    """Parent-based sampling: the caller's "not sampled" flag holds on every hop, the
    delivery receipt included, and the webhook still names the caller's trace."""
    gateway = await make_gateway(env=tracing_env(otlp))
    trace_id = secrets.token_hex(16)
    status, body = await gateway.send(
        {"to": "+4915112345678", "text": "not sampled"},
        traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-00",
    )
    assert status == 202, body
    quiet = body["id"]
    calls = await hooks.wait_for(lambda c: any(h.body.get("id") == quiet for h in c))
    # A sampled message sent afterwards: once its whole trace (receipt and webhook
    # included) has arrived, the unsampled one has had every chance to export spans.
    status, body = await gateway.send({"to": "+4915112345678", "text": "sampled"})
    assert status == 202, body
    await otlp.wait_for(complete(body["id"]))
    assert otlp.of_message(quiet) == []
    assert not [s for s in otlp.spans if s.trace_id == trace_id]
    [call] = [c for c in calls if c.body.get("id") == quiet]
    version, header_trace, _, flags = call.headers["traceparent"].split("-")
    assert (version, header_trace, flags) == ("00", trace_id, "00")


async def test_an_inbound_message_is_traced_to_its_webhook(
    make_gateway: GatewayFactory, hooks: WebhookReceiver, otlp: OtlpReceiver
) -> None:
    gateway = await make_gateway(env=tracing_env(otlp))
    await gateway.sim.wait_sessions(1)
    await gateway.sim.inject_mo("4915112345678", "12345", "hello smsmesh")
    calls = await hooks.wait_for(lambda c: any(h.path == "/mo" for h in c))
    [call] = [c for c in calls if c.path == "/mo"]
    mo_id = call.body["id"]
    await otlp.wait_for(
        lambda s: (
            {"inbound sim", "webhook message.inbound"}
            <= {x.name for x in s if x.attributes.get("smsmesh.message.id") == mo_id}
        )
    )
    spans = otlp.of_message(mo_id)
    inbound = one(spans, "inbound sim")
    webhook = one(spans, "webhook message.inbound")
    assert inbound.parent_span_id == ""
    assert (webhook.trace_id, webhook.parent_span_id) == (inbound.trace_id, inbound.span_id)
    version, trace_id, span_id, flags = call.headers["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", inbound.trace_id, webhook.span_id)
    assert int(flags, 16) & 1  # sampled (a root span may also set the "random" flag)


async def test_with_tracing_off_the_callers_traceparent_still_reaches_the_webhook(
    make_gateway: GatewayFactory, hooks: WebhookReceiver, otlp: OtlpReceiver
) -> None:
    gateway = await make_gateway(
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_TRACES_EXPORTER": "none"}
    )
    traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    status, body = await gateway.send(
        {"to": "+4915112345678", "text": "untraced"}, traceparent=traceparent
    )
    assert status == 202, body
    calls = await hooks.wait_for(lambda c: any(h.body.get("id") == body["id"] for h in c))
    [call] = [c for c in calls if c.body.get("id") == body["id"]]
    assert call.headers["traceparent"] == traceparent
    await gateway.stop()  # SIGTERM: a process with an exporter would flush now
    assert otlp.requests == 0

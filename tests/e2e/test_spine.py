"""The message spine end to end, with real processes: HTTP -> router -> store -> connector
-> SMPP -> simulator -> receipt -> connector -> store -> webhook; and MO the other way."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.e2e.conftest import GatewayFactory
from tests.e2e.harness import Hook, WebhookReceiver

pytestmark = pytest.mark.slow


def final_for(ids: set[str]) -> object:
    def predicate(calls: list[Hook]) -> bool:
        return ids <= {c.body["id"] for c in calls if c.path == "/status"}

    return predicate


async def test_http_message_is_submitted_receipted_and_reported_by_webhook(
    make_gateway: GatewayFactory, hooks: WebhookReceiver
) -> None:
    gateway = await make_gateway()
    status, body = await gateway.send(
        {"to": "+31612345678", "text": "Your code is 4321", "client_ref": "otp-1"}
    )
    assert status == 202, body
    message_id = body["id"]

    calls = await hooks.wait_for(final_for({message_id}))
    hook = next(c for c in calls if c.body["id"] == message_id)
    assert hook.body["status"] == "delivered"
    assert hook.body["client_ref"] == "otp-1"
    assert hook.headers["X-Smsmesh-Event"] == "message.status"

    submits = [r for r in gateway.sim.received if r.text == "Your code is 4321"]
    assert len(submits) == 1
    assert submits[0].destination == "31612345678"
    assert submits[0].source == "smsmesh"
    assert submits[0].registered_delivery & 1

    message = await gateway.message(message_id)
    assert message["status"] == "delivered"
    assert message["smsc_message_ids"] == [submits[0].message_id]
    kinds = [e["kind"] for e in message["events"]]
    for expected in ("accepted", "submitted", "receipt"):
        assert expected in kinds, kinds
    assert kinds.index("accepted") < kinds.index("submitted") < kinds.index("receipt")


async def test_mo_message_reaches_the_inbound_webhook(
    make_gateway: GatewayFactory, hooks: WebhookReceiver
) -> None:
    gateway = await make_gateway()
    await gateway.sim.wait_sessions(1, timeout=20)
    await gateway.sim.inject_mo("31687654321", "3197001", "STOP Ĳ 😀", system_id="e2e")
    calls = await hooks.wait_for(lambda cs: any(c.path == "/mo" for c in cs))
    mo = next(c for c in calls if c.path == "/mo")
    assert mo.body["text"] == "STOP Ĳ 😀"
    assert mo.body["from"] == "31687654321"
    assert mo.body["to"] == "3197001"
    assert mo.headers["X-Smsmesh-Event"] == "message.inbound"


async def test_long_ucs2_text_arrives_as_correctly_numbered_parts(
    make_gateway: GatewayFactory, hooks: WebhookReceiver
) -> None:
    gateway = await make_gateway()
    text = "Здравствуйте! Ваш код подтверждения: 123456. " * 4  # 180 UTF-16 units
    status, body = await gateway.send({"to": "+79161234567", "text": text})
    assert status == 202, body
    assert body["segments"] == 3
    calls = await hooks.wait_for(final_for({body["id"]}))
    assert next(c for c in calls if c.body["id"] == body["id"]).body["status"] == "delivered"

    parts = [r for r in gateway.sim.received if r.destination == "79161234567"]
    assert len(parts) == 3
    assert all(p.data_coding == 8 for p in parts)
    assert all(p.concat is not None for p in parts)
    infos = [p.concat for p in parts if p.concat is not None]
    assert {i.reference for i in infos} == {infos[0].reference}
    assert sorted(i.part for i in infos) == [1, 2, 3]
    assert {i.total for i in infos} == {3}
    ordered = sorted(parts, key=lambda p: p.concat.part if p.concat else 0)
    assert "".join(p.text for p in ordered) == text


async def send_many(gateway: object, count: int, tag: str) -> set[str]:
    from tests.e2e.harness import Gateway

    assert isinstance(gateway, Gateway)
    ids: set[str] = set()
    for start in range(0, count, 50):
        results = await asyncio.gather(
            *(
                gateway.send({"to": "+31612345678", "text": f"{tag} {i}"})
                for i in range(start, min(count, start + 50))
            )
        )
        for status, body in results:
            assert status == 202, body
            ids.add(body["id"])
    return ids


async def test_kill_9_of_the_connector_mid_stream_loses_nothing(
    make_gateway: GatewayFactory, hooks: WebhookReceiver
) -> None:
    window = 10
    gateway = await make_gateway(tps=200, window=window)
    ids = await send_many(gateway, 400, "k9")
    await gateway.sim.wait_submits(100, timeout=30)
    await gateway.kill("connector")
    await gateway.start_connector()

    calls = await hooks.wait_for(final_for(ids), timeout=60)
    statuses = {c.body["id"]: c.body["status"] for c in calls if c.path == "/status"}
    assert {statuses[i] for i in ids} == {"delivered"}, gateway.logs()
    sent = Counter(r.text for r in gateway.sim.received if r.text.startswith("k9 "))
    assert set(sent) == {f"k9 {i}" for i in range(400)}
    duplicates = sum(n - 1 for n in sent.values())
    assert duplicates <= window, f"{duplicates} duplicates for a window of {window}"


async def test_simulator_dropping_the_bind_mid_window_loses_nothing(
    make_gateway: GatewayFactory, hooks: WebhookReceiver
) -> None:
    window = 20
    gateway = await make_gateway(tps=300, window=window)
    ids = await send_many(gateway, 300, "drop")
    await gateway.sim.wait_submits(80, timeout=30)
    assert gateway.sim.drop_connections() >= 1
    calls = await hooks.wait_for(final_for(ids), timeout=60)
    statuses = {c.body["id"]: c.body["status"] for c in calls if c.path == "/status"}
    assert {statuses[i] for i in ids} == {"delivered"}, gateway.logs()
    sent = Counter(r.text for r in gateway.sim.received if r.text.startswith("drop "))
    assert len(sent) == 300
    assert sum(n - 1 for n in sent.values()) <= window


async def test_kill_9_of_the_router_keeps_every_accepted_message(
    make_gateway: GatewayFactory, hooks: WebhookReceiver
) -> None:
    gateway = await make_gateway(tps=100)
    ids = await send_many(gateway, 100, "r9")
    await gateway.kill("router")  # webhooks for these are still owed by a router
    await gateway.start_router()
    calls = await hooks.wait_for(final_for(ids), timeout=60)
    statuses = {c.body["id"]: c.body["status"] for c in calls if c.path == "/status"}
    assert {statuses[i] for i in ids} == {"delivered"}


async def test_failing_webhook_is_retried_until_it_succeeds(
    make_gateway: GatewayFactory, hooks: WebhookReceiver
) -> None:
    hooks.fail_next = 2
    gateway = await make_gateway()
    status, body = await gateway.send({"to": "+31612345678", "text": "retry me"})
    assert status == 202
    await hooks.wait_for(final_for({body["id"]}), timeout=30)
    message = await gateway.message(body["id"])
    webhook_events = [e for e in message["events"] if e["kind"].startswith("webhook")]
    assert len(webhook_events) >= 3, message["events"]  # two failures, one delivery


async def test_receipts_on_a_receiver_bind_finish_messages_sent_on_a_transmitter(
    make_gateway: GatewayFactory, hooks: WebhookReceiver
) -> None:
    """Two SmppConnections of one SMSC account in one receipt group: `sim` only
    transmits, `sim-rx` only receives, and the simulator sends every receipt to the
    receiver bind, as SMSCs do for split binds."""
    gateway = await make_gateway(bind_type="transmitter", receipt_group="acct", receiver=True)
    await gateway.start_connector("sim-rx")
    await gateway.sim.wait_sessions(2)
    status, body = await gateway.send({"to": "+31612345678", "text": "split binds"})
    assert status == 202, body
    calls = await hooks.wait_for(final_for({body["id"]}), timeout=30)
    [call] = [c for c in calls if c.path == "/status" and c.body["id"] == body["id"]]
    assert call.body["status"] == "delivered", gateway.logs()
    message = await gateway.message(body["id"])
    receipts = [e for e in message["events"] if e["kind"] == "receipt"]
    assert [e["connection"] for e in receipts] == ["sim-rx"]
    assert message["connection"] == "sim"

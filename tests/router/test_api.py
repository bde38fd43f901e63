"""The HTTP API over real HTTP and a real store: accept, errors, idempotency, status, explain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from smsmesh.model import MessageStatus
from smsmesh.resources import load_folder
from smsmesh.store import SqliteStore
from smsmesh_router.app import API_KEY
from smsmesh_router.config import build_config
from smsmesh_router.reload import FolderReloader

Client = TestClient[object, object]
AUTH = {"Authorization": "Bearer local-dev-key"}
OTHER = {"Authorization": "Bearer other-app-key"}


async def post(client: Client, body: Any, headers: dict[str, str] | None = None) -> Any:
    response = await client.post("/v1/messages", json=body, headers=headers or AUTH)
    return response.status, await response.json(), response.headers


async def test_accepted_message_is_durable_with_its_route(
    client: Client, store: SqliteStore
) -> None:
    status, body, headers = await post(
        client, {"to": "+31 6 1234 5678", "text": "Your code is 1234", "priority": "high"}
    )
    assert status == 202
    assert body["status"] == "accepted"
    assert body["route"] == "otp-nl"
    assert body["segments"] == 1
    assert body["encoding"] == "gsm7"
    assert headers["Location"] == f"/v1/messages/{body['id']}"
    record = await store.get_message(body["id"])
    assert record is not None
    assert record.status is MessageStatus.ACCEPTED
    assert record.destination == "31612345678"
    assert record.source == "smsmesh"  # the application's default sender
    assert record.targets == ("sim",)
    assert record.priority.name == "HIGH"


async def test_get_returns_status_and_timeline_for_the_owner_only(client: Client) -> None:
    _, body, _ = await post(client, {"to": "+447400123456", "text": "hi", "client_ref": "r-1"})
    response = await client.get(f"/v1/messages/{body['id']}", headers=AUTH)
    assert response.status == 200
    message = await response.json()
    assert message["status"] == "accepted"
    assert message["client_ref"] == "r-1"
    assert message["route"] == "default"
    assert message["events"][0]["kind"] == "accepted"
    other = await client.get(f"/v1/messages/{body['id']}", headers=OTHER)
    assert other.status == 404
    assert (await other.json())["error"] == "not_found"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "send 'Authorization"),
        ({"Authorization": "Bearer nope"}, "unknown API key"),
        ({"Authorization": "Basic bG9jYWw="}, "send 'Authorization"),
    ],
)
async def test_requests_without_a_valid_key_are_refused(
    client: Client, headers: dict[str, str], reason: str
) -> None:
    response = await client.post(
        "/v1/messages", json={"to": "+31612345678", "text": "x"}, headers=headers
    )
    assert response.status == 401
    body = await response.json()
    assert body["error"] == "unauthorized"
    assert reason in body["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"to": "+31612345678"}, 400, "missing_field"),
        ({"to": "+31612345678", "text": "x", "colour": "red"}, 400, "unknown_field"),
        ({"to": "not a number", "text": "x"}, 400, "invalid_number"),
        ({"to": "+31612345678", "text": ""}, 400, "empty_text"),
        ({"to": "+31612345678", "text": "x" * 1600}, 400, "text_too_long"),
        (
            {"to": "+31612345678", "text": "x", "from": "this sender is far too long"},
            400,
            "invalid_sender",
        ),
        ({"to": "+31612345678", "text": "x", "priority": "urgent"}, 400, "invalid_field"),
        ({"to": "+31612345678", "text": "x", "validity_seconds": 5}, 400, "invalid_field"),
        ({"to": "+31612345678", "text": "x", "callback_url": "ftp://x"}, 400, "invalid_field"),
        (
            {"to": "+31612345678", "text": "x", "callback_url": "http://127.0.0.1:99999/"},
            400,
            "invalid_field",
        ),
        ({"to": "+31612345678", "text": "x", "callback_url": "http:///path"}, 400, "invalid_field"),
        ([1, 2, 3], 400, "invalid_field"),
    ],
)
async def test_bad_input_gets_a_specific_machine_readable_error(
    client: Client, store: SqliteStore, body: Any, status: int, code: str
) -> None:
    got_status, got, _ = await post(client, body)
    assert (got_status, got["error"]) == (status, code), got
    assert got["message"]
    assert await store.queue_depths() == {}


async def test_malformed_json_and_oversized_bodies(client: Client) -> None:
    response = await client.post("/v1/messages", data=b"{not json", headers=AUTH)
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_json"
    response = await client.post("/v1/messages", data=b"x" * 70_000, headers=AUTH)
    assert response.status == 413
    assert (await response.json())["error"] == "request_too_large"


async def test_sender_outside_the_applications_allowed_list(client: Client) -> None:
    status, body, _ = await post(client, {"to": "+31612345678", "text": "x", "from": "Acme"}, OTHER)
    assert (status, body["error"]) == (403, "sender_not_allowed")
    status, body, _ = await post(
        client, {"to": "+31612345678", "text": "x", "from": "OtherCo"}, OTHER
    )
    assert status == 202


async def test_idempotency_key_returns_the_same_message(client: Client, store: SqliteStore) -> None:
    headers = {**AUTH, "Idempotency-Key": "order-42"}
    first_status, first, first_headers = await post(
        client, {"to": "+31612345678", "text": "a"}, headers
    )
    again_status, again, again_headers = await post(
        client, {"to": "+31612345678", "text": "a"}, headers
    )
    assert first_status == again_status == 202
    assert first["id"] == again["id"]
    assert "Idempotent-Replayed" not in first_headers
    assert again_headers["Idempotent-Replayed"] == "true"
    assert await store.queue_depths() == {"sim": 1}
    # Keys are per application: another application may use the same key.
    other_status, other, _ = await post(
        client,
        {"to": "+31612345678", "text": "a", "from": "Other"},
        {**OTHER, "Idempotency-Key": "order-42"},
    )
    assert other_status == 202
    assert other["id"] != first["id"]


async def test_unicode_text_is_ucs2_and_counted_in_parts(client: Client) -> None:
    status, body, _ = await post(client, {"to": "+31612345678", "text": "Привет " * 20})
    assert status == 202
    assert body["encoding"] == "ucs2"
    assert body["segments"] == 3  # 140 UTF-16 units, 67 per part


async def test_no_route_is_a_422(client: Client, resources: Path) -> None:
    (resources / "40-routes.yaml").write_text(
        (resources / "40-routes.yaml").read_text().split("---")[0]
    )
    client.app[API_KEY].config = build_config(load_folder(resources))
    status, body, _ = await post(client, {"to": "+447400123456", "text": "x"})
    assert (status, body["error"]) == (422, "no_route")


async def test_explain_tells_which_route_and_why_without_sending(
    client: Client, store: SqliteStore
) -> None:
    response = await client.post(
        "/v1/routes:explain", json={"to": "+447400123456", "text": "x"}, headers=AUTH
    )
    assert response.status == 200
    body = await response.json()
    assert body["route"] == "default"
    assert body["targets"] == ["sim"]
    routes = {r["route"]: r for r in body["explanation"]["routes"]}
    assert routes["otp-nl"]["matched"] is False
    assert any("447400123456" in reason or "31" in reason for reason in routes["otp-nl"]["reasons"])
    assert await store.queue_depths() == {}


async def test_routes_reload_live_and_a_broken_edit_keeps_the_old_config(
    client: Client, resources: Path
) -> None:
    api = client.app[API_KEY]

    def apply(config: Any) -> None:
        api.config = config

    reloader = FolderReloader(resources, apply)
    routes = resources / "40-routes.yaml"
    routes.write_text(routes.read_text().replace('["31"]', '["44"]'))
    assert reloader.check() is True
    _, body, _ = await post(client, {"to": "+447400123456", "text": "x"})
    assert body["route"] == "otp-nl"

    routes.write_text(
        "apiVersion: smsmesh.io/v1alpha1\nkind: SmsRoute\nmetadata: {name: x}\n"
        "spec: {targets: []}\n"
    )
    assert reloader.check() is False
    assert reloader.failures == 1
    _, body, _ = await post(client, {"to": "+447400123456", "text": "x"})
    assert body["route"] == "otp-nl"  # previous configuration still live


async def test_health_endpoints_need_no_key(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["status"] == "ready"


async def test_an_unavailable_store_is_a_503_with_a_reason_never_an_accept(
    client: Client, store: SqliteStore
) -> None:
    await store.close()
    status, body, headers = await post(client, {"to": "+31612345678", "text": "x"})
    assert (status, body["error"]) == (503, "store_unavailable")
    assert headers["Retry-After"] == "1"

"""Search, the operational JSON and the console's files, over real HTTP and a real store."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from smsmesh.model import (
    ConnectionState,
    MessageQuery,
    QueryError,
    SubmitOutcome,
    SubmitReport,
    decode_cursor,
    encode_cursor,
)
from smsmesh.store import SqliteStore
from smsmesh_router.errors import ApiError
from smsmesh_router.search import parse_query

Client = TestClient[object, object]
T = TypeVar("T")
AUTH = {"Authorization": "Bearer local-dev-key"}
OTHER = {"Authorization": "Bearer other-app-key"}


async def send(client: Client, to: str, headers: dict[str, str] = AUTH) -> str:
    body = {"to": to, "text": "hi"}
    if headers is OTHER:
        body["from"] = "OtherApp"  # the other application has no default sender
    response = await client.post("/v1/messages", json=body, headers=headers)
    assert response.status == 202, await response.text()
    message_id: str = (await response.json())["id"]
    return message_id


async def get(client: Client, path: str, headers: dict[str, str] = AUTH) -> tuple[int, Any]:
    response = await client.get(path, headers=headers)
    return response.status, await response.json()


async def search(client: Client, query: str = "", headers: dict[str, str] = AUTH) -> Any:
    status, body = await get(client, "/v1/messages" + query, headers)
    assert status == 200, body
    return body


# -- search ------------------------------------------------------------------------------


async def test_search_pages_through_own_messages_newest_first(client: Client) -> None:
    sent = [await send(client, f"+4915112345{i:03d}") for i in range(5)]
    await send(client, "+4915100000000", headers=OTHER)
    seen: list[str] = []
    body = await search(client, "?limit=2")
    pages = 1
    while True:
        assert len(body["messages"]) <= 2
        assert body["limit"] == 2
        seen += [m["id"] for m in body["messages"]]
        if body["next_cursor"] is None:
            break
        body = await search(client, f"?limit=2&cursor={body['next_cursor']}")
        pages += 1
        assert pages < 10
    assert pages == 3
    assert seen == list(reversed(sent))  # ids are time-ordered, so this is newest first
    other = await search(client, headers=OTHER)
    assert len(other["messages"]) == 1
    assert other["messages"][0]["id"] not in sent


async def test_search_result_fields(client: Client) -> None:
    message_id = await send(client, "+31612345678")
    [m] = (await search(client))["messages"]
    assert m["id"] == message_id
    assert m["to"] == "31612345678"
    assert m["from"] == "smsmesh"
    assert (m["status"], m["route"], m["connection"], m["attempts"]) == (
        "accepted",
        "otp-nl",
        "sim",
        0,
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", m["created_at"])
    assert "text" not in m  # a search never returns message texts


async def test_search_filters(client: Client, store: SqliteStore) -> None:
    nl = await send(client, "+31612345678")
    de = await send(client, "+4915112345678")
    de_later = await send(client, "0049 151 1234 5678")
    [claimed] = await store.claim("sim", 1, time.time())  # the oldest: nl
    await store.record_submits(
        [SubmitReport(claimed.id, "sim", time.time(), SubmitOutcome.REJECTED, error="no")]
    )
    by_to = await search(client, "?to=%2B49%20151%201234%205678")
    assert [m["id"] for m in by_to["messages"]] == [de_later, de]
    rejected = await search(client, "?status=rejected")
    assert [m["id"] for m in rejected["messages"]] == [nl]
    several = await search(client, "?status=accepted,rejected")
    assert len(several["messages"]) == 3
    assert (await search(client, "?connection=elsewhere"))["messages"] == []
    assert len((await search(client, "?connection=sim"))["messages"]) == 3
    record = await store.get_message(de)
    assert record is not None
    since = record.created_at
    newer = await search(client, f"?since={since}")
    assert [m["id"] for m in newer["messages"]] == [de_later, de]
    older = await search(client, f"?until={since}")
    assert [m["id"] for m in older["messages"]] == [nl]
    assert (await search(client, "?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00%2B02:00"))[
        "messages"
    ] == []


@pytest.mark.parametrize(
    ("query", "code", "parameter"),
    [
        ("?recipient=1", "unknown_parameter", "recipient"),
        ("?limit=1&limit=2", "invalid_parameter", "limit"),
        ("?limit=0", "invalid_parameter", "limit"),
        ("?limit=501", "invalid_parameter", "limit"),
        ("?limit=ten", "invalid_parameter", "limit"),
        ("?limit=-1", "invalid_parameter", "limit"),
        ("?status=sent", "invalid_parameter", "status"),
        ("?status=,", "invalid_parameter", "status"),
        ("?since=yesterday", "invalid_parameter", "since"),
        ("?since=2024-05-01T10:00:00", "invalid_parameter", "since"),
        ("?until=nan", "invalid_parameter", "until"),
        ("?since=200&until=100", "invalid_parameter", "until"),
        ("?cursor=bm9wZQ", "invalid_cursor", "cursor"),
        ("?cursor=%00", "invalid_cursor", "cursor"),
        ("?to=hello", "invalid_parameter", "to"),
        ("?connection=", "invalid_parameter", "connection"),
    ],
)
async def test_bad_parameters_are_named(
    client: Client, query: str, code: str, parameter: str
) -> None:
    status, body = await get(client, "/v1/messages" + query)
    assert status == 400, body
    assert body["error"] == code
    assert body["details"]["parameter"] == parameter
    assert body["message"]


async def test_every_endpoint_needs_a_key(client: Client) -> None:
    for path in ("/v1/messages", "/v1/connections", "/v1/routes", "/v1/stats"):
        status, body = await get(client, path, headers={})
        assert (status, body["error"]) == (401, "unauthorized"), path
        status, body = await get(client, path, headers={"Authorization": "Bearer wrong"})
        assert (status, body["error"]) == (401, "unauthorized"), path


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["to", "status", "connection", "since", "until", "limit", "cursor", "x"]),
        st.text(max_size=40),
        max_size=5,
    )
)
def test_any_parameters_give_a_query_or_a_named_400(params: dict[str, str]) -> None:
    outcome = _outcome(lambda: parse_query("app", MultiDict(params)))
    if isinstance(outcome, ApiError):
        assert outcome.status == 400
        assert outcome.details
        assert outcome.details["parameter"] in params
    else:
        assert isinstance(outcome, MessageQuery)
        assert 1 <= outcome.limit <= 500


def _outcome(call: Callable[[], T]) -> T | ApiError | QueryError:
    """What `call` returned, or the one kind of error it may raise (anything else fails)."""
    try:
        return call()
    except (ApiError, QueryError) as exc:
        return exc


@settings(max_examples=300, deadline=None)
@given(
    st.floats(allow_nan=False, allow_infinity=False),
    st.text("0123456789abcdefghjkmnpqrstvwxyz-_", min_size=1, max_size=64),
)
def test_cursors_round_trip_exactly(created_at: float, message_id: str) -> None:
    assert decode_cursor(encode_cursor(created_at, message_id)) == (created_at, message_id)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_cursor_text_decodes_or_is_refused(cursor: str) -> None:
    outcome = _outcome(lambda: decode_cursor(cursor))
    if isinstance(outcome, QueryError):
        assert outcome.field == "cursor"
    else:
        assert isinstance(outcome, tuple)
        assert isinstance(outcome[0], float)
        assert outcome[1]


# -- connections, routes, stats ---------------------------------------------------------------


async def test_connections_show_bind_queue_and_achieved_tps(
    client: Client, store: SqliteStore
) -> None:
    status, body = await get(client, "/v1/connections")
    assert status == 200
    [sim] = body["connections"]
    assert sim == {
        "name": "sim",
        "queued": 0,
        "tps": 0.0,
        "state": "unknown",
        "bound": None,
        "updated_at": None,
    }
    for i in range(3):
        await send(client, f"+4915112345{i:03d}")
    now = time.time()
    await store.publish_connection_state(
        ConnectionState("sim", True, now, window_in_use=2, window_size=10, tps_limit=50.0)
    )
    await store.publish_connection_state(ConnectionState("old", False, now - 60, last_error="x"))
    claimed = await store.claim("sim", 2, now)
    await store.record_submits(
        [
            SubmitReport(m.id, "sim", time.time(), SubmitOutcome.SUBMITTED, (f"s{i}",))
            for i, m in enumerate(claimed)
        ]
    )
    _, body = await get(client, "/v1/connections")
    by_name = {c["name"]: c for c in body["connections"]}
    sim = by_name["sim"]
    assert (sim["state"], sim["bound"], sim["queued"], sim["tps"]) == ("bound", True, 1, 0.2)
    assert (sim["window_in_use"], sim["window_size"], sim["tps_limit"]) == (2, 10, 50.0)
    assert by_name["old"]["state"] == "stale"  # not reporting for a minute
    assert by_name["old"]["last_error"] == "x"


async def test_routes_in_evaluation_order(client: Client) -> None:
    status, body = await get(client, "/v1/routes")
    assert status == 200
    assert [r["name"] for r in body["routes"]] == ["otp-nl", "default"]
    otp = body["routes"][0]
    assert otp["match"]["destination_prefixes"] == ["31"]
    assert otp["targets"] == [{"connection": "sim", "weight": None}]
    assert body["routes"][1]["match"] == {
        "destination_prefixes": [],
        "countries": [],
        "senders": [],
        "applications": [],
        "priorities": [],
    }


async def test_stats_count_the_callers_messages_in_aligned_buckets(
    client: Client, store: SqliteStore
) -> None:
    for i in range(3):
        await send(client, f"+4915112345{i:03d}")
    await send(client, "+4915100000000", headers=OTHER)
    [claimed] = await store.claim("sim", 1, time.time())
    await store.record_submits(
        [SubmitReport(claimed.id, "sim", time.time(), SubmitOutcome.REJECTED, error="no")]
    )
    status, body = await get(client, "/v1/stats?window=60&bucket=10")
    assert status == 200, body
    assert (body["window"], body["bucket_seconds"], len(body["buckets"])) == (60, 10, 6)
    assert all(b["t"] % 10 == 0 for b in body["buckets"])
    total = {k: sum(b[k] for b in body["buckets"]) for k in ("accepted", "submitted", "failed")}
    assert total == {"accepted": 3, "submitted": 0, "failed": 1}
    assert sum(b["by_status"].get("rejected", 0) for b in body["buckets"]) == 1
    _, default = await get(client, "/v1/stats")
    assert (default["window"], len(default["buckets"])) == (600, 60)


@pytest.mark.parametrize(
    "query", ["?window=5", "?window=86401", "?bucket=0", "?window=86400&bucket=1", "?x=1"]
)
async def test_stats_refuse_bad_windows(client: Client, query: str) -> None:
    status, body = await get(client, "/v1/stats" + query)
    assert status == 400
    assert body["error"] in ("invalid_parameter", "unknown_parameter")


# -- the console's files ----------------------------------------------------------------------


async def test_console_page_and_assets_are_local_and_locked_down(client: Client) -> None:
    page = await client.get("/console")
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sorted(refs) == ["console/console.css", "console/console.js", "data:,"]
    for ref, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        asset = await client.get(f"/console/{ref}")
        assert (asset.status, asset.content_type) == (200, kind)
        text = await asset.text()
        # Nothing from another origin: the only absolute URL is the SVG namespace name.
        assert re.findall(r"https?://[^\s\"')]+", text) in ([], ["http://www.w3.org/2000/svg"])
        assert "innerHTML" not in text  # API values go into the page as text only
    assert (await client.get("/console/nope.js")).status == 404
    assert (await client.get("/console/console.html")).status == 404
    redirect = await client.get("/console/", allow_redirects=False)
    assert (redirect.status, redirect.headers["Location"]) == (302, "../console")

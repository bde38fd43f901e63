"""`GET /v1/messages`: search an application's own messages, a page at a time.

    GET /v1/messages?to=+4915112345678&status=delivered,rejected&connection=sim
                    &since=2024-05-01T00:00:00Z&until=...&limit=50&cursor=...

Newest first. Every parameter is optional; an application only ever finds its own
messages. `next_cursor` in the answer fetches the next page (keyset pagination on
(created_at, id): a page never repeats or skips a message, even while new ones
arrive). Every bad parameter is a 400 naming it: an unknown parameter, a repeated
one, a malformed number, time, status or cursor, never an empty or partial answer.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from smsmesh.addresses import AddressError, parse_destination
from smsmesh.model import (
    SEARCH_DEFAULT_LIMIT,
    SEARCH_MAX_LIMIT,
    MessageQuery,
    MessageStatus,
    MessageSummary,
    QueryError,
)
from smsmesh_router.api import MessagesApi, iso
from smsmesh_router.errors import ApiError

PARAMETERS = ("to", "status", "connection", "since", "until", "limit", "cursor")
MAX_CONNECTION_NAME = 253


def _bad(field: str, message: str, code: str = "invalid_parameter") -> ApiError:
    return ApiError(400, code, message, {"parameter": field})


def parse_time(field: str, raw: str) -> float:
    """RFC 3339 with a zone (`2024-05-01T12:00:00Z`) or unix seconds (`1714564800.5`)."""
    value = raw.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            raise _bad(field, f"{field} must be a time after 1970")
        return seconds
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(
            field, f"{field}: {raw!r} is neither RFC 3339 (2024-05-01T12:00:00Z) nor unix seconds"
        ) from None
    if parsed.tzinfo is None:
        raise _bad(field, f"{field}: give a time zone (Z or +02:00), the time is ambiguous")
    return parsed.timestamp()


def parse_statuses(raw: str) -> frozenset[MessageStatus]:
    names = [s.strip().lower() for s in raw.split(",") if s.strip()]
    if not names:
        raise _bad("status", "status names no status")
    unknown = [n for n in names if n not in MessageStatus._value2member_map_]
    if unknown:
        known = ", ".join(s.value for s in MessageStatus)
        raise _bad("status", f"unknown status {unknown[0]!r} (known: {known})")
    return frozenset(MessageStatus(n) for n in names)


def parse_query(application: str, params: MultiMapping[str]) -> MessageQuery:
    """A `MessageQuery` from request parameters; `ApiError` 400 naming the bad one."""
    for name in params:
        if name not in PARAMETERS:
            known = ", ".join(PARAMETERS)
            raise _bad(name, f"unknown parameter {name!r} (known: {known})", "unknown_parameter")
        if len(params.getall(name)) > 1:
            raise _bad(name, f"parameter {name!r} given more than once")
    kw: dict[str, Any] = {}
    if "to" in params:
        try:
            kw["destination"] = parse_destination(params["to"]).e164
        except AddressError as exc:
            raise _bad("to", f"to: {exc.message}") from None
    if "status" in params:
        kw["statuses"] = parse_statuses(params["status"])
    if "connection" in params:
        connection = params["connection"].strip()
        if not 0 < len(connection) <= MAX_CONNECTION_NAME:
            raise _bad("connection", f"connection must be 1 to {MAX_CONNECTION_NAME} characters")
        kw["connection"] = connection
    for name in ("since", "until"):
        if name in params:
            kw[name] = parse_time(name, params[name])
    if "limit" in params:
        raw = params["limit"].strip()
        if not raw.isdigit() or not 1 <= int(raw) <= SEARCH_MAX_LIMIT:
            raise _bad("limit", f"limit must be a whole number from 1 to {SEARCH_MAX_LIMIT}")
        kw["limit"] = int(raw)
    if "cursor" in params:
        kw["cursor"] = params["cursor"]
    try:
        return MessageQuery(application, **kw)
    except QueryError as exc:
        code = "invalid_cursor" if exc.field == "cursor" else "invalid_parameter"
        raise _bad(exc.field, exc.message, code) from None


def summary_json(m: MessageSummary) -> dict[str, Any]:
    return {
        "id": m.id,
        "status": m.status.value,
        "to": m.destination,
        "from": m.source,
        "client_ref": m.client_ref,
        "route": m.route,
        "connection": m.connection,
        "priority": m.priority.name.lower(),
        "segments": m.segments,
        "attempts": m.attempts,
        "created_at": iso(m.created_at),
        "updated_at": iso(m.updated_at),
    }


class SearchApi:
    """The search handler; shares authentication and the live configuration with `api`."""

    def __init__(self, api: MessagesApi) -> None:
        self.api = api

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/messages", self.search)]

    async def search(self, request: web.Request) -> web.Response:
        app = self.api.authenticate(request, self.api.config)
        query = parse_query(app.name, request.query)
        page = await self.api.store.search_messages(query)
        return web.json_response(
            {
                "messages": [summary_json(m) for m in page.messages],
                "next_cursor": page.next_cursor,
                "limit": query.limit,
            }
        )


__all__ = ["SEARCH_DEFAULT_LIMIT", "SearchApi", "parse_query", "parse_time", "summary_json"]

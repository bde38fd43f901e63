"""The operational JSON the console draws (and anyone may script against):

    GET /v1/connections        every connection: bind state, queue depth, achieved TPS
    GET /v1/routes             the compiled routes, in evaluation order
    GET /v1/stats?window=600   per-bucket counts of accepted/submitted/delivered/failed

All of them need an application's API key like the rest of the API. Connections and
routes are the gateway's shared infrastructure, so every application sees them all;
statistics count only the calling application's messages, as search does.
"""

from __future__ import annotations

import math
import time
from typing import Any

from aiohttp import web

from smsmesh.model import ConnectionState, MessageStatus, QueryError, StatsBucket
from smsmesh_router.api import MessagesApi, iso
from smsmesh_router.errors import ApiError
from smsmesh_router.health import HealthPolicy

TPS_WINDOW_SECONDS = 10.0
DEFAULT_WINDOW = 600
MAX_WINDOW = 86_400
DEFAULT_BUCKET = 10
MAX_BUCKETS = 1_000
FAILURES = (
    MessageStatus.UNDELIVERABLE,
    MessageStatus.EXPIRED,
    MessageStatus.REJECTED,
    MessageStatus.FAILED,
)


def connection_json(
    name: str, state: ConnectionState | None, queued: int, submitted: int, now: float
) -> dict[str, Any]:
    """One connection as the console shows it; `state` is None before any report."""
    stale_after = HealthPolicy().stale_after_seconds
    out: dict[str, Any] = {
        "name": name,
        "queued": queued,
        "tps": round(submitted / TPS_WINDOW_SECONDS, 1),
    }
    if state is None:
        return {**out, "state": "unknown", "bound": None, "updated_at": None}
    age = max(0.0, now - state.updated_at)
    # A connector that stopped reporting is "stale": its last word may no longer hold.
    label = "stale" if age > stale_after else "bound" if state.bound else "unbound"
    return {
        **out,
        "state": label,
        "bound": state.bound,
        "updated_at": iso(state.updated_at),
        "age_seconds": round(age, 1),
        "tps_limit": state.tps_limit,
        "window_in_use": state.window_in_use,
        "window_size": state.window_size,
        "throttled_until": (
            iso(state.throttled_until)
            if state.throttled_until and state.throttled_until > now
            else None
        ),
        "last_error": state.last_error,
    }


def bucket_json(bucket: StatsBucket) -> dict[str, Any]:
    counts = bucket.counts
    return {
        "start": iso(bucket.start),
        "t": bucket.start,
        "accepted": counts[MessageStatus.ACCEPTED],
        "submitted": counts[MessageStatus.SUBMITTED],
        "delivered": counts[MessageStatus.DELIVERED],
        "failed": sum(counts[s] for s in FAILURES),
        "by_status": {s.value: counts[s] for s in FAILURES if counts[s]},
    }


def _whole(params: Any, name: str, default: int, low: int, high: int) -> int:
    if name not in params:
        return default
    raw = str(params[name]).strip()
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(
            400,
            "invalid_parameter",
            f"{name} must be a whole number of seconds from {low} to {high}",
            {"parameter": name},
        )
    return int(raw)


class OverviewApi:
    def __init__(self, api: MessagesApi) -> None:
        self.api = api

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/connections", self.connections),
            web.get("/v1/routes", self.list_routes),
            web.get("/v1/stats", self.stats),
        ]

    async def connections(self, request: web.Request) -> web.Response:
        config = self.api.config
        self.api.authenticate(request, config)
        store = self.api.store
        now = time.time()
        states = await store.connection_states()
        depths = await store.queue_depths()
        submitted = await store.connection_throughput(now - TPS_WINDOW_SECONDS, now)
        names = sorted(set(config.routing.connections()) | set(states) | set(depths))
        return web.json_response(
            {
                "connections": [
                    connection_json(n, states.get(n), depths.get(n, 0), submitted.get(n, 0), now)
                    for n in names
                ],
                "tps_window_seconds": TPS_WINDOW_SECONDS,
            }
        )

    async def list_routes(self, request: web.Request) -> web.Response:
        config = self.api.config
        self.api.authenticate(request, config)
        return web.json_response(
            {"routes": config.routing.describe(), "problems": list(config.problems)}
        )

    async def stats(self, request: web.Request) -> web.Response:
        """Buckets aligned to multiples of `bucket` seconds, so repeated polls line up."""
        app = self.api.authenticate(request, self.api.config)
        params = request.query
        for name in params:
            if name not in ("window", "bucket"):
                raise ApiError(
                    400,
                    "unknown_parameter",
                    f"unknown parameter {name!r} (known: window, bucket)",
                    {"parameter": name},
                )
        window = _whole(params, "window", DEFAULT_WINDOW, 10, MAX_WINDOW)
        bucket = _whole(params, "bucket", DEFAULT_BUCKET, 1, 3600)
        count = math.ceil(window / bucket)
        if count > MAX_BUCKETS:
            raise ApiError(
                400,
                "invalid_parameter",
                f"window/bucket gives {count} buckets; at most {MAX_BUCKETS}",
                {"parameter": "bucket"},
            )
        until = (math.floor(time.time() / bucket) + 1) * bucket  # the current bucket's end
        since = until - count * bucket
        try:
            buckets = await self.api.store.message_stats(app.name, since, until, bucket)
        except QueryError as exc:  # the checks above should make this unreachable
            raise ApiError(400, "invalid_parameter", exc.message) from None
        return web.json_response(
            {
                "window": count * bucket,
                "bucket_seconds": bucket,
                "since": iso(since),
                "until": iso(until),
                "buckets": [bucket_json(b) for b in buckets],
            }
        )

"""Every Prometheus metric smsmesh exposes, defined once, in one place.

Names follow the Prometheus conventions: an `smsmesh_` prefix, base units (seconds),
`_total` on counters. Labels are bounded: connection, route and application names come
from resources, `command_status` is an SMPP status name (`ESME_ROK`, `ESME_RTHROTTLED`,
or `0x...` for a code without a name), `state` a receipt state, `kind` a webhook kind,
`code` an API error code.

All metrics live in one registry per process, `REGISTRY` (not the prometheus_client
default, so importing smsmesh never changes what another library's registry serves).
The router and a connector are separate processes, so each exposes only the families it
moves; families a process does not use are still listed (with no samples), which is
harmless and lets one dashboard work for every pod.

Gauges that mirror live state (bind, window, TPS, queue depth) are not pushed on every
change: the code that owns the state registers a *scrape hook* with `on_scrape`, and the
`/metrics` handler runs every hook right before it renders the registry. A hook may be a
plain function or a coroutine function (the router refreshes queue depths from the
store that way).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from smsmesh.smpp.pdu import CommandStatus

log = logging.getLogger("smsmesh.telemetry")

REGISTRY = CollectorRegistry(auto_describe=True)

# Bucket bounds, in seconds.
SUBMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RECEIPT_BUCKETS = (
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
)  # fmt: skip
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACCEPT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

UNLIMITED = math.inf  # value of the TPS limit gauges for a connection without a limit

# -- process ------------------------------------------------------------------------------

BUILD_INFO = Gauge(
    "smsmesh_build_info",
    "Always 1; the labels say which smsmesh version and role this process runs.",
    ["version", "role"],
    registry=None,
)

# -- per connection (connector process) ---------------------------------------------------

CONNECTION_BOUND = Gauge(
    "smsmesh_connection_bound",
    "1 while the connection's SMPP bind is up, 0 otherwise.",
    ["connection"],
    registry=None,
)
CONNECTION_SUBMITS = Counter(
    "smsmesh_connection_submits_total",
    "submit_sm responses received, by SMPP command_status (one per message part sent).",
    ["connection", "command_status"],
    registry=None,
)
CONNECTION_SUBMITS_UNANSWERED = Counter(
    "smsmesh_connection_submits_unanswered_total",
    "submit_sm requests that got no response (timeout or session lost).",
    ["connection"],
    registry=None,
)
CONNECTION_SUBMIT_DURATION = Histogram(
    "smsmesh_connection_submit_duration_seconds",
    "Time from sending a submit_sm to its response (any command_status).",
    ["connection"],
    buckets=SUBMIT_BUCKETS,
    registry=None,
)
CONNECTION_MESSAGES = Counter(
    "smsmesh_connection_messages_total",
    "Claimed messages by outcome: submitted, requeued, failover (handed to the route's "
    "next target), rejected.",
    ["connection", "outcome"],
    registry=None,
)
CONNECTION_TPS = Gauge(
    "smsmesh_connection_tps",
    "Achieved submit_sm accepted per second (recent average).",
    ["connection"],
    registry=None,
)
CONNECTION_TPS_LIMIT = Gauge(
    "smsmesh_connection_tps_limit",
    "Configured throughput limit in messages per second (+Inf when unlimited).",
    ["connection"],
    registry=None,
)
CONNECTION_TPS_EFFECTIVE_LIMIT = Gauge(
    "smsmesh_connection_tps_effective_limit",
    "Throughput limit currently enforced; below the configured one while the SMSC "
    "throttles (+Inf when unlimited).",
    ["connection"],
    registry=None,
)
CONNECTION_WINDOW_IN_USE = Gauge(
    "smsmesh_connection_window_in_use",
    "submit_sm requests awaiting their response.",
    ["connection"],
    registry=None,
)
CONNECTION_WINDOW_SIZE = Gauge(
    "smsmesh_connection_window_size",
    "Configured window: requests allowed in flight at once.",
    ["connection"],
    registry=None,
)
CONNECTION_RECONNECTS = Counter(
    "smsmesh_connection_reconnects_total",
    "Binds lost after having been up (each followed by a reconnect).",
    ["connection"],
    registry=None,
)
CONNECTION_BIND_FAILURES = Counter(
    "smsmesh_connection_bind_failures_total",
    "Connect or bind attempts that failed.",
    ["connection"],
    registry=None,
)
CONNECTION_THROTTLED = Counter(
    "smsmesh_connection_throttled_total",
    "submit_sm responses asking us to slow down (ESME_RTHROTTLED, queue full).",
    ["connection"],
    registry=None,
)
CONNECTION_THROTTLE_EPISODES = Counter(
    "smsmesh_connection_throttle_episodes_total",
    "Times the connector lowered its rate because the SMSC throttled.",
    ["connection"],
    registry=None,
)
RECEIPTS = Counter(
    "smsmesh_receipts_total",
    "Delivery receipts stored, by receipt state (delivered, undeliverable, ...).",
    ["connection", "state"],
    registry=None,
)
RECEIPTS_UNMATCHED = Counter(
    "smsmesh_receipts_unmatched_total",
    "Delivery receipts stored before (or without) a known submit to match them.",
    ["connection"],
    registry=None,
)
RECEIPTS_MALFORMED = Counter(
    "smsmesh_receipts_malformed_total",
    "Delivery receipts naming no message id (acknowledged and dropped).",
    ["connection"],
    registry=None,
)
RECEIPT_LATENCY = Histogram(
    "smsmesh_receipt_latency_seconds",
    "Time from a part's submit_sm response to its delivery receipt, by receipt state.",
    ["connection", "state"],
    buckets=RECEIPT_BUCKETS,
    registry=None,
)
INBOUND_MESSAGES = Counter(
    "smsmesh_inbound_messages_total",
    "Mobile-originated messages stored.",
    ["connection"],
    registry=None,
)

# -- router side ---------------------------------------------------------------------------

QUEUE_DEPTH = Gauge(
    "smsmesh_connection_queue_depth",
    "Messages queued in the store for a connection, waiting to be claimed (read from the "
    "store: every router replica reports the same value, so aggregate with max).",
    ["connection"],
    registry=None,
)
ROUTE_MESSAGES = Counter(
    "smsmesh_route_messages_total",
    "Messages accepted that this route matched.",
    ["route"],
    registry=None,
)
ROUTE_FAILOVERS = Counter(
    "smsmesh_route_failovers_total",
    "Messages whose route's preferred target was unavailable, so a later target goes first.",
    ["route"],
    registry=None,
)
APPLICATION_ACCEPTED = Counter(
    "smsmesh_application_accepted_total",
    "Messages accepted (durable) per application; idempotent replays not counted.",
    ["application"],
    registry=None,
)
APPLICATION_REJECTED = Counter(
    "smsmesh_application_rejected_total",
    "Send requests refused, by API error code (application 'unknown' when not authenticated).",
    ["application", "code"],
    registry=None,
)
ACCEPT_DURATION = Histogram(
    "smsmesh_accept_duration_seconds",
    "Time for POST /v1/messages from request to durable acceptance.",
    [],
    buckets=ACCEPT_BUCKETS,
    registry=None,
)
WEBHOOK_DELIVERIES = Counter(
    "smsmesh_webhook_deliveries_total",
    "Webhooks the application answered with 2xx.",
    ["kind"],
    registry=None,
)
WEBHOOK_FAILURES = Counter(
    "smsmesh_webhook_failures_total",
    "Webhook attempts that failed (non-2xx or no answer).",
    ["kind"],
    registry=None,
)
WEBHOOK_RETRIES = Counter(
    "smsmesh_webhook_retries_total",
    "Failed webhook attempts that were scheduled to be tried again.",
    ["kind"],
    registry=None,
)
WEBHOOK_GIVEN_UP = Counter(
    "smsmesh_webhook_given_up_total",
    "Webhooks abandoned (attempts exhausted or 410 Gone).",
    ["kind"],
    registry=None,
)
WEBHOOK_DURATION = Histogram(
    "smsmesh_webhook_duration_seconds",
    "Time of one webhook HTTP request, any outcome.",
    ["kind"],
    buckets=WEBHOOK_BUCKETS,
    registry=None,
)
MESSAGES_EXPIRED = Counter(
    "smsmesh_messages_expired_total",
    "Messages the expiry sweeper ended because their validity passed.",
    [],
    registry=None,
)

ALL: tuple[Counter | Gauge | Histogram, ...] = (
    BUILD_INFO,
    CONNECTION_BOUND,
    CONNECTION_SUBMITS,
    CONNECTION_SUBMITS_UNANSWERED,
    CONNECTION_SUBMIT_DURATION,
    CONNECTION_MESSAGES,
    CONNECTION_TPS,
    CONNECTION_TPS_LIMIT,
    CONNECTION_TPS_EFFECTIVE_LIMIT,
    CONNECTION_WINDOW_IN_USE,
    CONNECTION_WINDOW_SIZE,
    CONNECTION_RECONNECTS,
    CONNECTION_BIND_FAILURES,
    CONNECTION_THROTTLED,
    CONNECTION_THROTTLE_EPISODES,
    RECEIPTS,
    RECEIPTS_UNMATCHED,
    RECEIPTS_MALFORMED,
    RECEIPT_LATENCY,
    INBOUND_MESSAGES,
    QUEUE_DEPTH,
    ROUTE_MESSAGES,
    ROUTE_FAILOVERS,
    APPLICATION_ACCEPTED,
    APPLICATION_REJECTED,
    ACCEPT_DURATION,
    WEBHOOK_DELIVERIES,
    WEBHOOK_FAILURES,
    WEBHOOK_RETRIES,
    WEBHOOK_GIVEN_UP,
    WEBHOOK_DURATION,
    MESSAGES_EXPIRED,
)


def register(registry: CollectorRegistry) -> None:
    """Register every smsmesh metric in `registry` (for a server with its own registry)."""
    for metric in ALL:
        registry.register(metric)


register(REGISTRY)

# -- scrape hooks --------------------------------------------------------------------------

ScrapeHook = Callable[[], None] | Callable[[], Awaitable[None]]
_hooks: list[ScrapeHook] = []


def on_scrape(hook: ScrapeHook) -> Callable[[], None]:
    """Run `hook` before every scrape (to set live-state gauges); returns an unregister."""
    _hooks.append(hook)

    def remove() -> None:
        if hook in _hooks:
            _hooks.remove(hook)

    return remove


async def run_scrape_hooks() -> None:
    """Run every hook; one failing hook must not cost the whole scrape."""
    for hook in list(_hooks):
        try:
            result = hook()
            if inspect.isawaitable(result):
                await result
        except Exception:  # a scrape shows stale gauges rather than nothing
            log.warning("metrics scrape hook failed", exc_info=True)


def set_build_info(role: str) -> None:
    """Publish `smsmesh_build_info{version, role} 1` for this process."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("smsmesh")
    except PackageNotFoundError:
        release = "unknown"
    BUILD_INFO.labels(release, role).set(1)


def status_label(command_status: int) -> str:
    """The `command_status` label value: the SMPP name, or hex for a code without one."""
    return CommandStatus.describe(command_status)

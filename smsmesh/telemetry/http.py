"""HTTP side of telemetry: the `/metrics` handler, the SERVER-span middleware, and the
small server a connector runs for `/metrics`, `/healthz` and `/readyz`.

`/metrics` needs a bearer token. The project's rule is that no endpoint goes without
authentication unless it is a health probe, and metrics name connections, routes and
applications. The token is a dedicated one (SMSMESH_METRICS_TOKEN), not an
application's API key: Prometheus holds it in its scrape config (`authorization:
credentials_file`), and a leaked scrape config then cannot send SMS. Without the
variable `/metrics` stays closed and answers 401 saying how to open it.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry import trace
from prometheus_client import generate_latest

from smsmesh.telemetry import metrics, tracing

log = logging.getLogger("smsmesh.telemetry")

METRICS_TOKEN_ENV = "SMSMESH_METRICS_TOKEN"
METRICS_PORT_ENV = "SMSMESH_METRICS_PORT"
METRICS_HOST_ENV = "SMSMESH_METRICS_HOST"
DEFAULT_METRICS_PORT = 9464
DEFAULT_METRICS_HOST = "127.0.0.1"

# The classic text format, which every Prometheus version reads (our names need nothing
# newer); prometheus_client's "latest" may announce a version older servers reject.
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"

# Probes and scrapes are not traced: they would drown the message traces.
UNTRACED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_port_from_env(default: int = DEFAULT_METRICS_PORT) -> int:
    """SMSMESH_METRICS_PORT, or `default`; 0 disables. A bad value is a clear error."""
    raw = os.environ.get(METRICS_PORT_ENV, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{METRICS_PORT_ENV}={raw!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{METRICS_PORT_ENV}={port} is outside 0-65535")
    return port


def _unauthorized(code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": code, "message": message},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
    )


def metrics_handler(token: str | None = None) -> Handler:
    """The `/metrics` handler; `token` defaults to $SMSMESH_METRICS_TOKEN (read now)."""
    expected = (token if token is not None else os.environ.get(METRICS_TOKEN_ENV, "")).strip()

    async def handle(request: web.Request) -> web.StreamResponse:
        if not expected:
            return _unauthorized(
                "metrics_closed",
                f"/metrics is closed: set {METRICS_TOKEN_ENV} for this process and scrape "
                "with 'Authorization: Bearer <token>'",
            )
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.encode()
        ):
            return _unauthorized("unauthorized", "send 'Authorization: Bearer <metrics token>'")
        await metrics.run_scrape_hooks()
        body = generate_latest(metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": TEXT_FORMAT})

    return handle


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A SERVER span per request, continuing the caller's `traceparent` when present.

    Outermost middleware: it sees the status the error middleware turned an ApiError
    into. Without an exporting provider it only passes the request on.
    """
    if not tracing.enabled() or request.path in UNTRACED_PATHS:
        return await handler(request)
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else None
    with tracing.tracer().start_as_current_span(
        f"{request.method} {template}" if template else request.method,
        context=tracing.extract(tracing.w3c_headers(request.headers)),
        kind=trace.SpanKind.SERVER,
    ) as span:
        if span.is_recording():
            span.set_attributes(_request_attributes(request, template))
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            tracing.fail(span, str(response.status))
        return response


def _request_attributes(request: web.Request, template: str | None) -> dict[str, str | int]:
    """HTTP server span attributes (OpenTelemetry's HTTP semantic conventions)."""
    attributes: dict[str, str | int] = {
        "http.request.method": request.method,
        "url.path": request.path,
        "url.scheme": request.scheme,
    }
    if template:
        attributes["http.route"] = template
    if request.remote:
        attributes["client.address"] = request.remote
    agent = request.headers.get("User-Agent")
    if agent:
        attributes["user_agent.original"] = agent[:256]
    return attributes


class MetricsServer:
    """The connector's own HTTP server: `/metrics` (token), `/healthz`, `/readyz`.

    `/healthz` answers 200 while the event loop runs (liveness); `/readyz` answers 200
    only while `ready()` is true (the connector: while its bind is up).
    """

    def __init__(
        self, host: str, port: int, ready: Callable[[], bool], token: str | None = None
    ) -> None:
        self.host = host
        self.port = port
        self._ready = ready
        self._handler = metrics_handler(token)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "unavailable", "reason": "not bound"}, status=503)

    async def start(self) -> bool:
        """Listen; False (logged, not raised) when the port cannot be had: the connector's
        work matters more than its metrics."""
        app = web.Application()
        app.add_routes(
            [
                web.get("/metrics", self._handler),
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
            ]
        )
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            log.error("metrics server cannot listen on %s:%d: %s", self.host, self.port, exc)
            await runner.cleanup()
            return False
        self._runner = runner
        port = self.port
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            port = server.sockets[0].getsockname()[1]
        self.port = port
        self.url = f"http://{self.host}:{port}"
        log.info("metrics, healthz and readyz on %s", self.url)
        return True

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

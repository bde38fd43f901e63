"""The router process: HTTP API in, durable store out, plus its background duties.

The router keeps no message state of its own: every request is authenticated,
validated, routed and written to the store before it is answered, so any number of
replicas can run behind one Service and any of them can be killed at any moment.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from smsmesh.batching import Batcher
from smsmesh.model import AcceptResult, NewMessage
from smsmesh.resources import ResourceSet, load_folder
from smsmesh.store import Store, open_store
from smsmesh.telemetry import metrics, tracing
from smsmesh.telemetry.http import metrics_handler, tracing_middleware
from smsmesh_router.api import MessagesApi
from smsmesh_router.config import RouterConfig, build_config
from smsmesh_router.console import add_console_routes
from smsmesh_router.errors import error_middleware
from smsmesh_router.health import HealthView
from smsmesh_router.kube import KubeSnapshotSource
from smsmesh_router.reload import FolderReloader
from smsmesh_router.sweeper import ExpirySweeper
from smsmesh_router.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

STORE_KEY = web.AppKey("store", Store)
API_KEY = web.AppKey("api", MessagesApi)


@dataclass(frozen=True, slots=True)
class RouterSettings:
    store_url: str
    resources: Path
    host: str = "127.0.0.1"
    port: int = 8080
    webhooks: bool = True
    sweeper_interval: float = 5.0
    receipt_grace: float = 3600.0
    retention_days: float | None = 30.0  # finished messages older than this are purged
    # "NAMESPACE/CONFIGMAP": follow the operator's routing snapshot (and the Secret
    # "<CONFIGMAP>-keys") instead of reading `resources`.
    kube_snapshot: str | None = None


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        # A read of the small connection-state table: proves the store answers without
        # counting a possibly huge queue on every probe.
        await request.app[STORE_KEY].connection_states()
    except Exception as exc:
        return web.json_response({"status": "unavailable", "reason": str(exc)}, status=503)
    return web.json_response({"status": "ready"})


async def scrape_queue_depths(store: Store) -> None:
    """Queue depth per connection, read from the store at scrape time (0 for a known
    connection with an empty queue, so its series does not vanish)."""
    depths = await store.queue_depths()
    names = set(depths) | set(await store.connection_states())
    for name in names:
        metrics.QUEUE_DEPTH.labels(name).set(depths.get(name, 0))


def create_app(store: Store, config: RouterConfig) -> web.Application:
    """The aiohttp application; background tasks are started by `Router`."""
    batcher: Batcher[NewMessage, AcceptResult] = Batcher(store.accept, name="accept-batcher")
    api = MessagesApi(store, config, HealthView(store), batcher)
    app = web.Application(
        middlewares=[tracing_middleware, error_middleware], client_max_size=64 * 1024
    )
    app[STORE_KEY] = store
    app[API_KEY] = api
    app.add_routes(api.routes())
    add_console_routes(app, api)  # GET /v1/messages search, /v1/stats, /console
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz)])
    app.router.add_get("/metrics", metrics_handler())  # bearer $SMSMESH_METRICS_TOKEN
    remove_hook = metrics.on_scrape(lambda: scrape_queue_depths(store))

    async def remove_scrape_hook(_: web.Application) -> None:
        remove_hook()

    app.on_cleanup.append(remove_scrape_hook)

    async def close_batcher(_: web.Application) -> None:
        await batcher.close()

    app.on_shutdown.append(close_batcher)
    return app


class Router:
    """Owns the store, the HTTP site and the background tasks of one router process."""

    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.runner: web.AppRunner | None = None
        self.webhooks: WebhookDispatcher | None = None
        self.sweeper: ExpirySweeper | None = None
        self.reloader: FolderReloader | None = None
        self.snapshot_source: KubeSnapshotSource | None = None
        self.url = ""

    async def start(self) -> None:
        settings = self.settings
        if settings.kube_snapshot:
            config = build_config(ResourceSet(environ={}))  # until the snapshot arrives
        else:
            config = build_config(load_folder(settings.resources))
        for problem in config.problems:
            log.warning("configuration problem: %s", problem)
        self.store = open_store(settings.store_url)
        await self.store.open()
        app = create_app(self.store, config)
        api = app[API_KEY]

        def apply(new: RouterConfig) -> None:
            api.config = new

        if settings.kube_snapshot:
            namespace, _, name = settings.kube_snapshot.partition("/")
            name = name or "smsmesh-routing"
            self.snapshot_source = KubeSnapshotSource(namespace, name, f"{name}-keys", apply=apply)
            await self.snapshot_source.start()
        else:
            self.reloader = FolderReloader(settings.resources, apply)
            self.reloader.start()
        self.sweeper = ExpirySweeper(
            self.store,
            settings.sweeper_interval,
            settings.receipt_grace,
            settings.retention_days * 86400 if settings.retention_days else None,
        )
        self.sweeper.start()
        if settings.webhooks:
            self.webhooks = WebhookDispatcher(self.store)
            await self.webhooks.start()
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, settings.host, settings.port, backlog=1024)
        await site.start()
        port = settings.port
        server = getattr(site, "_server", None)
        if port == 0 and server is not None and server.sockets:
            port = server.sockets[0].getsockname()[1]
        self.url = f"http://{settings.host}:{port}"
        log.info("router listening on %s", self.url)

    async def stop(self) -> None:
        if self.reloader:
            await self.reloader.stop()
        if self.snapshot_source:
            await self.snapshot_source.stop()
        if self.runner:
            await self.runner.cleanup()  # stops accepting, finishes in-flight requests
        if self.sweeper:
            await self.sweeper.stop()
        if self.webhooks:
            await self.webhooks.stop()
        if self.store:
            await self.store.close()


async def serve(settings: RouterSettings, stop: asyncio.Event) -> int:
    tracing.setup_tracing("smsmesh-router")  # exports only when OTEL_* asks for it
    metrics.set_build_info("router")
    try:
        router = Router(settings)
        await router.start()
        try:
            await stop.wait()
        finally:
            await router.stop()
    finally:
        tracing.shutdown_tracing()  # flush the last spans (the SIGTERM path ends here)
    return 0

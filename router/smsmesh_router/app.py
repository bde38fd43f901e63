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
from smsmesh.resources import load_folder
from smsmesh.store import Store, open_store
from smsmesh_router.api import MessagesApi
from smsmesh_router.config import RouterConfig, build_config
from smsmesh_router.console import add_console_routes
from smsmesh_router.console import add_console_routes
from smsmesh_router.errors import error_middleware
from smsmesh_router.health import HealthView
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


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[STORE_KEY].queue_depths()
    except Exception as exc:
        return web.json_response({"status": "unavailable", "reason": str(exc)}, status=503)
    return web.json_response({"status": "ready"})


def create_app(store: Store, config: RouterConfig) -> web.Application:
    """The aiohttp application; background tasks are started by `Router`."""
    batcher: Batcher[NewMessage, AcceptResult] = Batcher(store.accept, name="accept-batcher")
    api = MessagesApi(store, config, HealthView(store), batcher)
    app = web.Application(middlewares=[error_middleware], client_max_size=64 * 1024)
    app[STORE_KEY] = store
    app[API_KEY] = api
    app.add_routes(api.routes())
    add_console_routes(app, api)  # GET /v1/messages search, /v1/stats, /console
    add_console_routes(app, api)  # GET /v1/messages search, /v1/stats, /console
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz)])

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
        self.url = ""

    async def start(self) -> None:
        settings = self.settings
        config = build_config(load_folder(settings.resources))
        for problem in config.problems:
            log.warning("configuration problem: %s", problem)
        self.store = open_store(settings.store_url)
        await self.store.open()
        app = create_app(self.store, config)
        api = app[API_KEY]

        def apply(new: RouterConfig) -> None:
            api.config = new

        self.reloader = FolderReloader(settings.resources, apply)
        self.reloader.start()
        self.sweeper = ExpirySweeper(self.store, settings.sweeper_interval, settings.receipt_grace)
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
        if self.runner:
            await self.runner.cleanup()  # stops accepting, finishes in-flight requests
        if self.sweeper:
            await self.sweeper.stop()
        if self.webhooks:
            await self.webhooks.stop()
        if self.store:
            await self.store.close()


async def serve(settings: RouterSettings, stop: asyncio.Event) -> int:
    router = Router(settings)
    await router.start()
    try:
        await stop.wait()
    finally:
        await router.stop()
    return 0

"""The web console at `/console`: one static page for people without Grafana.

The page, its script and its stylesheet are files in `smsmesh_router/static/`, served
as they are: no build step, nothing fetched from anywhere else. The page holds no data
and needs no key; every figure it shows comes from the authenticated JSON API
(`/v1/connections`, `/v1/routes`, `/v1/messages`, `/v1/stats`) with the API key the
person types in, kept in the tab's sessionStorage only.

The Content-Security-Policy allows scripts, styles and requests to this origin alone
and no inline script, so text that came from a message (a client reference, an
error) can never run as code even if the script made a mistake displaying it.
"""

from __future__ import annotations

import logging
from importlib import resources

from aiohttp import web

from smsmesh_router.api import MessagesApi

ASSETS = {
    "console.html": "text/html",
    "console.js": "text/javascript",
    "console.css": "text/css",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def load_assets() -> dict[str, bytes]:
    """The console's files, read once (from the installed package's data)."""
    folder = resources.files("smsmesh_router") / "static"
    return {name: (folder / name).read_bytes() for name in ASSETS}


log = logging.getLogger(__name__)


class Console:
    def __init__(self) -> None:
        try:
            self._assets = load_assets()
        except OSError as exc:  # an installation without the package data: API still works
            log.warning("console files missing from this installation, /console is off: %s", exc)
            self._assets = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/console", self.page),
            web.get("/console/", self.to_page),
            web.get("/console/{name}", self.asset),
        ]

    def _serve(self, name: str) -> web.Response:
        return web.Response(
            body=self._assets[name],
            content_type=ASSETS[name],
            charset="utf-8",
            headers=SECURITY_HEADERS,
        )

    async def page(self, request: web.Request) -> web.Response:
        if "console.html" not in self._assets:
            return web.json_response(
                {
                    "error": "console_unavailable",
                    "message": "this installation lacks the console's files",
                },
                status=404,
            )
        return self._serve("console.html")

    async def to_page(self, request: web.Request) -> web.Response:
        # The page's links are relative to /console (so a path prefix in front of the
        # router keeps working); from /console/ they would point one level too deep.
        raise web.HTTPFound("../console")

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._assets or name == "console.html":
            raise web.HTTPNotFound()
        return self._serve(name)


def add_console_routes(app: web.Application, api: MessagesApi) -> None:
    """Search, the operational JSON and the console page, next to `api`'s own routes."""
    from smsmesh_router.overview import OverviewApi
    from smsmesh_router.search import SearchApi

    app.add_routes(SearchApi(api).routes())
    app.add_routes(OverviewApi(api).routes())
    app.add_routes(Console().routes())

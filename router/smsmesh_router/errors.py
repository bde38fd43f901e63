"""Machine-readable API errors: every 4xx carries `{"error": code, "message": text}`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from smsmesh.store import StoreError


class ApiError(Exception):
    """An error the client can act on; `code` is stable, `message` is for humans."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return web.json_response(body, status=self.status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ApiError as exc:
        return exc.response()
    except StoreError:
        # Nothing was accepted: say so plainly, so the client retries (with its
        # Idempotency-Key) instead of guessing from a bare 500.
        return web.json_response(
            {"error": "store_unavailable", "message": "the message store is unavailable"},
            status=503,
            headers={"Retry-After": "1"},
        )
    except web.HTTPException as exc:
        if exc.status >= 400:
            code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
                exc.status, "http_error"
            )
            return web.json_response({"error": code, "message": exc.reason}, status=exc.status)
        raise

"""The few API calls the operator makes itself: read a Secret, apply, patch, delete.

kopf does the watching; writes go through this small aiohttp client, authenticated with
the same `kopf.ConnectionInfo` kopf logs in with (in-cluster ServiceAccount or kubeconfig),
so both always act as one identity. A 401 logs in again once (ServiceAccount tokens are
rotated on disk). Every request has a timeout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf

from smsmesh_operator import names

log = logging.getLogger(__name__)

Login = Callable[[], kopf.ConnectionInfo]
APPLY = "application/apply-patch+yaml"  # JSON is YAML: the body is sent as JSON
MERGE = "application/merge-patch+json"


class ApiError(Exception):
    """The API server refused a request; `status` is the HTTP status."""

    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status


def path_for(api_version: str, plural: str, namespace: str, name: str = "") -> str:
    """URL path of a namespaced collection or object (`v1` is the core group)."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


class KubeApi:
    def __init__(self, login: Login, *, timeout: float = 30.0) -> None:
        self._login = login
        self._timeout = timeout
        self._info: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            info = self._login()
            self._info = info
            headers = dict(info.as_http_headers())
            headers["User-Agent"] = names.MANAGED_BY
            self._session = aiohttp.ClientSession(
                base_url=info.server.rstrip("/"),
                connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """The JSON answer; None for 404; `ApiError` for any other failure status."""
        for attempt in (1, 2):
            session = self._open()
            data = None if body is None else json.dumps(body)
            headers = {"Content-Type": content_type} if body is not None else {}
            try:
                async with session.request(
                    method, path, data=data, headers=headers, params=params
                ) as response:
                    if response.status == 401 and attempt == 1:
                        log.info("API server answered 401; logging in again")
                        await self.close()
                        continue
                    if response.status == 404:
                        return None
                    text = await response.text()
                    if response.status >= 400:
                        raise ApiError(response.status, method, path, _status_message(text))
                    answer: dict[str, Any] = json.loads(text) if text else {}
                    return answer
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ApiError(0, method, path, f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, path: str) -> dict[str, Any] | None:
        return await self.request("GET", path)

    async def apply(self, path: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as the operator's field manager (creates if absent)."""
        answer = await self.request(
            "PATCH",
            path,
            body=manifest,
            content_type=APPLY,
            params={"fieldManager": names.FIELD_MANAGER, "force": "true"},
        )
        if answer is None:
            raise ApiError(404, "PATCH", path, "namespace or resource type not found")
        return answer

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch; None when the object is gone."""
        return await self.request("PATCH", path, body=patch, content_type=MERGE)

    async def delete(self, path: str) -> bool:
        """Delete (dependents in the background); False when it was already gone."""
        answer = await self.request("DELETE", path, body={"propagationPolicy": "Background"})
        return answer is not None


def _status_message(text: str) -> str:
    """The `message` of a metav1.Status body, else the start of the body."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return str(parsed["message"])
    return text[:300]

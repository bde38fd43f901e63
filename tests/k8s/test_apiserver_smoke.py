"""Smoke tests proving the `kube_apiserver` fixture is a real, usable Kubernetes API.

Plain HTTPS with aiohttp (no Kubernetes client library), so a failure points at the fixture
or the server, not at a client. Each test uses its own namespace / object names because the
server is shared by the whole session.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kube_cluster import KubeApiserver

pytestmark = pytest.mark.k8s

REQUEST_TIMEOUT_S = 30.0
ESTABLISHED_TIMEOUT_S = 30.0
KUBECTL_TIMEOUT_S = 60.0

CRD_GROUP = "smoke.smsmesh.io"
CRD_NAME = f"widgets.{CRD_GROUP}"
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": CRD_GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "colour": {"type": "string", "default": "blue"},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def http(kube_apiserver: KubeApiserver) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTPS session that trusts the test CA and authenticates as the admin."""
    async with aiohttp.ClientSession(
        base_url=kube_apiserver.server,
        connector=aiohttp.TCPConnector(ssl=kube_apiserver.ssl_context()),
        headers=kube_apiserver.auth_headers(),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    ) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None, *, expect: int
) -> dict[str, Any]:
    """One API request; asserts the status (showing the server's message) and returns JSON."""
    async with http.request(method, path, json=body) as response:
        payload: dict[str, Any] = await response.json(content_type=None)
        assert response.status == expect, f"{method} {path} -> {response.status}: {payload}"
        return payload


async def make_namespace(http: aiohttp.ClientSession) -> str:
    name = unique("smoke")
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    await call(http, "POST", "/api/v1/namespaces", body, expect=201)
    return name


async def test_namespace_and_configmap_round_trip(http: aiohttp.ClientSession) -> None:
    namespace = await make_namespace(http)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"greeting": "hello", "limit": "7"},
    }
    created = await call(
        http, "POST", f"/api/v1/namespaces/{namespace}/configmaps", configmap, expect=201
    )
    assert created["metadata"]["uid"]
    read = await call(
        http, "GET", f"/api/v1/namespaces/{namespace}/configmaps/settings", expect=200
    )
    assert read["data"] == {"greeting": "hello", "limit": "7"}
    assert read["metadata"]["namespace"] == namespace
    # Names are unique per namespace: a real API server refuses the second create.
    await call(http, "POST", f"/api/v1/namespaces/{namespace}/configmaps", configmap, expect=409)


async def wait_established(http: aiohttp.ClientSession, name: str) -> dict[str, Any]:
    """Watch the CRD until its Established condition is True; return that CRD."""
    path = (
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        f"?watch=true&fieldSelector=metadata.name%3D{name}&timeoutSeconds=60"
    )
    async with asyncio.timeout(ESTABLISHED_TIMEOUT_S), http.get(path) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:  # one JSON watch event per line
            crd: dict[str, Any] = json.loads(line)["object"]
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return crd
    raise AssertionError(f"watch on {name} ended before it became Established")


async def create_first_resource(
    http: aiohttp.ClientSession, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Create the first custom resource of a just-Established CRD.

    The CRD's REST handler reads CRDs from its own informer, which can trail our watch by a few
    milliseconds and answer 404 meanwhile; there is no event for that catch-up, so retry 404
    only, within a deadline.
    """
    async with asyncio.timeout(10.0):
        while True:
            async with http.post(path, json=body) as response:
                payload: dict[str, Any] = await response.json(content_type=None)
                if response.status != 404:
                    assert response.status == 201, f"POST {path} -> {payload}"
                    return payload
            await asyncio.sleep(0.1)


async def test_crd_becomes_established_and_validates_resources(
    http: aiohttp.ClientSession,
) -> None:
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    await call(http, "POST", crds, CRD, expect=201)
    crd = await wait_established(http, CRD_NAME)
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"

    namespace = await make_namespace(http)
    widgets = f"/apis/{CRD_GROUP}/v1/namespaces/{namespace}/widgets"

    def widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": f"{CRD_GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": spec,
        }

    created = await create_first_resource(http, widgets, widget("small", {"size": 3}))
    assert created["spec"] == {"size": 3, "colour": "blue"}, "schema default not applied"

    # The structural schema is enforced by the server: 422 names the offending field.
    rejected = await call(http, "POST", widgets, widget("huge", {"size": 99}), expect=422)
    assert "spec.size" in rejected["message"]
    rejected = await call(http, "POST", widgets, widget("shapeless", {}), expect=422)
    assert "spec.size" in rejected["message"]

    listed = await call(http, "GET", widgets, expect=200)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["small"]


async def test_authentication_and_rbac_are_enforced(kube_apiserver: KubeApiserver) -> None:
    async with aiohttp.ClientSession(
        base_url=kube_apiserver.server,
        connector=aiohttp.TCPConnector(ssl=kube_apiserver.ssl_context()),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    ) as anonymous:
        bad_token = {"Authorization": "Bearer not-a-token"}
        async with anonymous.get("/api/v1/namespaces", headers=bad_token) as response:
            assert response.status == 401
        user = kube_apiserver.auth_headers(kube_apiserver.user_token)
        async with anonymous.get("/api/v1/namespaces", headers=user) as response:
            assert response.status == 403
            assert kube_apiserver.unprivileged_user in (await response.json())["message"]
        admin = kube_apiserver.auth_headers()
        async with anonymous.get("/api/v1/namespaces", headers=admin) as response:
            assert response.status == 200


async def kubectl(api: KubeApiserver, kubeconfig: Path, *args: str, stdin: str = "") -> str:
    """Run the kubectl built with the server; return stdout, fail with stderr on error."""
    proc = await asyncio.create_subprocess_exec(
        str(api.kubectl),
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={kubeconfig.parent / 'kube-cache'}",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), KUBECTL_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {err.decode(errors='replace')}"
    return out.decode()


@pytest.mark.parametrize("client_cert", [False, True], ids=["token", "client-cert"])
async def test_kubeconfig_identifies_admin_to_kubectl(
    kube_apiserver: KubeApiserver, tmp_path: Path, client_cert: bool
) -> None:
    kubeconfig = kube_apiserver.write_kubeconfig(tmp_path / "kubeconfig", client_cert=client_cert)
    review = json.loads(await kubectl(kube_apiserver, kubeconfig, "auth", "whoami", "-o", "json"))
    assert review["status"]["userInfo"]["username"] == kube_apiserver.admin_user
    assert "system:masters" in review["status"]["userInfo"]["groups"]


async def test_kubectl_server_side_dry_run_persists_nothing(
    kube_apiserver: KubeApiserver, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    namespace = await make_namespace(http)
    kubeconfig = kube_apiserver.write_kubeconfig(tmp_path / "kubeconfig", namespace=namespace)
    manifest = json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}, "data": {"a": "1"}}
    )
    apply = ["apply", "--server-side", "--dry-run=server", "-f", "-"]
    out = await kubectl(kube_apiserver, kubeconfig, *apply, stdin=manifest)
    assert "configmap/dry serverside-applied (server dry run)" in out
    await call(http, "GET", f"/api/v1/namespaces/{namespace}/configmaps/dry", expect=404)

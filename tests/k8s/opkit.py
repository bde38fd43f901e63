"""Test kit for the operator and the router's Kubernetes source, against the real API server.

* `Api`: a small admin client over aiohttp (JSON in, JSON out, statuses asserted) whose
  waits are driven by watches (LIST + WATCH one named object until a predicate holds).
* `served_namespace`: a namespace with a ServiceAccount bound to a Role made of exactly
  the given rules, and a kubeconfig holding that ServiceAccount's token (TokenRequest API),
  so whatever runs with it proves those rules are enough.
* `running_operator`: `python -m smsmesh operator` as a subprocess with such a kubeconfig.

Module fixtures are synchronous (kubectl, subprocess.Popen) so they can outlive the
per-test event loops; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from kube_cluster import KubeApiserver

from smsmesh.local import free_port
from smsmesh_operator import rbac

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
KUBECTL_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
OPERATOR_START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
GROUP_PATH = "/apis/smsmesh.io/v1alpha1"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# -- kubectl (synchronous, for fixtures) ----------------------------------------------------


def kubectl(
    kube: KubeApiserver, kubeconfig: Path, *args: str, stdin: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(kube.kubectl), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=KUBECTL_TIMEOUT_S,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result


def admin_kubeconfig(kube: KubeApiserver, directory: Path) -> Path:
    return kube.write_kubeconfig(directory / "admin.kubeconfig")


def install_crds(kube: KubeApiserver, kubeconfig: Path) -> None:
    """Apply crds/*.yaml (idempotent) and wait until every CRD is Established."""
    kubectl(kube, kubeconfig, "apply", "--server-side", "-f", str(CRDS))
    kubectl(
        kube,
        kubeconfig,
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "-f",
        str(CRDS),
    )


def token_kubeconfig(kube: KubeApiserver, path: Path, token: str, namespace: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": kube.server, "certificate-authority": str(kube.ca_path)},
            }
        ],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [
            {"name": "test", "context": {"cluster": "test", "user": "sa", "namespace": namespace}}
        ],
        "current-context": "test",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


@dataclass
class Identity:
    """A ServiceAccount bound to a Role of given rules, and a kubeconfig with its token."""

    namespace: str
    service_account: str
    token: str
    kubeconfig: Path


def service_account_with_rules(
    kube: KubeApiserver,
    admin: Path,
    namespace: str,
    name: str,
    rules: list[dict[str, list[str]]],
    directory: Path,
    *,
    cluster_wide: bool = False,
) -> Identity:
    """With `cluster_wide`, a ClusterRole and ClusterRoleBinding (named after the namespace)."""
    scope = None if cluster_wide else namespace
    role_name = f"{namespace}-{name}" if cluster_wide else name
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        },
        rbac.role(role_name, scope, rules),
        rbac.binding(role_name, scope, name, namespace),
    ]
    kubectl(
        kube,
        admin,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )
    token = kubectl(
        kube, admin, "create", "token", name, "-n", namespace, "--duration=2h"
    ).stdout.strip()
    kubeconfig = token_kubeconfig(
        kube, directory / f"{namespace}-{name}.kubeconfig", token, namespace
    )
    return Identity(namespace, name, token, kubeconfig)


def create_namespace(kube: KubeApiserver, admin: Path, prefix: str) -> str:
    namespace = unique(prefix)
    kubectl(kube, admin, "create", "namespace", namespace)
    return namespace


# -- the operator as a process ------------------------------------------------------------


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path
    liveness_url: str
    namespace: str
    identity: Identity
    store_url: str | None
    env: dict[str, str] = field(default_factory=dict)

    def logs(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"operator exited with {self.process.returncode}:\n{self.logs()}")

    def liveness(self) -> tuple[int, Any]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.liveness_url, timeout=5) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        return self.process.returncode


def start_operator(
    identity: Identity,
    workdir: Path,
    *,
    store_url: str | None,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    all_namespaces: bool = False,
) -> OperatorProcess:
    """Start the operator for `identity.namespace` with the identity's token; returns once
    its liveness endpoint answers 200."""
    port = free_port()
    liveness = f"http://127.0.0.1:{port}/healthz"
    env = {
        **os.environ,
        "KUBECONFIG": str(identity.kubeconfig),
        "POD_NAMESPACE": identity.namespace,
        "SMSMESH_CONNECTOR_IMAGE": "registry.example/smsmesh:test",
        "SMSMESH_STORE_SECRET": "smsmesh-store",
        "SMSMESH_LOG_LEVEL": "INFO",
        **(extra_env or {}),
    }
    env.pop("SMSMESH_WATCH_NAMESPACE", None)
    if store_url:
        env["SMSMESH_STORE_URL"] = store_url
    else:
        env.pop("SMSMESH_STORE_URL", None)
    argv = [
        sys.executable,
        "-m",
        "smsmesh",
        "operator",
        "run",
        *(["--all-namespaces"] if all_namespaces else ["--namespace", identity.namespace]),
        "--liveness",
        liveness,
        "--status-interval",
        "1",
        "--heartbeat-interval",
        "1",
        "--stale-after",
        "5",
        *args,
    ]
    log = workdir / f"operator-{identity.namespace}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    op = OperatorProcess(process, log, liveness, identity.namespace, identity, store_url, env)
    deadline = time.monotonic() + OPERATOR_START_TIMEOUT_S
    while time.monotonic() < deadline:
        op.check_alive()
        with contextlib.suppress(OSError):
            status, _ = op.liveness()
            if status == 200:
                return op
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.2)  # a bounded pause that also notices an early exit
    op.stop()
    raise AssertionError(f"operator not live after {OPERATOR_START_TIMEOUT_S} s:\n{op.logs()}")


@contextlib.contextmanager
def operator_environment(
    kube: KubeApiserver,
    workdir: Path,
    *,
    store_url: str | None,
    prefix: str = "op",
    rules: list[dict[str, list[str]]] | None = None,
) -> Iterator[OperatorProcess]:
    """CRDs installed, a fresh namespace, the operator's ServiceAccount bound to exactly
    `rules` (default `rbac.operator_rules()`), and the operator running with that token."""
    admin = admin_kubeconfig(kube, workdir)
    install_crds(kube, admin)
    namespace = create_namespace(kube, admin, prefix)
    identity = service_account_with_rules(
        kube,
        admin,
        namespace,
        "smsmesh-operator",
        rbac.operator_rules() if rules is None else rules,
        workdir,
    )
    op = start_operator(identity, workdir, store_url=store_url)
    try:
        yield op
    finally:
        op.stop()
        kubectl(kube, admin, "delete", "namespace", namespace, "--wait=false", check=False)


# -- async admin client --------------------------------------------------------------------


def collection(namespace: str, plural: str, api: str = GROUP_PATH) -> str:
    return f"{api}/namespaces/{namespace}/{plural}"


def core(namespace: str, plural: str) -> str:
    return collection(namespace, plural, "/api/v1")


def apps(namespace: str, plural: str) -> str:
    return collection(namespace, plural, "/apis/apps/v1")


class Api:
    """An admin session on the test API server."""

    def __init__(self, kube: KubeApiserver, token: str | None = None) -> None:
        self.kube = kube
        self.session = aiohttp.ClientSession(
            base_url=kube.server,
            connector=aiohttp.TCPConnector(ssl=kube.ssl_context()),
            headers=kube.auth_headers(token),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        )

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        expect: tuple[int, ...] = (200, 201),
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        async with self.session.request(
            method, path, data=data, headers=headers, params=params
        ) as response:
            payload = await response.json(content_type=None)
            assert response.status in expect, f"{method} {path} -> {response.status}: {payload}"
            return payload

    async def get(self, path: str) -> dict[str, Any] | None:
        async with self.session.get(path) as response:
            if response.status == 404:
                return None
            assert response.status == 200, await response.text()
            result: dict[str, Any] = await response.json()
            return result

    async def create(self, collection_path: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("POST", collection_path, body, expect=(201,))
        return result

    async def merge(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            "PATCH", path, patch, content_type="application/merge-patch+json"
        )
        return result

    async def apply(self, path: str, manifest: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            "PATCH",
            path,
            manifest,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": "tests", "force": "true"},
        )
        return result

    async def delete(self, path: str) -> None:
        await self.call("DELETE", path, expect=(200, 202, 404))

    async def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        listed = await self.call(
            "GET",
            core(namespace, "events"),
            params={"fieldSelector": f"involvedObject.name={name}"},
        )
        return list(listed["items"])

    async def wait_event(
        self, namespace: str, name: str, reason: str, *, timeout: float = 15.0
    ) -> dict[str, Any]:
        """The first Event with `reason` about the object `name`, following a watch."""
        path = core(namespace, "events")
        selector = {"fieldSelector": f"involvedObject.name={name}"}
        seen: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    listed = await self.call("GET", path, params=selector)
                    for event in listed["items"]:
                        seen.append(event["reason"])
                        if event["reason"] == reason:
                            return dict(event)
                    params = {
                        **selector,
                        "watch": "1",
                        "resourceVersion": listed["metadata"]["resourceVersion"],
                        "timeoutSeconds": str(int(timeout) + 1),
                    }
                    no_total = aiohttp.ClientTimeout(total=None, sock_read=timeout + 5)
                    async with self.session.get(path, params=params, timeout=no_total) as response:
                        async for line in response.content:
                            change = json.loads(line)
                            if change["type"] == "ERROR":
                                break
                            seen.append(change["object"].get("reason", ""))
                            if change["object"].get("reason") == reason:
                                return dict(change["object"])
        except TimeoutError:
            pass
        raise AssertionError(f"no {reason} event on {name} within {timeout} s; saw {seen}")

    async def wait_for(
        self,
        collection_path: str,
        name: str,
        predicate: Callable[[dict[str, Any] | None], bool],
        *,
        timeout: float = 20.0,
        what: str = "",
    ) -> dict[str, Any] | None:
        """The named object once `predicate(object or None)` holds, following a watch."""
        selector = {"fieldSelector": f"metadata.name={name}"}
        last: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    listed = await self.call("GET", collection_path, params=selector)
                    items = listed["items"]
                    last = items[0] if items else None
                    if predicate(last):
                        return last
                    params = {
                        **selector,
                        "watch": "1",
                        "resourceVersion": listed["metadata"]["resourceVersion"],
                        "timeoutSeconds": str(int(timeout) + 1),
                    }
                    watch_timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout + 5)
                    async with self.session.get(
                        collection_path, params=params, timeout=watch_timeout
                    ) as response:
                        assert response.status == 200, await response.text()
                        async for line in response.content:
                            event = json.loads(line)
                            if event["type"] == "ERROR":
                                break  # e.g. 410: list again
                            last = event["object"] if event["type"] != "DELETED" else None
                            if predicate(last):
                                return last
        except TimeoutError:
            pass
        raise AssertionError(
            f"{what or name}: condition not met within {timeout} s; last seen:\n"
            f"{json.dumps(last, indent=1)[:3000]}"
        )


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def object_path(collection_path: str, name: str) -> str:
    return f"{collection_path}/{quote(name)}"


class StatusHooks:
    """An application's delivery-status webhook on 127.0.0.1: message id -> last status."""

    def __init__(self) -> None:
        self.statuses: dict[str, str] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/status", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        async with self._changed:
            self.statuses[body["id"]] = body["status"]
            self._changed.notify_all()
        return web.Response(status=204)

    async def wait_for(self, ids: set[str], status: str, timeout: float = 30.0) -> None:
        """Until every message in `ids` has reported `status`."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: all(self.statuses.get(i) == status for i in ids))

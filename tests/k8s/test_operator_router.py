"""The router's Kubernetes source and the whole gateway around the operator, on one machine.

* `KubeSnapshotSource` in-process against snapshot objects written by the test, with a
  token of a ServiceAccount bound to exactly `rbac.router_rules()`.
* `smsmesh router --kube-snapshot` as a process, following the operator's snapshot live.
* "A cluster on one machine": no kubelet runs pods here, so the connector the operator
  describes (its ConfigMap, its args, its env from Secrets) is materialised into a folder
  and an environment and run as a local process, next to the router process, a SQLite
  store and the SMSC simulator; messages go in over HTTP and come back as delivered, and
  the operator's status shows the bind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kube_cluster import KubeApiserver
from opkit import (
    REPO,
    Api,
    Identity,
    OperatorProcess,
    StatusHooks,
    admin_kubeconfig,
    apps,
    collection,
    condition,
    core,
    create_namespace,
    kubectl,
    object_path,
    operator_environment,
    service_account_with_rules,
)

from smsmesh.local import free_port
from smsmesh.simulator.server import Simulator
from smsmesh_operator import children, names, rbac
from smsmesh_operator.digests import digest
from smsmesh_router.config import RouterConfig
from smsmesh_router.kube import (
    KubeAccess,
    KubeSnapshotSource,
    ObjectFollower,
    SnapshotError,
    _Gone,
)

pytestmark = pytest.mark.k8s

API = "smsmesh.io/v1alpha1"
ROUTER_START_TIMEOUT_S = 30.0


# -- fixtures ---------------------------------------------------------------------------------


@dataclass
class RouterProcess:
    process: subprocess.Popen[bytes]
    log: Path
    url: str

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


@dataclass
class Cluster:
    operator: OperatorProcess
    router_identity: Identity
    router: RouterProcess
    store_url: str
    workdir: Path

    @property
    def namespace(self) -> str:
        return self.operator.namespace


def _http_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_router(identity: Identity, store_url: str, workdir: Path) -> RouterProcess:
    port = free_port()
    log = workdir / "router.log"
    env = {**os.environ, "KUBECONFIG": str(identity.kubeconfig), "SMSMESH_LOG_LEVEL": "INFO"}
    argv = [
        sys.executable, "-m", "smsmesh", "router",
        "--kube-snapshot", f"{identity.namespace}/{names.ROUTING_CONFIGMAP}",
        "--store", store_url,
        "--port", str(port),
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    router = RouterProcess(process, log, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + ROUTER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"router exited:\n{router.logs()}")
        if _http_ok(f"{router.url}/readyz"):
            return router
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.2)  # bounded pause that notices an early exit
    router.stop()
    raise AssertionError(f"router not ready:\n{router.logs()}")


@contextlib.contextmanager
def store_for(workdir: Path) -> Iterator[str]:
    """PostgreSQL (a schema of its own) when SMSMESH_TEST_POSTGRES_URL is set, else SQLite."""
    base = os.environ.get("SMSMESH_TEST_POSTGRES_URL")
    if not base:
        yield f"sqlite:///{workdir / 'store.db'}"
        return
    schema = f"k8s_{uuid.uuid4().hex[:10]}"
    yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    asyncio.run(_drop_schema(base, schema))


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.split("?")[0], timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE', timeout=10)
    finally:
        await conn.close(timeout=10)


@pytest.fixture(scope="module")
def cluster(
    kube_apiserver: KubeApiserver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The operator and a router process (its own least-privilege ServiceAccount) sharing
    a store (SQLite, or PostgreSQL when SMSMESH_TEST_POSTGRES_URL is set), in one namespace."""
    workdir = tmp_path_factory.mktemp("gateway")
    with (
        store_for(workdir) as store_url,
        operator_environment(kube_apiserver, workdir, store_url=store_url, prefix="gw") as op,
    ):
        admin = admin_kubeconfig(kube_apiserver, workdir)
        identity = service_account_with_rules(
            kube_apiserver, admin, op.namespace, "smsmesh-router", rbac.router_rules(), workdir
        )
        # What the Helm chart provides: the store URL in a Secret the connectors read.
        store_secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "smsmesh-store", "namespace": op.namespace},
            "stringData": {"url": store_url},
        }
        kubectl(kube_apiserver, admin, "apply", "-f", "-", stdin=json.dumps(store_secret))
        router = start_router(identity, store_url, workdir)
        try:
            yield Cluster(op, identity, router, store_url, workdir)
        finally:
            router.stop()


@pytest.fixture(scope="module")
def snapshot_namespace(
    kube_apiserver: KubeApiserver, tmp_path_factory: pytest.TempPathFactory
) -> Identity:
    """A namespace without an operator, where tests write the snapshot objects themselves;
    the identity is a router's (exactly `rbac.router_rules()`)."""
    workdir = tmp_path_factory.mktemp("snapshot")
    admin = admin_kubeconfig(kube_apiserver, workdir)
    namespace = create_namespace(kube_apiserver, admin, "snap")
    return service_account_with_rules(
        kube_apiserver, admin, namespace, "smsmesh-router", rbac.router_rules(), workdir
    )


@pytest.fixture
async def api(kube_apiserver: KubeApiserver) -> AsyncIterator[Api]:
    async with Api(kube_apiserver) as session:
        yield session


# -- the snapshot source in-process -------------------------------------------------------------


def snapshot_objects(
    namespace: str, routes: list[str], keys: dict[str, str], *, routing_yaml: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A routing ConfigMap and keys Secret as the operator writes them: one application
    `app` with the given API keys (Secret `app-keys`), one route per name."""
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": API,
            "kind": "SmsApplication",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {"apiKeySecretRefs": [{"name": "app-keys", "key": k} for k in sorted(keys)]},
        }
    ]
    docs += [
        {
            "apiVersion": API,
            "kind": "SmsRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"targets": [{"connection": "conn"}]},
        }
        for name in routes
    ]
    values = {"app-keys": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()}}
    keys_text = children.keys_yaml(namespace, values)
    routing = routing_yaml if routing_yaml is not None else children.dump_documents(docs)
    configmap = children.routing_configmap(namespace, routing, digest(keys_text))
    secret = children.keys_secret(namespace, keys_text, "test")
    return configmap, secret


class Applied:
    """The configurations a source applied, awaitable."""

    def __init__(self) -> None:
        self.configs: list[RouterConfig] = []
        self.changed = asyncio.Event()

    def __call__(self, config: RouterConfig) -> None:
        self.configs.append(config)
        self.changed.set()

    async def next(self, timeout: float = 5.0) -> RouterConfig:
        async with asyncio.timeout(timeout):
            await self.changed.wait()
        self.changed.clear()
        return self.configs[-1]


async def write_snapshot(
    api: Api, namespace: str, configmap: dict[str, Any] | None, secret: dict[str, Any] | None
) -> None:
    if secret is not None:
        await api.apply(object_path(core(namespace, "secrets"), names.ROUTING_SECRET), secret)
    if configmap is not None:
        await api.apply(
            object_path(core(namespace, "configmaps"), names.ROUTING_CONFIGMAP), configmap
        )


def access_for(kube: KubeApiserver, identity: Identity) -> KubeAccess:
    return KubeAccess(server=kube.server, ca_file=str(kube.ca_path), token=identity.token)


async def changed_once(source: KubeSnapshotSource, what: str) -> None:
    """Wait for the source's next attempt (applied, rejected or pending)."""
    async with asyncio.timeout(5), source.changed:
        await source.changed.wait()


async def test_snapshot_source_applies_only_consistent_valid_snapshots(
    kube_apiserver: KubeApiserver, snapshot_namespace: Identity, api: Api
) -> None:
    ns = snapshot_namespace.namespace
    first_cm, first_secret = snapshot_objects(ns, ["one"], {"k1": "key-one"})
    await write_snapshot(api, ns, first_cm, first_secret)
    applied = Applied()
    source = KubeSnapshotSource(
        ns, apply=applied, access=access_for(kube_apiserver, snapshot_namespace)
    )
    await source.start(initial_timeout=5)
    try:
        config = await applied.next()
        assert config.routing.route_names == ("one",)
        assert config.application_for_key("key-one") is not None

        # A new key arrives in the Secret first: the pair does not match, nothing changes.
        second_cm, second_secret = snapshot_objects(
            ns, ["one", "two"], {"k1": "key-one", "k2": "key-two"}
        )
        waiting = asyncio.create_task(changed_once(source, "secret"))
        await write_snapshot(api, ns, None, second_secret)
        await waiting
        assert len(applied.configs) == 1
        assert source.rejected == 0  # a half-written snapshot is not an error
        # Then the ConfigMap that goes with it: applied, with both keys and routes.
        await write_snapshot(api, ns, second_cm, None)
        config = await applied.next()
        assert config.routing.route_names == ("one", "two")
        assert config.application_for_key("key-two") is not None

        # A broken routing.yaml (that claims to match the keys) is refused; the last good
        # configuration stays live.
        broken, _ = snapshot_objects(
            ns, [], {"k1": "key-one", "k2": "key-two"}, routing_yaml="kind: [unclosed"
        )
        waiting = asyncio.create_task(changed_once(source, "broken"))
        await write_snapshot(api, ns, broken, None)
        await waiting
        assert source.rejected == 1
        assert "not valid YAML" in (source.last_error or "")
        assert len(applied.configs) == 2

        # The ConfigMap deleted: nothing to build from; still the last good one.
        waiting = asyncio.create_task(changed_once(source, "deleted"))
        await api.delete(object_path(core(ns, "configmaps"), names.ROUTING_CONFIGMAP))
        await waiting
        assert source.rejected == 2
        assert len(applied.configs) == 2
    finally:
        await source.stop()


async def test_follower_relists_when_its_resource_version_is_refused(
    kube_apiserver: KubeApiserver, snapshot_namespace: Identity
) -> None:
    """A watch the server refuses (410 Gone, or here a resourceVersion it cannot parse)
    sends the follower back to LIST, from where it watches on."""
    access = access_for(kube_apiserver, snapshot_namespace)
    path = core(snapshot_namespace.namespace, "configmaps")
    async with aiohttp.ClientSession(
        base_url=access.server, connector=aiohttp.TCPConnector(ssl=access.ssl_context())
    ) as session:
        follower = ObjectFollower(
            session, access, path, names.ROUTING_CONFIGMAP, lambda: None,
            watch_timeout=5, request_timeout=5,
        )  # fmt: skip
        follower.resource_version = "not-a-version"
        with pytest.raises(SnapshotError, match=r"WATCH .*: HTTP [45]\d\d"):
            await follower.watch_once()
        # The watch cache keeps recent history, so a real 410 cannot be provoked quickly;
        # both ways the server signals it are recognised:
        with pytest.raises(_Gone):
            follower._event({"type": "ERROR", "object": {"kind": "Status", "code": 410}})
        runner = asyncio.create_task(follower.run())
        try:
            async with asyncio.timeout(10):
                await follower.listed.wait()  # run() listed again and goes on watching
            assert follower.resource_version != "not-a-version"
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner


def test_router_identity_reads_the_snapshot_and_nothing_else(
    kube_apiserver: KubeApiserver, snapshot_namespace: Identity
) -> None:
    ns = snapshot_namespace.namespace

    def can(*args: str) -> bool:
        result = kubectl(
            kube_apiserver,
            snapshot_namespace.kubeconfig,
            "auth",
            "can-i",
            *args,
            "-n",
            ns,
            check=False,
        )
        return result.stdout.strip() == "yes"

    assert can("watch", f"configmaps/{names.ROUTING_CONFIGMAP}")
    assert can("get", f"secrets/{names.ROUTING_SECRET}")
    assert not can("get", "secrets/smsc-credentials")
    assert not can("list", "secrets")  # only with the metadata.name selector
    assert not can("list", "smsroutes.smsmesh.io")
    assert not can("patch", f"configmaps/{names.ROUTING_CONFIGMAP}")


# -- the gateway: operator, router process, connector process, simulator -------------------------


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


def secret(name: str, **values: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": values}


async def explain(
    session: aiohttp.ClientSession, router: RouterProcess, key: str
) -> tuple[int, Any]:
    async with session.post(
        f"{router.url}/v1/routes:explain",
        json={"to": "+31612345678", "from": "Shop", "text": "hi"},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        return response.status, await response.json(content_type=None)


async def until_route(
    session: aiohttp.ClientSession, router: RouterProcess, key: str, route: str, timeout: float
) -> float:
    """Seconds until the router explains messages of `key` as taking `route`.

    The router process offers no change notification over HTTP, so this polls (bounded)."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        status, last = await explain(session, router, key)
        if status == 200 and last.get("route") == route:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"router never chose {route} within {timeout} s; last answer {last}\n{router.logs()}"
    )


async def test_router_process_follows_the_operators_snapshot_live(
    cluster: Cluster, api: Api
) -> None:
    ns = cluster.namespace
    await api.create(core(ns, "secrets"), secret("live-creds", systemId="x", password="y"))
    await api.create(core(ns, "secrets"), secret("live-key", apiKey="live-api-key"))
    await api.create(
        collection(ns, "smppconnections"),
        resource(
            "SmppConnection",
            "live-conn",
            {"host": "127.0.0.1", "credentialsSecretRef": {"name": "live-creds"}},
        ),
    )
    await api.create(
        collection(ns, "smsapplications"),
        resource(
            "SmsApplication",
            "live-app",
            {"apiKeySecretRefs": [{"name": "live-key", "key": "apiKey"}]},
        ),
    )
    await api.create(
        collection(ns, "smsroutes"),
        resource(
            "SmsRoute",
            "live-slow",
            {
                "priority": 100,
                "match": {"applications": ["live-app"]},
                "targets": [{"connection": "live-conn"}],
            },
        ),
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await until_route(session, cluster.router, "live-api-key", "live-slow", timeout=15)
        await api.create(
            collection(ns, "smsroutes"),
            resource(
                "SmsRoute",
                "live-fast",
                {
                    "priority": 1,
                    "match": {"applications": ["live-app"]},
                    "targets": [{"connection": "live-conn"}],
                },
            ),
        )
        took = await until_route(session, cluster.router, "live-api-key", "live-fast", timeout=5)
        assert took < 3.0, f"route change reached the router after {took:.1f} s"
        # An invalid change (a target that does not exist) stays out; the router keeps going.
        await api.merge(
            object_path(collection(ns, "smsroutes"), "live-fast"),
            {"spec": {"targets": [{"connection": "nowhere"}]}},
        )
        await until_route(session, cluster.router, "live-api-key", "live-slow", timeout=5)


async def materialise_connector(
    api: Api, ns: str, connection: str, folder: Path
) -> tuple[list[str], dict[str, str]]:
    """The connector the operator described, as a local command line and environment:
    its ConfigMap as files, its args, and its env with every secretKeyRef resolved."""
    child = names.connector_name(connection)
    configmap = await api.get(object_path(core(ns, "configmaps"), child))
    deployment = await api.get(object_path(apps(ns, "deployments"), child))
    assert configmap is not None
    assert deployment is not None
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    for key, text in configmap["data"].items():
        await asyncio.to_thread((folder / key).write_text, text)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = [folder.as_posix() if a == names.CONNECTOR_CONFIG_DIR else a for a in container["args"]]
    env: dict[str, str] = {}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        source = await api.get(object_path(core(ns, "secrets"), ref["name"]))
        assert source is not None, f"{entry['name']} refers to missing Secret {ref['name']}"
        env[entry["name"]] = base64.b64decode(source["data"][ref["key"]]).decode()
    return args, env


async def test_cluster_on_one_machine_delivers_messages_and_reports_the_bind(
    cluster: Cluster, api: Api, tmp_path: Path
) -> None:
    ns = cluster.namespace
    hooks = StatusHooks()
    await hooks.start()
    sim = Simulator(
        host="127.0.0.1", port=0, system_id="e2e", password="secret1", receipt_delay=0.05
    )
    await sim.start()
    connector: asyncio.subprocess.Process | None = None
    try:
        await api.create(
            core(ns, "secrets"), secret("sim-creds", systemId="e2e", password="secret1")
        )
        await api.create(core(ns, "secrets"), secret("shop-key", apiKey="shop-api-key"))
        await api.create(
            collection(ns, "smppconnections"),
            resource("SmppConnection", "sim", {
                "host": "127.0.0.1", "port": sim.port,
                "credentialsSecretRef": {"name": "sim-creds"},
                "keepAlive": {"enquireLinkSeconds": 5, "responseTimeoutSeconds": 5},
                "reconnect": {"initialDelaySeconds": 0.1, "maxDelaySeconds": 1},
            }),
        )  # fmt: skip
        await api.create(
            collection(ns, "smsapplications"),
            resource("SmsApplication", "shop", {
                "apiKeySecretRefs": [{"name": "shop-key", "key": "apiKey"}],
                "defaultSender": "smsmesh",
                "callbackUrl": f"{hooks.url}/status",
            }),
        )  # fmt: skip
        await api.create(
            collection(ns, "smsroutes"),
            resource(
                "SmsRoute",
                "shop-route",
                {"match": {"applications": ["shop"]}, "targets": [{"connection": "sim"}]},
            ),
        )
        await api.wait_for(
            apps(ns, "deployments"), names.connector_name("sim"), lambda d: d is not None
        )
        args, env = await materialise_connector(api, ns, "sim", tmp_path / "connection")
        assert env["SMSMESH_STORE_URL"] == cluster.store_url
        log = (tmp_path / "connector.log").open("ab")
        connector = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smsmesh", *args,
            stdout=log, stderr=log, cwd=REPO,
            env={**os.environ, "SMSMESH_LOG_LEVEL": "INFO", **env},
        )  # fmt: skip
        log.close()

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await until_route(session, cluster.router, "shop-api-key", "shop-route", timeout=15)
            ids = set()
            for n in range(5):
                async with session.post(
                    f"{cluster.router.url}/v1/messages",
                    json={"to": f"+3161234567{n}", "text": f"hello {n}"},
                    headers={"Authorization": "Bearer shop-api-key"},
                ) as response:
                    body = await response.json()
                    assert response.status == 202, body
                    ids.add(body["id"])
            await hooks.wait_for(ids, "delivered", timeout=30)

        # The operator's ticker reads the bind from the store into the status.
        connections = collection(ns, "smppconnections")
        bound = await api.wait_for(
            connections,
            "sim",
            lambda o: (
                (o or {}).get("status", {}).get("bound") is True
                and ((o or {})["status"].get("achievedTps") or 0) > 0
            ),
        )
        assert condition(bound, "Bound")["status"] == "True"  # type: ignore[index]
        assert bound["status"]["achievedTps"] == round(5 / 60, 2)  # type: ignore[index]
        assert bound["status"]["queueDepth"] == 0  # type: ignore[index]
        # And with the Deployment available (we play its controller), the summary is Ready.
        deployment = await api.get(
            object_path(apps(ns, "deployments"), names.connector_name("sim"))
        )
        assert deployment is not None
        await api.merge(
            object_path(apps(ns, "deployments"), names.connector_name("sim")) + "/status",
            {
                "status": {
                    "observedGeneration": deployment["metadata"]["generation"],
                    "replicas": 1,
                    "updatedReplicas": 1,
                    "readyReplicas": 1,
                    "availableReplicas": 1,
                }
            },
        )
        await api.wait_for(
            connections, "sim", lambda o: (condition(o, "Ready") or {}).get("status") == "True"
        )

        # A graceful stop unbinds: the status follows.
        connector.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await connector.wait() == 0
        connector = None
        await api.wait_for(
            connections, "sim", lambda o: (o or {}).get("status", {}).get("bound") is False
        )
        await api.wait_event(ns, "sim", "Unbound")
    finally:
        if connector is not None and connector.returncode is None:
            connector.kill()
            await connector.wait()
        await sim.stop()
        await hooks.stop()

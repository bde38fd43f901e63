"""The operator against a real kube-apiserver, run as `smsmesh operator` with a token of a
ServiceAccount bound to exactly `rbac.operator_rules()`.

No kubelet or controller-manager runs: no pod ever starts and no garbage collector
cascades deletions, so the tests read what the operator wrote (Deployment specs, owner
references, statuses, events), play the Deployment controller where availability matters
(patching deployments/status), and publish connector states into the real store file.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_cluster import KubeApiserver
from opkit import (
    Api,
    OperatorProcess,
    admin_kubeconfig,
    apps,
    collection,
    condition,
    core,
    kubectl,
    object_path,
    operator_environment,
)

from smsmesh.model import ConnectionState
from smsmesh.resources import ResourceSet, secret_env_name
from smsmesh.store import open_store
from smsmesh_operator import names, rbac
from smsmesh_router.kube import keys_digest, load_documents

pytestmark = pytest.mark.k8s

API = "smsmesh.io/v1alpha1"


def without_configmap_watch() -> list[dict[str, list[str]]]:
    """The operator's rules minus `watch` on ConfigMaps: its heartbeat never comes back."""
    rules = []
    for rule in rbac.operator_rules():
        if rule["resources"] == ["configmaps"]:
            rule = {**rule, "verbs": [v for v in rule["verbs"] if v != "watch"]}
        rules.append(rule)
    return rules


@pytest.fixture(scope="module")
def operators(
    kube_apiserver: KubeApiserver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OperatorProcess, OperatorProcess]]:
    """The operator under test, and a second one whose ConfigMap watch is forbidden (for
    the liveness test; started now so that kopf's 10 s probe cache has expired by then)."""
    workdir = tmp_path_factory.mktemp("operator")
    store_url = f"sqlite:///{workdir / 'store.db'}"
    with (
        operator_environment(kube_apiserver, workdir, store_url=store_url) as op,
        operator_environment(
            kube_apiserver, workdir, store_url=None, prefix="blind", rules=without_configmap_watch()
        ) as blind,
    ):
        yield op, blind


@pytest.fixture(scope="module")
def operator(operators: tuple[OperatorProcess, OperatorProcess]) -> OperatorProcess:
    return operators[0]


@pytest.fixture
async def api(kube_apiserver: KubeApiserver, operator: OperatorProcess) -> AsyncIterator[Api]:
    async with Api(kube_apiserver) as session:
        yield session
    operator.check_alive()


def secret(name: str, **values: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": values}


def connection(name: str, secret_name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "SmppConnection",
        "metadata": {"name": name},
        "spec": {
            "host": "smsc.example",
            "port": 2775,
            "credentialsSecretRef": {"name": secret_name},
            **spec,
        },
    }


def application(name: str, key_secret: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "SmsApplication",
        "metadata": {"name": name},
        "spec": {"apiKeySecretRefs": [{"name": key_secret, "key": "apiKey"}], **spec},
    }


def route(name: str, *targets: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "SmsRoute",
        "metadata": {"name": name},
        "spec": {"targets": [{"connection": t} for t in targets], **spec},
    }


def observed(obj: dict[str, Any] | None) -> bool:
    """The operator has written a status for the object's current generation."""
    return (
        obj is not None
        and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
    )


def ready(obj: dict[str, Any] | None, status: str, reason: str | None = None) -> bool:
    cond = condition(obj, "Ready")
    return (
        observed(obj)
        and cond is not None
        and cond["status"] == status
        and (reason is None or cond["reason"] == reason)
    )


async def wait_event(api: Api, namespace: str, name: str, reason: str) -> None:
    """Events are posted in the background: wait until one with `reason` is on `name`."""
    await api.wait_event(namespace, name, reason)


# -- CRDs -------------------------------------------------------------------------------------


BAD_RESOURCES = {
    "port out of range": (
        connection("bad-port", "creds", port=70000),
        "spec.port: Invalid value: 70000: spec.port in body should be less than or equal to 65535",
    ),
    "typo in credentialsSecretRef": (
        connection("typo", "creds")
        | {"spec": {"host": "h", "credentialsSecretRef": {"name": "c", "pasword": "p"}}},
        'unknown field "spec.credentialsSecretRef.pasword"',
    ),
    "inline password": (
        connection("inline", "creds")
        | {"spec": {"host": "h", "password": "hunter2", "credentialsSecretRef": {"name": "c"}}},
        'unknown field "spec.password"',
    ),
    "insecureSkipVerify without tls.enabled": (
        connection("tls", "creds", tls={"insecureSkipVerify": True}),
        "tls.serverName, tls.caSecretRef and tls.insecureSkipVerify require tls.enabled: true",
    ),
    "route without targets": (
        route("empty") | {"spec": {"targets": []}},
        "spec.targets: Invalid value: 0: spec.targets in body should have at least 1 items",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RESOURCES))
def test_api_server_rejects_bad_resources_with_readable_messages(
    kube_apiserver: KubeApiserver, operator: OperatorProcess, tmp_path: Path, case: str
) -> None:
    manifest, message = BAD_RESOURCES[case]
    admin = admin_kubeconfig(kube_apiserver, tmp_path)
    result = kubectl(
        kube_apiserver,
        admin,
        "apply",
        "-n",
        operator.namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump(manifest),
        check=False,
    )
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr


# -- connectors --------------------------------------------------------------------------------


async def create_connection(
    api: Api, ns: str, name: str, **spec: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An SmppConnection with its credentials Secret; returns (connection, Deployment)."""
    await api.create(core(ns, "secrets"), secret(f"{name}-creds", systemId="esme", password="pw"))
    created = await api.create(
        collection(ns, "smppconnections"), connection(name, f"{name}-creds", **spec)
    )
    deployment = await api.wait_for(
        apps(ns, "deployments"), names.connector_name(name), lambda d: d is not None
    )
    assert deployment is not None
    return created, deployment


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["connector"]
    return dict(containers[0])


def config_hash(deployment: dict[str, Any] | None) -> str | None:
    if deployment is None:
        return None
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations.get(names.ANNOTATION_CONFIG_HASH)


async def test_connection_gets_a_single_connector_with_secret_refs_and_owner(
    api: Api, operator: OperatorProcess
) -> None:
    ns = operator.namespace
    await api.create(core(ns, "secrets"), secret("mo-app-key", apiKey="k1"))
    await api.create(
        collection(ns, "smsapplications"),
        application("mo-app", "mo-app-key", inbound={"webhookUrl": "http://app.example/mo"}),
    )
    conn, deployment = await create_connection(
        api, ns, "alpha", inbound={"application": "mo-app"}, throughput={"tps": 50}
    )
    owner = {
        "apiVersion": API,
        "kind": "SmppConnection",
        "name": "alpha",
        "uid": conn["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    spec = deployment["spec"]
    assert deployment["metadata"]["ownerReferences"] == [owner]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    labels = spec["template"]["metadata"]["labels"]
    assert labels[names.LABEL_NAME] == "smsmesh"
    assert labels[names.LABEL_COMPONENT] == "connector"
    assert labels[names.LABEL_INSTANCE] == "alpha"
    assert labels[names.LABEL_CONNECTION] == "alpha"
    assert config_hash(deployment)
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "smsmesh-connector"
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] == 30
    main = container(deployment)
    assert main["image"] == "registry.example/smsmesh:test"
    assert main["args"] == [
        "connector",
        "--resources",
        "/etc/smsmesh/connection",
        "--connection",
        "alpha",
    ]
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert main["securityContext"]["runAsNonRoot"] is True
    assert main["resources"]["requests"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in main["env"] if "valueFrom" in e}
    assert env == {
        "SMSMESH_STORE_URL": {"name": "smsmesh-store", "key": "url"},
        secret_env_name("alpha-creds", "systemId"): {"name": "alpha-creds", "key": "systemId"},
        secret_env_name("alpha-creds", "password"): {"name": "alpha-creds", "key": "password"},
    }
    assert {"name": "connection", "mountPath": "/etc/smsmesh/connection", "readOnly": True} in main[
        "volumeMounts"
    ]

    plain = {e["name"]: e["value"] for e in main["env"] if "value" in e}
    assert plain == {"SMSMESH_METRICS_HOST": "0.0.0.0", "SMSMESH_METRICS_PORT": "9464"}
    probes = {p: main[p]["httpGet"] for p in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"  # ready while bound
    assert probes["livenessProbe"]["path"] == "/healthz"  # alive while the loop runs

    configmap = await api.get(object_path(core(ns, "configmaps"), names.connector_name("alpha")))
    assert configmap is not None
    assert configmap["metadata"]["ownerReferences"] == [owner]
    resources = ResourceSet(environ={})
    load_documents(configmap["data"]["connection.yaml"], resources, origin="connection.yaml")
    assert set(resources.connections) == {"alpha"}
    assert resources.connections["alpha"].spec.throughput.tps == 50
    assert set(resources.applications) == {"mo-app"}  # the MO webhook URL travels with it

    done = await api.wait_for(
        collection(ns, "smppconnections"),
        "alpha",
        lambda o: ready(o, "False", "ConnectorUnavailable"),
    )
    assert done is not None
    assert condition(done, "ConnectorAvailable")["status"] == "False"  # type: ignore[index]
    assert condition(done, "Bound")["reason"] == "NotReporting"  # type: ignore[index]
    assert done["status"]["bound"] is False
    assert done["status"]["queueDepth"] == 0
    await wait_event(api, ns, "alpha", "ConnectorCreated")


async def test_spec_and_secret_changes_roll_the_connector(
    api: Api, operator: OperatorProcess
) -> None:
    ns = operator.namespace
    conn, deployment = await create_connection(api, ns, "bravo")
    first = config_hash(deployment)
    path = object_path(collection(ns, "smppconnections"), "bravo")
    await api.wait_for(collection(ns, "smppconnections"), "bravo", observed)

    updated = await api.merge(path, {"spec": {"throughput": {"tps": 20}}})
    generation = updated["metadata"]["generation"]
    assert generation == conn["metadata"]["generation"] + 1
    rolled = await api.wait_for(
        apps(ns, "deployments"), names.connector_name("bravo"), lambda d: config_hash(d) != first
    )
    second = config_hash(rolled)
    now = await api.wait_for(
        collection(ns, "smppconnections"),
        "bravo",
        lambda o: o is not None and o["status"].get("observedGeneration") == generation,
    )
    assert now is not None
    await wait_event(api, ns, "bravo", "ConnectorRolled")

    # Rotating the password changes the Secret's resourceVersion: the connector rolls too.
    await api.merge(
        object_path(core(ns, "secrets"), "bravo-creds"), {"stringData": {"password": "new"}}
    )
    await api.wait_for(
        apps(ns, "deployments"),
        names.connector_name("bravo"),
        lambda d: config_hash(d) not in (first, second, None),
    )


async def test_pause_scales_to_zero_and_resume_scales_back(
    api: Api, operator: OperatorProcess
) -> None:
    ns = operator.namespace
    _, deployment = await create_connection(api, ns, "charlie")
    digest = config_hash(deployment)
    path = object_path(collection(ns, "smppconnections"), "charlie")
    deployments = apps(ns, "deployments")
    child = names.connector_name("charlie")

    await api.merge(path, {"metadata": {"annotations": {names.ANNOTATION_PAUSED: "true"}}})
    paused = await api.wait_for(
        deployments, child, lambda d: d is not None and d["spec"]["replicas"] == 0
    )
    assert config_hash(paused) == digest  # pausing is not a new configuration
    await api.wait_for(
        collection(ns, "smppconnections"), "charlie", lambda o: ready(o, "False", "Paused")
    )
    await wait_event(api, ns, "charlie", "Paused")

    await api.merge(path, {"metadata": {"annotations": {names.ANNOTATION_PAUSED: None}}})
    await api.wait_for(deployments, child, lambda d: d is not None and d["spec"]["replicas"] == 1)
    resumed = await api.wait_for(
        collection(ns, "smppconnections"),
        "charlie",
        lambda o: o is not None and condition(o, "Ready")["reason"] != "Paused",  # type: ignore[index]
    )
    assert resumed is not None
    await wait_event(api, ns, "charlie", "Resumed")


async def test_hand_edits_to_a_connector_are_put_back(api: Api, operator: OperatorProcess) -> None:
    ns = operator.namespace
    await create_connection(api, ns, "golf")
    child = names.connector_name("golf")
    deployments, configmaps = apps(ns, "deployments"), core(ns, "configmaps")
    original = await api.wait_for(configmaps, child, lambda c: c is not None)
    assert original is not None
    # Two replicas would mean two binds with the same credentials: never allowed to stay.
    await api.merge(object_path(deployments, child), {"spec": {"replicas": 2}})
    await api.wait_for(deployments, child, lambda d: d is not None and d["spec"]["replicas"] == 1)
    await api.merge(object_path(configmaps, child), {"data": {"connection.yaml": "edited: true"}})
    await api.wait_for(configmaps, child, lambda c: c is not None and c["data"] == original["data"])


async def test_deleting_a_connection_removes_its_connector(
    api: Api, operator: OperatorProcess
) -> None:
    ns = operator.namespace
    await create_connection(api, ns, "delta")
    child = names.connector_name("delta")
    await api.wait_for(core(ns, "configmaps"), child, lambda c: c is not None)
    await api.delete(object_path(collection(ns, "smppconnections"), "delta"))
    # No garbage collector runs here: the operator itself deletes what it made.
    await api.wait_for(apps(ns, "deployments"), child, lambda d: d is None)
    await api.wait_for(core(ns, "configmaps"), child, lambda c: c is None)


# -- routes, applications and the routing snapshot ---------------------------------------------


def snapshot_documents(configmap: dict[str, Any], keys_secret: dict[str, Any]) -> ResourceSet:
    keys = base64.b64decode(keys_secret["data"]["keys.yaml"]).decode()
    assert configmap["metadata"]["annotations"][names.ANNOTATION_KEYS_HASH] == keys_digest(keys)
    resources = ResourceSet(environ={})
    load_documents(configmap["data"]["routing.yaml"], resources, origin="routing.yaml")
    load_documents(keys, resources, origin="keys.yaml")
    return resources


async def test_invalid_objects_are_flagged_and_left_out_of_the_snapshot(
    api: Api, operator: OperatorProcess
) -> None:
    ns = operator.namespace
    await create_connection(api, ns, "echo")
    await api.create(
        core(ns, "secrets"), secret("shop-key", apiKey="shop-secret", unrelated="not-for-routers")
    )
    await api.create(core(ns, "secrets"), secret("other-secret", apiKey="never-copied"))
    await api.create(collection(ns, "smsapplications"), application("shop", "shop-key"))
    # Accepted by the CRD, refused by the models: defaultSender outside allowedSenders.
    await api.create(
        collection(ns, "smsapplications"),
        application("odd", "shop-key", defaultSender="Other", allowedSenders=["Shop*"]),
    )
    await api.create(
        collection(ns, "smsroutes"), route("good", "echo", match={"applications": ["shop"]})
    )
    await api.create(collection(ns, "smsroutes"), route("dangling", "no-such-connection"))

    routes = collection(ns, "smsroutes")
    good = await api.wait_for(routes, "good", lambda o: ready(o, "True", "Accepted"))
    assert condition(good, "ResolvedRefs")["status"] == "True"  # type: ignore[index]
    bad = await api.wait_for(
        routes, "dangling", lambda o: ready(o, "False", "UnresolvedReferences")
    )
    message = condition(bad, "Ready")["message"]  # type: ignore[index]
    assert "target connection 'no-such-connection' does not exist" in message
    assert "SMSMESH_SECRET" not in message  # the loader's local-mode hint is dropped
    odd = await api.wait_for(
        collection(ns, "smsapplications"), "odd", lambda o: ready(o, "False", "InvalidSpec")
    )
    assert "defaultSender 'Other' is not in allowedSenders" in condition(odd, "Ready")["message"]  # type: ignore[index]
    invalid_event = await api.wait_event(ns, "dangling", "UnresolvedReferences")
    assert invalid_event["type"] == "Warning"

    configmap = await api.wait_for(
        core(ns, "configmaps"),
        names.ROUTING_CONFIGMAP,
        lambda c: c is not None and "name: good" in c["data"]["routing.yaml"],
    )
    assert configmap is not None
    keys_secret = await api.get(object_path(core(ns, "secrets"), names.ROUTING_SECRET))
    assert keys_secret is not None
    snapshot = snapshot_documents(configmap, keys_secret)
    assert "good" in snapshot.routes
    assert "dangling" not in snapshot.routes
    assert "shop" in snapshot.applications
    assert "odd" not in snapshot.applications
    assert snapshot.connections == {}  # routers never see connection specs
    # Exactly the referenced keys: the shop key, not its neighbour, not other Secrets.
    referenced = {
        ref.name for app in snapshot.applications.values() for ref in app.spec.api_key_secret_refs
    }
    assert set(snapshot.secrets) == referenced
    assert "other-secret" not in snapshot.secrets
    assert "echo-creds" not in snapshot.secrets
    assert snapshot.secrets["shop-key"].keys() == ["apiKey"]
    assert (
        snapshot.secret_value(snapshot.applications["shop"].spec.api_key_secret_refs[0])
        == "shop-secret"
    )

    # Fixing the route brings it in.
    await api.merge(
        object_path(routes, "dangling"), {"spec": {"targets": [{"connection": "echo"}]}}
    )
    await api.wait_for(routes, "dangling", lambda o: ready(o, "True", "Accepted"))
    await api.wait_for(
        core(ns, "configmaps"),
        names.ROUTING_CONFIGMAP,
        lambda c: c is not None and "name: dangling" in c["data"]["routing.yaml"],
    )


async def test_available_and_bound_connector_makes_the_connection_ready(
    api: Api, operator: OperatorProcess
) -> None:
    ns = operator.namespace
    _, deployment = await create_connection(api, ns, "foxtrot")
    connections = collection(ns, "smppconnections")
    # Play the Deployment controller (none runs here): the pod of this spec is available.
    generation = deployment["metadata"]["generation"]
    await api.merge(
        object_path(apps(ns, "deployments"), names.connector_name("foxtrot")) + "/status",
        {
            "status": {
                "observedGeneration": generation,
                "replicas": 1,
                "updatedReplicas": 1,
                "readyReplicas": 1,
                "availableReplicas": 1,
            }
        },
    )
    await api.wait_for(
        connections,
        "foxtrot",
        lambda o: (
            condition(o, "ConnectorAvailable") is not None
            and condition(o, "ConnectorAvailable")["status"] == "True"
        ),  # type: ignore[index]
    )
    # Play the connector: publish a live bind into the store the operator reads.
    assert operator.store_url is not None
    store = open_store(operator.store_url)
    await store.open()
    try:
        await store.publish_connection_state(
            ConnectionState(
                connection="foxtrot", bound=True, updated_at=time.time(), window_size=10
            )
        )
        done = await api.wait_for(connections, "foxtrot", lambda o: ready(o, "True", "Bound"))
        assert done is not None
        assert done["status"]["bound"] is True
        await api.wait_event(ns, "foxtrot", "Bound")
        await store.publish_connection_state(
            ConnectionState(
                connection="foxtrot",
                bound=False,
                updated_at=time.time(),
                last_error="bind refused: ESME_RINVPASWD",
            )
        )
        down = await api.wait_for(connections, "foxtrot", lambda o: ready(o, "False", "NotBound"))
        assert down is not None
        assert down["status"]["lastError"] == "bind refused: ESME_RINVPASWD"
        assert down["status"]["bound"] is False
        unbound = await api.wait_event(ns, "foxtrot", "Unbound")
        assert unbound["type"] == "Warning"
    finally:
        await store.close()


# -- the operator itself -----------------------------------------------------------------------


async def test_liveness_reports_the_heartbeat_coming_back_through_the_watch(
    operator: OperatorProcess,
) -> None:
    # kopf caches probe results for 10 s: poll (bounded) until a fresh result shows beats.
    deadline = time.monotonic() + 15
    while True:
        status, body = await asyncio.to_thread(operator.liveness)
        assert status == 200, body
        if body["heartbeat"]["beatsSeen"] >= 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert body["heartbeat"]["beatsSeen"] >= 1, body
    assert body["heartbeat"]["heartbeatAge"] < 3  # interval 1 s in these tests


def test_operator_identity_has_only_the_granted_access(
    kube_apiserver: KubeApiserver, operator: OperatorProcess, tmp_path: Path
) -> None:
    config = operator.identity.kubeconfig
    ns = operator.namespace

    def can(*args: str) -> bool:
        result = kubectl(kube_apiserver, config, "auth", "can-i", *args, check=False)
        return result.stdout.strip() == "yes"

    assert can("watch", "smppconnections.smsmesh.io", "-n", ns)
    assert can("patch", "smppconnections.smsmesh.io", "--subresource=status", "-n", ns)
    assert not can("patch", "smppconnections.smsmesh.io", "-n", ns)  # never writes a spec
    assert not can("update", "secrets/somebody-elses", "-n", ns)
    assert not can("patch", "secrets/somebody-elses", "-n", ns)
    assert can("patch", f"secrets/{names.ROUTING_SECRET}", "-n", ns)
    assert not can("list", "pods", "-n", ns)
    assert not can("get", "secrets", "-n", "default")  # nothing outside its namespace
    assert not can("list", "namespaces")
    assert "Forbidden" not in operator.logs(tail=10**7), "the operator hit a missing permission"


async def test_liveness_fails_when_the_watch_never_delivers_the_heartbeat(
    operators: tuple[OperatorProcess, OperatorProcess],
) -> None:
    blind = operators[1]
    deadline = time.monotonic() + 20  # 3 s stale limit plus kopf's 10 s probe cache
    while True:
        blind.check_alive()
        status, body = await asyncio.to_thread(blind.liveness)
        if status != 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert status == 500, body
    assert "Forbidden" in blind.logs() or "403" in blind.logs()

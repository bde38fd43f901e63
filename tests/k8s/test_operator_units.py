"""The operator's pure parts (validation, manifests, statuses, settings, RBAC data, the
heartbeat verdict) and the router's snapshot parsing, without an API server.

The same code runs against the real API server in test_operator*.py; these tests pin
down the decisions themselves, including the ones a cluster test cannot reach quickly
(a stale heartbeat, a store that cannot be read, ordering and idempotence).
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from smsmesh.model import ConnectionState
from smsmesh.resources import Condition, ConditionStatus, ResourceSet
from smsmesh_operator import children, names, rbac
from smsmesh_operator.config import ConfigError, OperatorConfig
from smsmesh_operator.digests import digest
from smsmesh_operator.evaluate import INVALID, UNRESOLVED, evaluate
from smsmesh_operator.heartbeat import Heartbeat
from smsmesh_operator.kubeapi import KubeApi
from smsmesh_operator.observed import ManagedObject, SecretInfo
from smsmesh_operator.reconciler import RecentWrites
from smsmesh_operator.status import (
    StoreSnapshot,
    connection_status,
    normalized,
    previous_conditions,
    resource_status,
)
from smsmesh_operator.storeview import StoreView
from smsmesh_router.kube import (
    KubeAccess,
    KubeAccessError,
    SnapshotError,
    SnapshotPending,
    config_from_snapshot,
    keys_digest,
)

API = "smsmesh.io/v1alpha1"
NS = "team-a"


def body(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1, **meta},
        "spec": spec,
    }


def conn(name: str = "smsc-a", **spec: Any) -> dict[str, Any]:
    return body(
        "SmppConnection",
        name,
        {"host": "smsc.example", "credentialsSecretRef": {"name": "creds"}, **spec},
    )


def app(name: str = "shop", **spec: Any) -> dict[str, Any]:
    return body(
        "SmsApplication", name, {"apiKeySecretRefs": [{"name": "keys", "key": "shop"}], **spec}
    )


def route(name: str, *targets: str, **spec: Any) -> dict[str, Any]:
    return body("SmsRoute", name, {"targets": [{"connection": t} for t in targets], **spec})


SECRETS = [
    SecretInfo("creds", "10", frozenset({"systemId", "password"})),
    SecretInfo("keys", "11", frozenset({"shop", "other"})),
]
CONFIG = OperatorConfig(namespaces=(NS,), home_namespace=NS, store_secret="smsmesh-store")


# -- evaluate ---------------------------------------------------------------------------------


def test_valid_objects_get_a_clean_verdict() -> None:
    result = evaluate(NS, [conn(), app(), route("r", "smsc-a")], SECRETS)
    assert all(v.ok for v in result.verdicts.values())
    assert [c.name for c in result.usable_connections()] == ["smsc-a"]
    assert [r.name for r in result.usable_routes()] == ["r"]


def test_missing_references_are_unresolved_and_named_without_local_hints() -> None:
    result = evaluate(
        NS,
        [conn(credentialsSecretRef={"name": "gone"}), route("r", "nowhere"), app()],
        [SECRETS[1]],
    )
    connection = result.verdict("SmppConnection", "smsc-a")
    assert connection.reason == UNRESOLVED
    assert "Secret 'gone' not found" in connection.message
    assert "SMSMESH_SECRET" not in connection.message  # the local-mode advice is dropped
    assert result.verdict("SmsRoute", "r").reason == UNRESOLVED
    assert "'nowhere' does not exist" in result.verdict("SmsRoute", "r").message
    assert result.usable_routes() == []
    assert result.verdict("SmsApplication", "shop").ok


def test_a_missing_key_in_an_existing_secret_is_unresolved() -> None:
    keys = SecretInfo("keys", "11", frozenset({"other"}))
    result = evaluate(NS, [app()], [SECRETS[0], keys])
    assert result.verdict("SmsApplication", "shop").reason == UNRESOLVED
    assert "no key 'shop'" in result.verdict("SmsApplication", "shop").message


def test_what_only_the_models_know_is_an_invalid_spec() -> None:
    odd = app(defaultSender="Other", allowedSenders=["Shop*"])
    result = evaluate(NS, [odd], SECRETS)
    verdict = result.verdict("SmsApplication", "shop")
    assert verdict.reason == INVALID
    assert "defaultSender 'Other' is not in allowedSenders" in verdict.message
    assert result.usable_applications() == []


def test_a_route_to_an_unready_but_existing_connection_stays_usable() -> None:
    # The connection's Secret is missing: the connection is not Ready, but it exists,
    # so the route stays in the snapshot and the router fails over around it.
    result = evaluate(NS, [conn(credentialsSecretRef={"name": "gone"}), route("r", "smsc-a")], [])
    assert not result.verdict("SmppConnection", "smsc-a").ok
    assert result.verdict("SmsRoute", "r").ok


def test_status_is_ignored_when_validating() -> None:
    broken_status = conn()
    broken_status["status"] = {"conditions": [{"type": "?", "status": "maybe"}]}
    assert evaluate(NS, [broken_status], SECRETS).verdict("SmppConnection", "smsc-a").ok


# -- manifests --------------------------------------------------------------------------------


def connector(
    connection: dict[str, Any] | None = None,
    *,
    paused: bool = False,
    others: tuple[Any, ...] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    connection = connection or conn()
    result = evaluate(NS, [connection, *others], SECRETS)
    model = result.connections[connection["metadata"]["name"]]
    configmap = children.connector_configmap(
        model, children.connector_documents(model, result), connection
    )
    deployment = children.connector_deployment(
        model,
        CONFIG,
        connection,
        config_digest=children.config_hash(configmap, {"creds": "10"}),
        paused=paused,
    )
    return configmap, deployment


def test_connector_manifests_are_deterministic() -> None:
    assert connector() == connector()
    configmap, deployment = connector()
    for manifest in (configmap, deployment):
        annotation = manifest["metadata"]["annotations"][names.ANNOTATION_APPLIED_HASH]
        bare = copy.deepcopy(manifest)
        del bare["metadata"]["annotations"][names.ANNOTATION_APPLIED_HASH]
        assert annotation == children.manifest_digest(bare)


def test_connector_deployment_runs_one_pod_that_never_overlaps() -> None:
    _, deployment = connector()
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["args"][-2:] == ["--connection", "smsc-a"]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()


def test_pausing_changes_the_replicas_but_not_the_configuration() -> None:
    _, running = connector()
    _, paused = connector(paused=True)
    assert paused["spec"]["replicas"] == 0
    assert (
        paused["spec"]["template"]["metadata"]["annotations"]
        == running["spec"]["template"]["metadata"]["annotations"]
    )
    assert (
        paused["metadata"]["annotations"][names.ANNOTATION_APPLIED_HASH]
        != running["metadata"]["annotations"][names.ANNOTATION_APPLIED_HASH]
    )


def test_config_hash_follows_the_configmap_and_secret_versions() -> None:
    configmap, _ = connector()
    base = children.config_hash(configmap, {"creds": "10"})
    assert children.config_hash(configmap, {"creds": "11"}) != base
    changed, _ = connector(conn(port=2776))
    assert children.config_hash(changed, {"creds": "10"}) != base
    assert children.config_hash(configmap, {"creds": "10"}) == base


def test_tls_ca_secret_reaches_the_connector_as_env() -> None:
    tls = conn(tls={"enabled": True, "caSecretRef": {"name": "ca", "key": "ca.crt"}})
    secrets = [*SECRETS, SecretInfo("ca", "5", frozenset({"ca.crt"}))]
    result = evaluate(NS, [tls], secrets)
    model = result.connections["smsc-a"]
    deployment = children.connector_deployment(model, CONFIG, tls, config_digest="x", paused=False)
    env = {
        e["name"]: e.get("valueFrom")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["SMSMESH_SECRET_CA_CA_CRT"] == {"secretKeyRef": {"name": "ca", "key": "ca.crt"}}


def test_connector_configmap_carries_the_applications_its_mos_may_go_to() -> None:
    numbers = app("numbers", inbound={"webhookUrl": "http://a.example/mo", "numbers": ["+3197"]})
    quiet = app("quiet")
    configmap, _ = connector(others=(numbers, quiet))
    docs = list(yaml.safe_load_all(configmap["data"]["connection.yaml"]))
    assert [d["metadata"]["name"] for d in docs] == ["smsc-a", "numbers"]
    # No uid, resourceVersion or status: only what a spec change can change.
    assert docs[0]["metadata"] == {"name": "smsc-a", "namespace": NS}
    transmitter, _ = connector(conn(bindType="transmitter"), others=(numbers,))
    assert len(list(yaml.safe_load_all(transmitter["data"]["connection.yaml"]))) == 1


def test_routing_snapshot_round_trips_through_the_routers_reader() -> None:
    result = evaluate(NS, [conn(), app(), route("r", "smsc-a"), route("bad", "nowhere")], SECRETS)
    routing = children.routing_yaml(result)
    values = {"keys": {"shop": base64.b64encode(b"shop-secret").decode()}}
    keys = children.keys_yaml(NS, values)
    configmap = children.routing_configmap(NS, routing, digest(keys))
    secret = children.keys_secret(NS, keys, "source")
    config = config_from_snapshot(configmap, secret)
    assert config.routing.route_names == ("r",)
    found = config.application_for_key("shop-secret")
    assert found is not None
    assert found.name == "shop"
    assert keys_digest(keys) == digest(keys)  # operator and router agree on the digest


def test_snapshot_pairs_from_different_writes_are_pending_not_errors() -> None:
    keys_a = children.keys_yaml(NS, {"keys": {"shop": base64.b64encode(b"a").decode()}})
    keys_b = children.keys_yaml(NS, {"keys": {"shop": base64.b64encode(b"b").decode()}})
    configmap = children.routing_configmap(NS, "", digest(keys_a))
    with pytest.raises(SnapshotPending):
        config_from_snapshot(configmap, children.keys_secret(NS, keys_b, "s"))
    with pytest.raises(SnapshotError, match="does not exist"):
        config_from_snapshot(None, children.keys_secret(NS, keys_a, "s"))


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4))
def test_digest_of_json_ignores_key_order(data: dict[str, str]) -> None:
    reversed_order = dict(reversed(list(data.items())))
    assert children.manifest_digest(data) == children.manifest_digest(reversed_order)


# -- status -------------------------------------------------------------------------------------


def deployment(available: bool) -> ManagedObject:
    return ManagedObject(
        kind="Deployment",
        name="smsmesh-connector-smsc-a",
        component="connector",
        connection="smsc-a",
        applied_hash="h",
        replicas=1,
        generation=2,
        observed_generation=2,
        updated_replicas=1,
        available_replicas=1 if available else 0,
    )


def snapshot(bound: bool, *, age: float = 1.0, now: float = 1000.0) -> StoreSnapshot:
    state = ConnectionState(connection="smsc-a", bound=bound, updated_at=now - age)
    return StoreSnapshot(
        configured=True, states={"smsc-a": state}, depths={"smsc-a": 7}, submitted={"smsc-a": 120}
    )


def status_of(
    obj: dict[str, Any],
    dep: ManagedObject | None,
    store: StoreSnapshot,
    base: list[Condition] | None = None,
) -> tuple[dict[str, Any], list[Any]]:
    verdict = evaluate(NS, [obj], SECRETS).verdict("SmppConnection", obj["metadata"]["name"])
    return connection_status(obj, verdict, dep, store, now=1000.0, stale_after=15, base=base or [])


def reasons(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_ready_needs_an_available_connector_and_a_fresh_bind() -> None:
    status, events = status_of(conn(), deployment(True), snapshot(True))
    assert reasons(status) == {
        "Ready": ("True", "Bound"),
        "ConnectorAvailable": ("True", "MinimumReplicasAvailable"),
        "Bound": ("True", "Bound"),
    }
    assert status["bound"] is True
    assert status["queueDepth"] == 7
    assert status["achievedTps"] == 2.0
    assert status["observedGeneration"] == 1
    assert [e.reason for e in events] == ["Bound"]

    stale, _ = status_of(conn(), deployment(True), snapshot(True, age=60))
    assert reasons(stale)["Bound"] == ("False", "NotReporting")
    assert reasons(stale)["Ready"] == ("False", "NotReporting")
    unavailable, _ = status_of(conn(), deployment(False), snapshot(True))
    assert reasons(unavailable)["Ready"] == ("False", "ConnectorUnavailable")


def test_an_unreadable_store_is_said_in_the_condition() -> None:
    store = StoreSnapshot(configured=True, error="connection refused")
    status, _ = status_of(conn(), deployment(True), store)
    bound = next(c for c in status["conditions"] if c["type"] == "Bound")
    assert (bound["status"], bound["reason"]) == ("Unknown", "StoreUnavailable")
    assert "cannot read the store: connection refused" in bound["message"]
    assert status["bound"] is None
    assert status["queueDepth"] is None


def test_paused_wins_and_pausing_and_resuming_are_events() -> None:
    paused_conn = conn()
    paused_conn["metadata"]["annotations"] = {names.ANNOTATION_PAUSED: "true"}
    running, _ = status_of(conn(), deployment(True), snapshot(True))
    paused, events = status_of(
        paused_conn, deployment(True), snapshot(True), previous_conditions(running)
    )
    assert reasons(paused)["Ready"] == ("False", "Paused")
    assert "Paused" in [e.reason for e in events]
    _, events = status_of(conn(), deployment(True), snapshot(True), previous_conditions(paused))
    assert "Resumed" in [e.reason for e in events]


def test_recomputing_an_unchanged_world_changes_nothing() -> None:
    first, _ = status_of(conn(), deployment(True), snapshot(True))
    again, events = status_of(conn(), deployment(True), snapshot(True), previous_conditions(first))
    assert normalized(again) == normalized(first)
    assert events == []


def test_transition_time_moves_only_with_the_status() -> None:
    up, _ = status_of(conn(), deployment(True), snapshot(True))
    down, events = status_of(conn(), deployment(True), snapshot(False), previous_conditions(up))
    times = {c["type"]: c["lastTransitionTime"] for c in up["conditions"]}
    after = {c["type"]: c["lastTransitionTime"] for c in down["conditions"]}
    assert after["ConnectorAvailable"] == times["ConnectorAvailable"]
    assert [e.reason for e in events] == ["Unbound"]
    assert events[0].warning


def test_invalid_route_status_and_its_warning_once() -> None:
    bad = route("r", "nowhere")
    verdict = evaluate(NS, [bad], SECRETS).verdict("SmsRoute", "r")
    status, events = resource_status(bad, verdict, base=[])
    assert reasons(status) == {
        "Ready": ("False", UNRESOLVED),
        "ResolvedRefs": ("False", UNRESOLVED),
    }
    assert [(e.reason, e.warning) for e in events] == [(UNRESOLVED, True)]
    _, again = resource_status(bad, verdict, base=previous_conditions(status))
    assert again == []


def test_previous_conditions_drops_entries_that_are_not_conditions() -> None:
    good = Condition(type="Ready", status=ConditionStatus.TRUE, reason="Ok").to_wire()
    assert [c.type for c in previous_conditions({"conditions": [good, {"type": "x"}]})] == ["Ready"]


async def test_store_view_reports_an_unusable_store_instead_of_raising(tmp_path: Path) -> None:
    view = StoreView(f"sqlite:///{tmp_path / 'missing-dir' / 'deeper' / 'x.db'}")
    first = await view.refresh()
    assert first.configured
    assert first.error
    assert not first.readable
    await view.close()
    assert not StoreView(None).snapshot.configured


# -- settings, RBAC, heartbeat, memory ----------------------------------------------------


def test_settings_from_the_environment() -> None:
    env = {"POD_NAMESPACE": "ops", "SMSMESH_CONNECTOR_IMAGE": "img:1"}
    config = OperatorConfig.from_env(env)
    assert config.namespaces == ("ops",)
    assert config.home_namespace == "ops"
    assert config.connector_service_account == "smsmesh-connector"
    assert config.store_secret_key == "url"
    everywhere = OperatorConfig.from_env({**env, "SMSMESH_WATCH_NAMESPACE": ""})
    assert everywhere.clusterwide
    assert everywhere.home_namespace == "ops"
    listed = OperatorConfig.from_env({**env, "SMSMESH_WATCH_NAMESPACE": "b, a"})
    assert listed.namespaces == ("a", "b")
    assert listed.home_namespace == "a"  # the heartbeat must be where the watches look
    with pytest.raises(ConfigError):
        OperatorConfig.from_env(env, status_interval=0)
    assert config.connector_metrics_port == 9464
    other_port = {**env, "SMSMESH_CONNECTOR_METRICS_PORT": "9090"}
    assert OperatorConfig.from_env(other_port).connector_metrics_port == 9090
    with pytest.raises(ConfigError, match="not a port number"):
        OperatorConfig.from_env({**env, "SMSMESH_CONNECTOR_METRICS_PORT": "http"})


def test_rbac_grants_no_spec_writes_and_names_the_only_secret_it_patches() -> None:
    grants = rbac.normalized(rbac.operator_rules())
    for plural in ("smppconnections", "smsroutes", "smsapplications"):
        assert not {v for g, r, _, v in grants if r == plural} - {"get", "list", "watch"}
    secret_writes = {
        (n, v) for g, r, n, v in grants if r == "secrets" and v not in ("get", "list", "watch")
    }
    assert secret_writes == {("*", "create"), (names.ROUTING_SECRET, "patch")}
    router = rbac.normalized(rbac.router_rules())
    assert {n for _, _, n, _ in router} == {names.ROUTING_CONFIGMAP, names.ROUTING_SECRET}
    assert {v for *_, v in router} == {"get", "list", "watch"}
    regrouped = [
        {**rule, "verbs": [verb]} for rule in rbac.operator_rules() for verb in rule["verbs"]
    ]
    assert rbac.normalized(regrouped) == grants


def test_heartbeat_probe_fails_when_beats_stop_coming_back() -> None:
    now = [0.0]
    beat = Heartbeat(
        KubeApi(lambda: kopf.ConnectionInfo(server="https://x")), NS, 10, clock=lambda: now[0]
    )
    now[0] = 25
    assert beat.check()["beatsSeen"] == 0  # young: nothing is expected yet
    now[0] = 31
    with pytest.raises(kopf.PermanentError, match="watch streams look stalled"):
        beat.check()
    beat.seen({names.ANNOTATION_HEARTBEAT: "123"})
    assert beat.check()["heartbeatAge"] == 0
    beat.seen({})  # some other change to the ConfigMap is no heartbeat
    assert beat.beats_seen == 1


def test_recent_writes_expire_and_do_not_pile_up() -> None:
    now = [0.0]
    recent = RecentWrites(ttl=10, clock=lambda: now[0])
    recent.remember("k", "v")
    assert recent.get("k") == "v"
    now[0] = 11
    assert recent.get("k") is None
    for i in range(1000):  # e.g. statuses of objects deleted long ago, never read again
        now[0] += 1
        recent.remember(i, i)
    assert len(recent) < 300


def test_secret_info_keeps_key_names_never_values() -> None:
    info = SecretInfo.from_body(
        {"metadata": {"name": "s", "resourceVersion": "3"}, "data": {"password": "aHVudGVyMg=="}}
    )
    assert info.keys == frozenset({"password"})
    assert "aHVudGVyMg" not in repr(info)


# -- the router's access ------------------------------------------------------------------


def test_kube_access_from_a_kubeconfig(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("PEM")
    config = {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [
            {
                "name": "k",
                "cluster": {"server": "https://h:6443/", "certificate-authority": "ca.crt"},
            }
        ],
        "users": [{"name": "u", "user": {"token": "t0k"}}],
    }
    path = tmp_path / "config"
    path.write_text(json.dumps(config))
    access = KubeAccess.from_kubeconfig(path)
    assert access.server == "https://h:6443"
    assert access.ca_file == str(ca)
    assert access.bearer() == "t0k"
    assert "t0k" not in repr(access)
    path.write_text("current-context: nowhere\n")
    with pytest.raises(KubeAccessError, match="not a usable kubeconfig"):
        KubeAccess.from_kubeconfig(path)


def test_kube_access_in_a_pod_rereads_the_rotated_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first\n")
    access = KubeAccess.in_cluster(
        {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, root=tmp_path
    )
    assert access.server == "https://10.0.0.1:443"
    assert access.bearer() == "first"
    (tmp_path / "token").write_text("second\n")
    assert access.bearer() == "second"
    with pytest.raises(KubeAccessError, match="not in a pod"):
        KubeAccess.in_cluster({}, root=tmp_path)


def test_snapshot_objects_never_carry_resources_the_router_would_not_need() -> None:
    result = evaluate(NS, [conn(), app(), route("r", "smsc-a")], SECRETS)
    resources = ResourceSet(environ={})
    from smsmesh_router.kube import load_documents

    load_documents(children.routing_yaml(result), resources, origin="routing.yaml")
    assert resources.connections == {}
    assert set(resources.routes) == {"r"}

"""`helm lint` and `helm template`: what the chart renders, for default and optional values."""

from __future__ import annotations

import filecmp
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_chart import (
    CHART,
    EVERYTHING,
    NAMESPACE,
    REPO,
    REQUIRED,
    Manifests,
    env_of,
    grants,
    render,
    run_helm,
    values_file,
)

APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
IMAGE = f"ghcr.io/smsmesh/smsmesh:{APP_VERSION}"
OPTIONAL_KINDS = {"PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "ConfigMap"}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of two values trees (extra wins), as helm merges --values files."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def default(helm: Path, tmp_path: Path) -> Manifests:
    return render(helm, tmp_path, REQUIRED)


@pytest.fixture
def everything(helm: Path, tmp_path: Path) -> Manifests:
    return render(helm, tmp_path, EVERYTHING)


# -- lint -------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [REQUIRED, EVERYTHING], ids=["default", "everything"])
def test_lint_strict_passes(helm: Path, tmp_path: Path, values: dict[str, Any]) -> None:
    out = run_helm(
        helm, "lint", "--strict", str(CHART), "--values", str(values_file(tmp_path, values))
    )
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out
    assert "[ERROR]" not in out


def test_crds_are_byte_identical_copies_of_the_top_level_ones() -> None:
    """Helm installs CRDs from the chart's crds/: they must not drift from crds/ (make crds)."""
    source = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    copies = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert source, "no CRDs in crds/"
    assert copies == source, "helm/smsmesh/crds/ and crds/ hold different files: run make crds"
    match, mismatch, errors = filecmp.cmpfiles(REPO / "crds", CHART / "crds", source, shallow=False)
    assert (mismatch, errors) == ([], []), f"drifted from crds/ (run make crds): {mismatch}"
    assert match == source


# -- default values ---------------------------------------------------------------------------


def test_default_renders_operator_router_and_their_identities(default: Manifests) -> None:
    assert default.kinds() == {
        "ServiceAccount", "Role", "RoleBinding", "Service", "Deployment",
    }  # fmt: skip
    assert {o["metadata"]["name"] for o in default.of_kind("Deployment")} == {
        "smsmesh-operator",
        "smsmesh-router",
    }
    assert {o["metadata"]["name"] for o in default.of_kind("ServiceAccount")} == {
        "smsmesh-operator",
        "smsmesh-router",
        "smsmesh-connector",
    }
    for obj in default.objects:
        assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "smsmesh"
        assert labels["app.kubernetes.io/part-of"] == "smsmesh"


def test_operator_deployment_matches_the_operator_contract(default: Manifests) -> None:
    deployment = default.get("Deployment", "smsmesh-operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "smsmesh-operator"
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert container["args"] == ["operator"]
    env = env_of(container)
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["SMSMESH_WATCH_NAMESPACE"] == NAMESPACE
    assert env["SMSMESH_STORE_URL"] == {"secretKeyRef": {"name": "smsmesh-store", "key": "url"}}
    assert env["SMSMESH_STORE_SECRET"] == "smsmesh-store"
    assert env["SMSMESH_STORE_SECRET_KEY"] == "url"
    assert env["SMSMESH_CONNECTOR_IMAGE"] == IMAGE
    assert env["SMSMESH_CONNECTOR_SERVICE_ACCOUNT"] == "smsmesh-connector"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8081, "protocol": "TCP"} in container["ports"]


def test_router_deployment_and_service(default: Manifests) -> None:
    deployment = default.get("Deployment", "smsmesh-router")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "smsmesh-router"
    (container,) = pod["containers"]
    assert container["args"] == [
        "router", "--host", "0.0.0.0", "--port", "8080",
        "--kube-snapshot", f"{NAMESPACE}/smsmesh-routing",
    ]  # fmt: skip
    assert env_of(container)["SMSMESH_STORE_URL"] == {
        "secretKeyRef": {"name": "smsmesh-store", "key": "url"}
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}

    service = default.get("Service", "smsmesh-router")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_connector_service_account_has_no_token_and_no_rbac(default: Manifests) -> None:
    account = default.get("ServiceAccount", "smsmesh-connector")
    assert account["automountServiceAccountToken"] is False
    bound = [s["name"] for b in default.of_kind("RoleBinding") for s in b["subjects"]]
    assert "smsmesh-connector" not in bound


def test_no_secret_is_rendered_with_an_existing_store_secret(default: Manifests) -> None:
    assert default.of_kind("Secret") == []


# -- security ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["default", "everything"])
def test_every_pod_is_locked_down(request: pytest.FixtureRequest, fixture: str) -> None:
    manifests: Manifests = request.getfixturevalue(fixture)
    specs = list(manifests.pod_specs())
    assert specs
    for where, pod in specs:
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, where
        assert security["runAsUser"] == 10001, where
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert context.get("privileged") is not True, where
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), where
            assert {"cpu", "memory"} <= resources["limits"].keys(), where
            # A read-only root needs a writable /tmp.
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], where


def test_only_pods_that_call_the_api_get_a_token(everything: Manifests) -> None:
    mounts = {
        where: pod.get("automountServiceAccountToken") for where, pod in everything.pod_specs()
    }
    assert mounts == {
        "Deployment/smsmesh-operator": True,
        "Deployment/smsmesh-router": True,
        "Deployment/smsmesh-simulator": False,
    }
    for account in everything.of_kind("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


# -- RBAC -------------------------------------------------------------------------------------

ROUTER_GRANTS = {
    ("", "configmaps", "smsmesh-routing", verb) for verb in ("get", "list", "watch")
} | {("", "secrets", "smsmesh-routing-keys", verb) for verb in ("get", "list", "watch")}


def test_router_role_reads_exactly_the_two_snapshot_objects(default: Manifests) -> None:
    role = default.get("Role", "smsmesh-router")
    assert grants(role["rules"]) == ROUTER_GRANTS
    assert all(rule.get("resourceNames") for rule in role["rules"]), "a rule without names"
    binding = default.get("RoleBinding", "smsmesh-router")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "smsmesh-router",
    }  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "smsmesh-router", "namespace": NAMESPACE}
    ]


def test_chart_rbac_equals_the_operators_rbac_module(
    default: Manifests, everything: Manifests
) -> None:
    """The chart mirrors smsmesh_operator.rbac grant for grant (Role and ClusterRole alike)."""
    rbac = pytest.importorskip(
        "smsmesh_operator.rbac", reason="smsmesh_operator.rbac is not written yet"
    )
    expected = grants(rbac.operator_rules())
    assert grants(default.get("Role", "smsmesh-operator")["rules"]) == expected
    assert grants(everything.get("ClusterRole", "sms-smsmesh-operator")["rules"]) == expected
    assert grants(default.get("Role", "smsmesh-router")["rules"]) == grants(rbac.router_rules())
    # The module's own comparison agrees (it is what the operator's tests use).
    assert rbac.normalized(default.get("Role", "smsmesh-operator")["rules"]) == rbac.normalized(
        rbac.operator_rules()
    )


def test_operator_scope_follows_watch_namespace(helm: Path, tmp_path: Path) -> None:
    # Unset: the release namespace, a Role.
    default = render(helm, tmp_path, REQUIRED)
    assert not default.of_kind("ClusterRole")
    assert default.get("Role", "smsmesh-operator")["metadata"]["namespace"] == NAMESPACE

    # "": every namespace, a ClusterRole named after the namespace too (names are cluster-wide).
    everywhere = render(helm, tmp_path, merged(REQUIRED, {"operator": {"watchNamespace": ""}}))
    assert not [
        r for r in everywhere.of_kind("Role") if r["metadata"]["name"] == "smsmesh-operator"
    ]
    role = everywhere.get("ClusterRole", "sms-smsmesh-operator")
    assert "namespace" not in role["metadata"]
    binding = everywhere.get("ClusterRoleBinding", "sms-smsmesh-operator")
    assert binding["roleRef"]["kind"] == "ClusterRole"
    assert binding["subjects"][0]["namespace"] == NAMESPACE
    operator = everywhere.get("Deployment", "smsmesh-operator")
    assert (
        env_of(operator["spec"]["template"]["spec"]["containers"][0])["SMSMESH_WATCH_NAMESPACE"]
        == ""
    )
    # The router still reads its own namespace's snapshot.
    router = everywhere.get("Deployment", "smsmesh-router")["spec"]["template"]["spec"]
    assert router["containers"][0]["args"][-1] == f"{NAMESPACE}/smsmesh-routing"

    # Another namespace: Roles, the snapshot, the connector account and store Secret go there.
    other = render(
        helm,
        tmp_path,
        {
            "store": {"url": "postgresql://smsmesh@db/smsmesh"},
            "operator": {"watchNamespace": "sms-apps"},
        },
    )
    assert other.get("Role", "smsmesh-operator")["metadata"]["namespace"] == "sms-apps"
    assert other.get("Role", "smsmesh-router")["metadata"]["namespace"] == "sms-apps"
    router = other.get("Deployment", "smsmesh-router")["spec"]["template"]["spec"]
    assert router["containers"][0]["args"][-1] == "sms-apps/smsmesh-routing"
    for kind, name in (("ServiceAccount", "smsmesh-connector"), ("Secret", "smsmesh-store")):
        assert {
            o["metadata"]["namespace"] for o in other.of_kind(kind) if o["metadata"]["name"] == name
        } == {
            NAMESPACE,
            "sms-apps",
        }


# -- optional features ------------------------------------------------------------------------


def test_optional_features_are_off_by_default(default: Manifests) -> None:
    assert not default.kinds() & OPTIONAL_KINDS
    assert "smsmesh-simulator" not in {o["metadata"]["name"] for o in default.objects}


def test_everything_enabled_renders_every_optional_object(everything: Manifests) -> None:
    assert everything.kinds() >= OPTIONAL_KINDS
    pdb = everything.get("PodDisruptionBudget", "smsmesh-router")
    assert pdb["spec"]["minAvailable"] == 1
    router = everything.get("Deployment", "smsmesh-router")
    assert pdb["spec"]["selector"] == router["spec"]["selector"]
    assert {o["metadata"]["name"] for o in everything.of_kind("NetworkPolicy")} == {
        "smsmesh-operator",
        "smsmesh-router",
        "smsmesh-connectors",
    }
    monitors = {o["metadata"]["name"]: o for o in everything.of_kind("ServiceMonitor")}
    assert set(monitors) == {"smsmesh-router", "smsmesh-connector"}
    for monitor in monitors.values():
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
    # Each ServiceMonitor selects a Service that exists and has the port it scrapes.
    for name, port in (("smsmesh-router", "http"), ("smsmesh-connector", "metrics")):
        selector = monitors[name]["spec"]["selector"]["matchLabels"]
        services = [
            s for s in everything.of_kind("Service")
            if selector.items() <= s["metadata"]["labels"].items()
        ]  # fmt: skip
        assert len(services) == 1, name
        assert port in {p["name"] for p in services[0]["spec"]["ports"]}


def test_connector_selectors_match_the_operators_pod_labels(everything: Manifests) -> None:
    """The NetworkPolicy and metrics Service select connector pods by the labels the operator
    gives them (smsmesh_operator.children)."""
    children = pytest.importorskip("smsmesh_operator.children")
    names = pytest.importorskip("smsmesh_operator.names")
    pod_labels = children.labels(names.COMPONENT_CONNECTOR, "any", "any")
    policy = everything.get("NetworkPolicy", "smsmesh-connectors")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    service = everything.get("Service", "smsmesh-connectors")
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_network_policies(everything: Manifests) -> None:
    router = everything.get("NetworkPolicy", "smsmesh-router")["spec"]
    assert router["policyTypes"] == ["Ingress", "Egress"]
    api, metrics = router["ingress"]
    assert api["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert api["from"] == EVERYTHING["networkPolicy"]["router"]["ingressFrom"]
    assert metrics["from"] == EVERYTHING["networkPolicy"]["metricsFrom"]

    def egress_ports(spec: dict[str, Any]) -> set[tuple[str, int]]:
        return {(p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"]}

    dns = {("UDP", 53), ("TCP", 53)}
    assert egress_ports(router) == dns | {("TCP", 5432), ("TCP", 80), ("TCP", 443), ("TCP", 6443)}
    store_rule = next(
        r for r in router["egress"] if r["ports"] == [{"protocol": "TCP", "port": 5432}]
    )
    assert store_rule["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]

    connectors = everything.get("NetworkPolicy", "smsmesh-connectors")["spec"]
    assert egress_ports(connectors) == dns | {("TCP", 5432), ("TCP", 2775)}
    simulator_rule = connectors["egress"][-1]
    assert (
        simulator_rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "simulator"
    )

    operator = everything.get("NetworkPolicy", "smsmesh-operator")["spec"]
    assert operator["ingress"] == []
    assert egress_ports(operator) == dns | {("TCP", 443), ("TCP", 6443)}


def test_router_ingress_defaults_to_the_whole_cluster(helm: Path, tmp_path: Path) -> None:
    rendered = render(helm, tmp_path, merged(REQUIRED, {"networkPolicy": {"enabled": True}}))
    ingress = rendered.get("NetworkPolicy", "smsmesh-router")["spec"]["ingress"]
    # No metricsFrom: no second rule (it would open the API port to more peers).
    assert ingress == [
        {"ports": [{"protocol": "TCP", "port": 8080}], "from": [{"namespaceSelector": {}}]}
    ]


def test_simulator_takes_credentials_from_the_secret_not_the_configmap(
    everything: Manifests,
) -> None:
    config = everything.get("ConfigMap", "smsmesh-simulator")
    resource = yaml.safe_load(config["data"]["simulator.yaml"])
    assert resource["kind"] == "SmscSimulator"
    assert resource["spec"]["host"] == "0.0.0.0"
    assert resource["spec"]["credentialsSecretRef"] == {"name": "simulator-credentials"}
    pod = everything.get("Deployment", "smsmesh-simulator")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == [
        "simulate", "--resources", "/etc/smsmesh/simulator", "--name", "simulator",
    ]  # fmt: skip
    env = env_of(container)
    # The names the resource loader reads for Secret simulator-credentials' keys.
    from smsmesh.resources.loader import secret_env_name

    for key in ("systemId", "password"):
        assert env[secret_env_name("simulator-credentials", key)] == {
            "secretKeyRef": {"name": "sim-credentials", "key": key}
        }
    service = everything.get("Service", "smsmesh-simulator")
    assert service["spec"]["ports"][0]["port"] == 2775


def test_simulator_without_credentials_accepts_any_bind(helm: Path, tmp_path: Path) -> None:
    rendered = render(helm, tmp_path, merged(REQUIRED, {"simulator": {"enabled": True}}))
    resource = yaml.safe_load(
        rendered.get("ConfigMap", "smsmesh-simulator")["data"]["simulator.yaml"]
    )
    assert "credentialsSecretRef" not in resource["spec"]
    container = rendered.get("Deployment", "smsmesh-simulator")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert "env" not in container


# -- values that change what is rendered ------------------------------------------------------


def test_store_url_creates_a_dev_secret_and_rolls_pods_when_it_changes(
    helm: Path, tmp_path: Path
) -> None:
    def with_url(url: str) -> Manifests:
        return render(helm, tmp_path, {"store": {"url": url}})

    first = with_url("postgresql://smsmesh:one@db/smsmesh")
    secret = first.get("Secret", "smsmesh-store")
    assert secret["stringData"] == {"url": "postgresql://smsmesh:one@db/smsmesh"}
    router = first.get("Deployment", "smsmesh-router")["spec"]["template"]["spec"]
    assert env_of(router["containers"][0])["SMSMESH_STORE_URL"] == {
        "secretKeyRef": {"name": "smsmesh-store", "key": "url"}
    }

    def checksum(manifests: Manifests, name: str) -> str:
        template = manifests.get("Deployment", name)["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/store"])

    second = with_url("postgresql://smsmesh:two@db/smsmesh")
    for name in ("smsmesh-router", "smsmesh-operator"):
        assert checksum(first, name) != checksum(second, name)
        # The annotation is a digest, not the URL (which holds the password).
        assert "one" not in checksum(first, name)


def test_image_tag_digest_and_pull_secrets(helm: Path, tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    rendered = render(
        helm,
        tmp_path,
        merged(
            EVERYTHING,
            {
                "image": {"repository": "registry.example/sms", "tag": "1.2.3"},
                "imagePullSecrets": ["regcred"],
            },
        ),
    )
    for where, pod in rendered.pod_specs():
        assert pod["containers"][0]["image"] == "registry.example/sms:1.2.3", where
        assert pod["imagePullSecrets"] == [{"name": "regcred"}], where
    operator = rendered.get("Deployment", "smsmesh-operator")["spec"]["template"]["spec"]
    assert (
        env_of(operator["containers"][0])["SMSMESH_CONNECTOR_IMAGE"] == "registry.example/sms:1.2.3"
    )

    pinned = render(helm, tmp_path, merged(REQUIRED, {"image": {"digest": digest}}))
    for where, pod in pinned.pod_specs():
        assert pod["containers"][0]["image"] == f"ghcr.io/smsmesh/smsmesh@{digest}", where


def test_fullname_override_and_common_labels(helm: Path, tmp_path: Path) -> None:
    rendered = render(
        helm,
        tmp_path,
        merged(REQUIRED, {"fullnameOverride": "sms", "commonLabels": {"team": "msg"}}),
    )
    assert {o["metadata"]["name"] for o in rendered.of_kind("Deployment")} == {
        "sms-operator",
        "sms-router",
    }
    assert all(o["metadata"]["labels"]["team"] == "msg" for o in rendered.objects)


def test_container_args_are_valid_smsmesh_commands(
    everything: Manifests, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every container's args parse with the real `smsmesh` CLI (the image's entrypoint), in
    the environment the pod gives it, so a renamed or missing flag fails here rather than in a
    crash-looping pod."""
    from smsmesh.cli import build_parser

    commands = {}
    for where, pod in everything.pod_specs():
        (container,) = pod["containers"]
        with monkeypatch.context() as env:
            for name in env_of(container):
                env.setenv(name, "from-the-pod")  # Secret and field refs resolve to something
            commands[where] = build_parser().parse_args(container["args"]).command
    assert commands == {
        "Deployment/smsmesh-operator": "operator",
        "Deployment/smsmesh-router": "router",
        "Deployment/smsmesh-simulator": "simulate",
    }
    router = everything.get("Deployment", "smsmesh-router")["spec"]["template"]["spec"]
    monkeypatch.setenv("SMSMESH_STORE_URL", "postgresql://from-the-pod")
    args = build_parser().parse_args(router["containers"][0]["args"])
    assert (args.host, args.port, args.kube_snapshot) == ("0.0.0.0", 8080, "sms/smsmesh-routing")


def test_operator_reads_the_environment_the_chart_gives_it(helm: Path, tmp_path: Path) -> None:
    """The operator's own settings parser (smsmesh_operator.config) on the pod's env."""
    config = pytest.importorskip("smsmesh_operator.config")

    def settings(values: dict[str, Any]) -> Any:
        rendered = render(helm, tmp_path, values)
        pod = rendered.get("Deployment", "smsmesh-operator")["spec"]["template"]["spec"]
        env = {
            name: value if isinstance(value, str) else "from-a-reference"
            for name, value in env_of(pod["containers"][0]).items()
        }
        env["POD_NAMESPACE"] = NAMESPACE  # what the fieldRef resolves to
        return config.OperatorConfig.from_env(env)

    default = settings(REQUIRED)
    assert default.namespaces == (NAMESPACE,)
    assert not default.clusterwide
    assert default.connector_image == IMAGE
    assert default.connector_service_account == "smsmesh-connector"
    assert (default.store_secret, default.store_secret_key) == ("smsmesh-store", "url")
    assert settings(merged(REQUIRED, {"operator": {"watchNamespace": ""}})).clusterwide
    other = settings(merged(REQUIRED, {"operator": {"watchNamespace": "apps"}}))
    assert other.namespaces == ("apps",)

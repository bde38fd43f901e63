"""The chart against a real kube-apiserver (v1.34, tests/k8s): server-side dry runs of what it
renders, a real `helm install` (CRDs from the chart's crds/ included), the examples validated
by the CRD schemas, and the RBAC it grants checked by the API server's own authorizer.

No controllers or kubelet run there: objects are stored and validated, pods never start.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helm_chart import CHART, EVERYTHING, REPO, REQUIRED, Manifests, run_helm, template, values_file

pytestmark = pytest.mark.k8s

KUBECTL_TIMEOUT_S = 60.0
CRD_WAIT = "--timeout=30s"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMSMESH_CRDS = [
    "smppconnections.smsmesh.io",
    "smsroutes.smsmesh.io",
    "smsapplications.smsmesh.io",
    "smscsimulators.smsmesh.io",
]


@dataclass(frozen=True)
class Kube:
    """kubectl (and helm) pointed at the test API server as its admin."""

    kubectl: Path
    kubeconfig: Path
    server: str
    ca: Path

    def run(
        self, *args: str, stdin: str = "", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT_S,
            check=False,
        )
        if check:
            assert proc.returncode == 0, f"kubectl {' '.join(args)}:\n{proc.stderr}"
        return proc

    def namespace(self) -> str:
        """A fresh namespace for one test (the API server is shared by the session)."""
        name = f"helm-{uuid.uuid4().hex[:8]}"
        self.run("create", "namespace", name)
        return name

    def can_i(self, account: str, namespace: str, verb: str, what: str, *, in_ns: str = "") -> bool:
        """What the API server's authorizer answers for system:serviceaccount:<ns>:<account>.

        `what` is kubectl's resource[/name], with an optional ":subresource" suffix.
        """
        what, _, subresource = what.partition(":")
        proc = self.run(
            "auth", "can-i", verb, what,
            *([f"--subresource={subresource}"] if subresource else []),
            f"--as=system:serviceaccount:{namespace}:{account}",
            f"--namespace={in_ns or namespace}",
            check=False,
        )  # fmt: skip
        answer = proc.stdout.strip()
        assert answer in {"yes", "no"}, f"can-i {verb} {what}: {proc.stdout}{proc.stderr}"
        return answer == "yes"


@pytest.fixture(scope="module")
def kube(kube_apiserver: Any, tmp_path_factory: pytest.TempPathFactory) -> Kube:
    kubeconfig = kube_apiserver.write_kubeconfig(tmp_path_factory.mktemp("helm-kube") / "config")
    kube = Kube(kube_apiserver.kubectl, kubeconfig, kube_apiserver.server, kube_apiserver.ca_path)
    # The smsmesh CRDs (as Helm would install them) and a ServiceMonitor CRD stand-in.
    kube.run("apply", "--server-side", "-f", str(CHART / "crds"))
    kube.run("apply", "--server-side", "-f", str(FIXTURES / "servicemonitor-crd.yaml"))
    kube.run(
        "wait", "--for=condition=Established", CRD_WAIT,
        *(f"crd/{name}" for name in [*SMSMESH_CRDS, "servicemonitors.monitoring.coreos.com"]),
    )  # fmt: skip
    return kube


def dry_run(kube: Kube, manifest: Path) -> list[str]:
    """Server-side apply in dry-run mode; the applied object lines kubectl prints."""
    out = kube.run("apply", "--server-side", "--dry-run=server", "-f", str(manifest)).stdout
    lines = out.strip().splitlines()
    assert all(line.endswith("serverside-applied (server dry run)") for line in lines), out
    return lines


@pytest.mark.parametrize(
    "values",
    [
        REQUIRED,
        EVERYTHING,
        {"store": {"url": "postgresql://u@db/x"}, "operator": {"watchNamespace": "WATCH"}},
    ],
    ids=["default", "everything", "other-namespace"],
)
def test_rendered_chart_passes_server_side_dry_run(
    helm: Path, kube: Kube, tmp_path: Path, values: dict[str, Any]
) -> None:
    namespace = kube.namespace()
    if values.get("operator", {}).get("watchNamespace") == "WATCH":
        values = {**values, "operator": {"watchNamespace": kube.namespace()}}
    rendered = template(helm, tmp_path, values, namespace=namespace)
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rendered)
    applied = dry_run(kube, manifest)
    assert len(applied) == len(Manifests.parse(rendered).objects)
    # Dry run means nothing was stored.
    assert kube.run("get", "deployments", "-n", namespace, "-o", "name").stdout == ""


def test_examples_are_valid_resources(kube: Kube) -> None:
    """examples/kubernetes (what the README applies) against the real CRD schemas and CEL."""
    namespace = kube.namespace()
    for folder in (REPO / "examples" / "kubernetes", REPO / "examples" / "kubernetes" / "dev"):
        out = kube.run(
            "apply", "--server-side", "--dry-run=server", "-n", namespace, "-f", str(folder)
        ).stdout  # fmt: skip
        assert "serverside-applied (server dry run)" in out
    kinds = kube.run(
        "apply", "--server-side", "--dry-run=server", "-n", namespace, "-o", "json",
        "-f", str(REPO / "examples" / "kubernetes"),
    ).stdout  # fmt: skip
    applied = json.loads(kinds)
    items = applied.get("items", [applied])
    assert {item["kind"] for item in items} == {
        "Secret", "SmppConnection", "SmsApplication", "SmsRoute",
    }  # fmt: skip


def test_helm_install_creates_everything_and_prints_the_notes(
    helm: Path, kube: Kube, tmp_path: Path
) -> None:
    """A real install: Helm itself applies crds/ (already present here: it skips them) and every
    object; the API server stores them. NOTES.txt is what the user sees."""
    namespace = kube.namespace()
    values = {**EVERYTHING, "operator": {}}  # watch the release namespace
    args = ["--kubeconfig", str(kube.kubeconfig), "--namespace", namespace]
    out = run_helm(
        helm,
        "install",
        "smsmesh",
        str(CHART),
        *args,
        "--values",
        str(values_file(tmp_path, values)),
    )
    try:
        assert "STATUS: deployed" in out
        notes = out.split("NOTES:", 1)[1]
        assert f"kubectl -n {namespace} port-forward svc/smsmesh-router 8080:80" in notes
        assert f"http://smsmesh-router.{namespace}.svc:80" in notes
        assert f"kubectl -n {namespace} get smppconnections" in notes
        assert "host smsmesh-simulator, port 2775" in notes
        names = kube.run(
            "get", "deployments,services,servicemonitors", "-n", namespace, "-o", "name"
        )
        assert set(names.stdout.split()) == {
            "deployment.apps/smsmesh-operator",
            "deployment.apps/smsmesh-router",
            "deployment.apps/smsmesh-simulator",
            "service/smsmesh-router",
            "service/smsmesh-simulator",
            "service/smsmesh-connectors",
            "servicemonitor.monitoring.coreos.com/smsmesh-router",
            "servicemonitor.monitoring.coreos.com/smsmesh-connector",
        }
    finally:
        run_helm(helm, "uninstall", "smsmesh", *args)
    assert kube.run("get", "deployments", "-n", namespace, "-o", "name").stdout == ""


def test_granted_access_is_what_each_component_needs(
    helm: Path, kube: Kube, tmp_path: Path
) -> None:
    """The API server's authorizer on the chart's real Roles: the router reads its two named
    objects only, the operator is confined to its namespace, connectors get nothing."""
    namespace = kube.namespace()
    elsewhere = kube.namespace()
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(template(helm, tmp_path, REQUIRED, namespace=namespace))
    kube.run("apply", "--server-side", "-f", str(manifest))

    def router(verb: str, what: str, **kw: str) -> bool:
        return kube.can_i("smsmesh-router", namespace, verb, what, **kw)

    for verb in ("get", "list", "watch"):
        assert router(verb, "configmaps/smsmesh-routing")
        assert router(verb, "secrets/smsmesh-routing-keys")
    assert not router("get", "configmaps/something-else")
    assert not router("get", "secrets/smsmesh-store")
    assert not router("list", "configmaps")  # only with a fieldSelector on the name
    assert not router("list", "secrets")
    assert not router("update", "configmaps/smsmesh-routing")
    assert not router("get", "configmaps/smsmesh-routing", in_ns=elsewhere)
    assert not router("list", "smppconnections.smsmesh.io")

    def operator(verb: str, what: str, **kw: str) -> bool:
        return kube.can_i("smsmesh-operator", namespace, verb, what, **kw)

    assert operator("watch", "smppconnections.smsmesh.io")
    assert operator("patch", "smppconnections.smsmesh.io:status")
    assert not operator("update", "smppconnections.smsmesh.io:status")
    assert operator("patch", "deployments.apps")
    assert operator("patch", "secrets/smsmesh-routing-keys")
    assert not operator("patch", "secrets/smsmesh-store")
    assert not operator("update", "secrets/smsmesh-store")
    assert not operator("delete", "secrets/smsmesh-store")
    assert not operator("patch", "smppconnections.smsmesh.io")  # never writes a spec
    assert not operator("get", "secrets", in_ns=elsewhere)
    assert not operator("list", "namespaces")

    assert not kube.can_i("smsmesh-connector", namespace, "get", "configmaps")
    assert not kube.can_i("smsmesh-connector", namespace, "list", "smppconnections.smsmesh.io")


def test_router_watch_by_name_is_allowed_and_a_plain_list_is_not(
    helm: Path, kube: Kube, tmp_path: Path
) -> None:
    """How the router reads the snapshot: list/watch with a metadata.name fieldSelector, which is
    the only way a resourceNames rule admits list and watch. Done with the router's own token."""
    namespace = kube.namespace()
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(template(helm, tmp_path, REQUIRED, namespace=namespace))
    kube.run("apply", "--server-side", "-f", str(manifest))
    kube.run(
        "create", "configmap", "smsmesh-routing", "-n", namespace, "--from-literal=routing.yaml={}"
    )
    token = kube.run("create", "token", "smsmesh-router", "-n", namespace).stdout.strip()
    as_router = [
        f"--server={kube.server}", f"--certificate-authority={kube.ca}", f"--token={token}",
        "--kubeconfig=/dev/null", "-n", namespace,
    ]  # fmt: skip
    allowed = kube.run(
        *as_router, "get", "configmaps", "--field-selector=metadata.name=smsmesh-routing",
        "-o", "name",
    )  # fmt: skip
    assert allowed.stdout.split() == ["configmap/smsmesh-routing"]
    refused = kube.run(*as_router, "get", "configmaps", check=False)
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower()

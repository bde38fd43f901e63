"""The operator serving every namespace (SMSMESH_WATCH_NAMESPACE=""), with a ServiceAccount
bound cluster-wide to exactly `rbac.operator_rules()` through a ClusterRole."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kube_cluster import KubeApiserver
from opkit import (
    Api,
    OperatorProcess,
    admin_kubeconfig,
    apps,
    collection,
    core,
    create_namespace,
    install_crds,
    kubectl,
    service_account_with_rules,
    start_operator,
)

from smsmesh_operator import names, rbac

pytestmark = pytest.mark.k8s

API = "smsmesh.io/v1alpha1"


@pytest.fixture(scope="module")
def operator(
    kube_apiserver: KubeApiserver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OperatorProcess, Path]]:
    workdir = tmp_path_factory.mktemp("clusterwide")
    admin = admin_kubeconfig(kube_apiserver, workdir)
    install_crds(kube_apiserver, admin)
    home = create_namespace(kube_apiserver, admin, "ops")
    identity = service_account_with_rules(
        kube_apiserver, admin, home, "smsmesh-operator", rbac.operator_rules(), workdir,
        cluster_wide=True,
    )  # fmt: skip
    op = start_operator(identity, workdir, store_url=None, all_namespaces=True)
    try:
        yield op, admin
    finally:
        op.stop()


@pytest.fixture
async def api(kube_apiserver: KubeApiserver) -> AsyncIterator[Api]:
    async with Api(kube_apiserver) as session:
        yield session


async def test_objects_in_any_namespace_are_served(
    kube_apiserver: KubeApiserver, operator: tuple[OperatorProcess, Path], api: Api
) -> None:
    op, admin = operator
    team = create_namespace(kube_apiserver, admin, "team")
    quiet = create_namespace(kube_apiserver, admin, "quiet")
    await api.create(
        core(team, "secrets"),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
         "stringData": {"systemId": "a", "password": "b"}},
    )  # fmt: skip
    await api.create(
        collection(team, "smppconnections"),
        {"apiVersion": API, "kind": "SmppConnection", "metadata": {"name": "c"},
         "spec": {"host": "smsc.example", "credentialsSecretRef": {"name": "creds"}}},
    )  # fmt: skip
    await api.create(
        collection(team, "smsroutes"),
        {"apiVersion": API, "kind": "SmsRoute", "metadata": {"name": "r"},
         "spec": {"targets": [{"connection": "c"}]}},
    )  # fmt: skip
    await api.wait_for(
        apps(team, "deployments"), names.connector_name("c"), lambda d: d is not None
    )
    snapshot = await api.wait_for(
        core(team, "configmaps"),
        names.ROUTING_CONFIGMAP,
        lambda c: c is not None and "name: r" in c["data"][names.ROUTING_KEY],
    )
    assert snapshot is not None
    # A namespace with a connection but no routes or applications gets no snapshot: once
    # its (unresolvable) connection has a status, its run is known to be over.
    await api.create(
        collection(quiet, "smppconnections"),
        {"apiVersion": API, "kind": "SmppConnection", "metadata": {"name": "q"},
         "spec": {"host": "smsc.example", "credentialsSecretRef": {"name": "missing"}}},
    )  # fmt: skip
    await api.wait_for(
        collection(quiet, "smppconnections"),
        "q",
        lambda o: (o or {}).get("status", {}).get("observedGeneration") == 1,
    )
    assert await api.get(f"{core(quiet, 'configmaps')}/{names.ROUTING_CONFIGMAP}") is None
    assert await api.get(f"{apps(quiet, 'deployments')}/{names.connector_name('q')}") is None
    # The heartbeat lives in the operator's own namespace, and comes back.
    await api.wait_for(
        core(op.namespace, "configmaps"), names.HEARTBEAT_CONFIGMAP, lambda c: c is not None
    )
    assert "Forbidden" not in op.logs(tail=10**7)
    kubectl(kube_apiserver, admin, "delete", "namespace", team, quiet, "--wait=false", check=False)

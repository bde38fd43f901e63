"""The exact API access smsmesh's processes need, as data.

The Helm chart renders the same rules (a test compares them) and the operator's tests run
it with a ServiceAccount token bound to exactly these rules, which proves they suffice.

Why each rule is there:

* smsmesh.io custom resources: get/list/watch, the operator's input. No create, update,
  patch or delete: the operator never writes a spec, and it adds no finalizers (it keeps
  nothing outside the cluster that would need cleaning up).
* */status: patch, the conditions, observedGeneration and the connector's live figures.
* smppconnections/finalizers: update, required by the OwnerReferencesPermissionEnforcement
  admission plugin (when a cluster enables it) to set blockOwnerDeletion on the
  connector's ConfigMap and Deployment.
* configmaps, deployments: the connector of each SmppConnection, the routing snapshot and
  the heartbeat. Written with server-side apply, which needs patch, and create for the
  first apply of an object; delete removes the connector of a deleted SmppConnection at
  once, without waiting for the garbage collector or holding a finalizer.
* secrets: get/list/watch to validate references (does the Secret and key exist), to roll
  a connector when its credentials change and to copy API keys into the snapshot. Writes:
  patch only the one Secret the operator owns (the snapshot's keys); create cannot be
  limited to a name in RBAC, so it is granted for Secrets, but the operator never updates
  or deletes a Secret it did not make.
* events: create, for `kubectl describe` (connector created, rolled, bound, invalid, ...).

kopf needs nothing more: the operator runs kopf standalone (no peering objects) with
cluster scanning off (no namespace or CRD watches).

The router reads two named objects and nothing else.
"""

from __future__ import annotations

from typing import Any

from smsmesh_operator import names

Rule = dict[str, list[str]]

CUSTOM_RESOURCES = ["smppconnections", "smsroutes", "smsapplications"]
READ = ["get", "list", "watch"]
WRITE_OWNED = ["get", "list", "watch", "create", "patch", "delete"]


def operator_rules() -> list[Rule]:
    """Rules of the operator's Role (one namespace) or ClusterRole (all namespaces)."""
    return [
        {"apiGroups": ["smsmesh.io"], "resources": list(CUSTOM_RESOURCES), "verbs": list(READ)},
        {
            "apiGroups": ["smsmesh.io"],
            "resources": [f"{r}/status" for r in CUSTOM_RESOURCES],
            "verbs": ["patch"],
        },
        {
            "apiGroups": ["smsmesh.io"],
            "resources": ["smppconnections/finalizers"],
            "verbs": ["update"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": list(WRITE_OWNED)},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": list(WRITE_OWNED)},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": [*READ, "create"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [names.ROUTING_SECRET],
            "verbs": ["patch"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]


def router_rules(
    configmap: str = names.ROUTING_CONFIGMAP, secret: str = names.ROUTING_SECRET
) -> list[Rule]:
    """Rules of the router's Role: read the routing snapshot and its keys, nothing else."""
    return [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [configmap],
            "verbs": list(READ),
        },
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [secret],
            "verbs": list(READ),
        },
    ]


def role(name: str, namespace: str | None, rules: list[Rule]) -> dict[str, Any]:
    """A Role in `namespace`, or a ClusterRole when `namespace` is None."""
    metadata: dict[str, Any] = {"name": name, "labels": {names.LABEL_PART_OF: names.APP_NAME}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role" if namespace is not None else "ClusterRole",
        "metadata": metadata,
        "rules": rules,
    }


def binding(
    name: str, namespace: str | None, service_account: str, sa_namespace: str
) -> dict[str, Any]:
    """Bind the Role (or ClusterRole, when `namespace` is None) `name` to a ServiceAccount."""
    kind = "Role" if namespace is not None else "ClusterRole"
    metadata: dict[str, Any] = {"name": name, "labels": {names.LABEL_PART_OF: names.APP_NAME}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": f"{kind}Binding",
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
        "subjects": [
            {"kind": "ServiceAccount", "name": service_account, "namespace": sa_namespace}
        ],
    }


def normalized(rules: list[Rule]) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, resourceName or '*', verb) for every grant: compares two rule
    lists however they are grouped (the chart may merge or split rules)."""
    out: set[tuple[str, str, str, str]] = set()
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for name in rule.get("resourceNames") or ["*"]:
                    for verb in rule.get("verbs", []):
                        out.add((group, resource, name, verb))
    return out

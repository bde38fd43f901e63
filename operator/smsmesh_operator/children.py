"""The objects the operator derives from the custom resources, as plain manifests.

Pure functions: the same inputs give byte-identical manifests (sorted YAML, no
timestamps), which is what keeps reconciles free of writes when nothing changed and keeps
GitOps tools from seeing drift.

Per SmppConnection: a ConfigMap with the connection (and the applications its MOs may go
to) and a Deployment running exactly one connector. Per namespace: the routing snapshot,
a ConfigMap of the valid routes and applications plus a Secret of exactly the API keys
they reference.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from smsmesh.resources import (
    Resource,
    SecretKeyRef,
    SmppConnection,
    SmsApplication,
    secret_env_name,
)
from smsmesh_operator import names
from smsmesh_operator.config import OperatorConfig
from smsmesh_operator.digests import digest, json_digest
from smsmesh_operator.evaluate import Evaluation


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    return json_digest(manifest)


def with_applied_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest, annotated with the digest of itself (computed without the annotation)."""
    annotations = manifest["metadata"].setdefault("annotations", {})
    annotations.pop(names.ANNOTATION_APPLIED_HASH, None)
    annotations[names.ANNOTATION_APPLIED_HASH] = manifest_digest(manifest)
    return manifest


def minimal_document(obj: Resource) -> dict[str, Any]:
    """apiVersion, kind, name, namespace and spec: what a reader needs, nothing that
    changes without a spec change (no uid, resourceVersion, status or annotations)."""
    return {
        "apiVersion": obj.api_version,
        "kind": obj.kind,
        "metadata": {"name": obj.metadata.name, "namespace": obj.metadata.namespace},
        "spec": obj.spec.to_wire(),
    }


def dump_documents(docs: Iterable[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=True, default_flow_style=False)


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(component: str, instance: str, connection: str | None = None) -> dict[str, str]:
    out = {
        names.LABEL_NAME: names.APP_NAME,
        names.LABEL_COMPONENT: component,
        names.LABEL_INSTANCE: instance,
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_PART_OF: names.APP_NAME,
    }
    if connection is not None:
        out[names.LABEL_CONNECTION] = connection
    return out


# -- connector -----------------------------------------------------------------------------


def connector_documents(conn: SmppConnection, evaluation: Evaluation) -> list[Resource]:
    """The connection and the applications its connector needs: the one named in
    inbound.application, or (for binds that receive) those claiming MOs by number."""
    docs: list[Resource] = [conn]
    inbound = conn.spec.inbound.application
    if inbound is not None:
        app = evaluation.applications.get(inbound)
        if app is not None:
            docs.append(app)
    elif conn.spec.bind_type != "transmitter":
        docs.extend(
            app
            for _, app in sorted(evaluation.applications.items())
            if app.spec.inbound.webhook_url and app.spec.inbound.numbers
        )
    return docs


def connector_secret_refs(conn: SmppConnection) -> list[SecretKeyRef]:
    """Secret keys the connector reads: system_id, password and the TLS CA if any."""
    creds = conn.spec.credentials_secret_ref
    refs = [creds.system_id_ref(), creds.password_ref()]
    if conn.spec.tls.ca_secret_ref is not None:
        refs.append(conn.spec.tls.ca_secret_ref)
    return refs


def connector_configmap(
    conn: SmppConnection, docs: list[Resource], owner: Mapping[str, Any]
) -> dict[str, Any]:
    name = conn.metadata.name
    return with_applied_hash(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": names.connector_name(name),
                "namespace": conn.metadata.namespace,
                "labels": labels(names.COMPONENT_CONNECTOR, name, name),
                "ownerReferences": [owner_reference(owner)],
            },
            "data": {names.CONNECTOR_CONFIG_KEY: dump_documents(minimal_document(d) for d in docs)},
        }
    )


def config_hash(configmap: Mapping[str, Any], secret_versions: Mapping[str, str]) -> str:
    """Changes when the connector's configuration or any Secret it reads changes, which
    rolls the connector (the pod template carries it)."""
    parts = [json.dumps(configmap["data"], sort_keys=True)]
    parts.extend(f"{n}={v}" for n, v in sorted(secret_versions.items()))
    return digest(*parts)


def _secret_env(name: str, key: str) -> dict[str, Any]:
    return {
        "name": secret_env_name(name, key),
        "valueFrom": {"secretKeyRef": {"name": name, "key": key}},
    }


def _telemetry_env(config: OperatorConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "SMSMESH_METRICS_HOST", "value": "0.0.0.0"},  # probes come from the kubelet
        {"name": "SMSMESH_METRICS_PORT", "value": str(config.connector_metrics_port)},
    ]
    if config.metrics_token_secret:
        ref = {"name": config.metrics_token_secret, "key": config.metrics_token_secret_key}
        env.append({"name": "SMSMESH_METRICS_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    return env


def _store_env(config: OperatorConfig) -> list[dict[str, Any]]:
    if config.store_secret:
        ref = {"name": config.store_secret, "key": config.store_secret_key}
        return [{"name": "SMSMESH_STORE_URL", "valueFrom": {"secretKeyRef": ref}}]
    if config.store_url:  # development only: the URL (and any password) is in the spec
        return [{"name": "SMSMESH_STORE_URL", "value": config.store_url}]
    return []


def connector_deployment(
    conn: SmppConnection,
    config: OperatorConfig,
    owner: Mapping[str, Any],
    *,
    config_digest: str,
    paused: bool,
) -> dict[str, Any]:
    """One connector pod, never two: replicas 1 (0 when paused) and strategy Recreate."""
    name = conn.metadata.name
    pod_labels = labels(names.COMPONENT_CONNECTOR, name, name)
    selector = {
        names.LABEL_NAME: names.APP_NAME,
        names.LABEL_COMPONENT: names.COMPONENT_CONNECTOR,
        names.LABEL_CONNECTION: name,
    }
    env = _store_env(config) + _telemetry_env(config)
    seen: set[str] = set()
    for ref in connector_secret_refs(conn):
        entry = _secret_env(ref.name, ref.key)
        if entry["name"] not in seen:
            seen.add(entry["name"])
            env.append(entry)
    container = {
        "name": names.CONNECTOR_CONTAINER,
        "image": config.connector_image,
        "args": [
            "connector",
            "--resources",
            names.CONNECTOR_CONFIG_DIR,
            "--connection",
            name,
        ],
        "env": env,
        "ports": [
            {"name": "metrics", "containerPort": config.connector_metrics_port, "protocol": "TCP"}
        ],
        # Liveness: the event loop answers (an SMSC outage must not restart the pod).
        # Readiness: the bind is up, so "available" means "bound" to the Deployment too.
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
        },
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "connection", "mountPath": names.CONNECTOR_CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return with_applied_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": names.connector_name(name),
                "namespace": conn.metadata.namespace,
                "labels": dict(pod_labels),
                "ownerReferences": [owner_reference(owner)],
            },
            "spec": {
                "replicas": 0 if paused else 1,
                "strategy": {"type": "Recreate"},
                "revisionHistoryLimit": 3,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {
                        "labels": pod_labels,
                        "annotations": {names.ANNOTATION_CONFIG_HASH: config_digest},
                    },
                    "spec": {
                        "serviceAccountName": config.connector_service_account,
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": {
                            "runAsNonRoot": True,
                            # The image's own user (Dockerfile): one uid for every role.
                            "runAsUser": 10001,
                            "runAsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                        "volumes": [
                            {
                                "name": "connection",
                                "configMap": {"name": names.connector_name(name)},
                            },
                            {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
                        ],
                    },
                },
            },
        }
    )


# -- routing snapshot ------------------------------------------------------------------------


def routing_yaml(evaluation: Evaluation) -> str:
    """routing.yaml: every usable SmsApplication and SmsRoute of the namespace."""
    docs: list[Resource] = [*evaluation.usable_applications(), *evaluation.usable_routes()]
    return dump_documents(minimal_document(d) for d in docs)


def api_key_refs(applications: Iterable[SmsApplication]) -> dict[str, list[str]]:
    """Secret name -> the keys the applications read from it (sorted, unique)."""
    out: dict[str, set[str]] = {}
    for app in applications:
        for ref in app.spec.api_key_secret_refs:
            out.setdefault(ref.name, set()).add(ref.key)
    return {name: sorted(keys) for name, keys in sorted(out.items())}


def keys_yaml(namespace: str, values: Mapping[str, Mapping[str, str]]) -> str:
    """keys.yaml: one v1 Secret document per referenced Secret, with only the referenced
    keys; `values` maps Secret name -> key -> base64 data as read from the API."""
    docs = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": dict(sorted(data.items())),
        }
        for name, data in sorted(values.items())
    ]
    return dump_documents(docs)


def routing_configmap(namespace: str, routing: str, keys_digest: str) -> dict[str, Any]:
    return with_applied_hash(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": names.ROUTING_CONFIGMAP,
                "namespace": namespace,
                "labels": labels(names.COMPONENT_ROUTING, names.ROUTING_CONFIGMAP),
                "annotations": {names.ANNOTATION_KEYS_HASH: keys_digest},
            },
            "data": {names.ROUTING_KEY: routing},
        }
    )


def keys_secret(namespace: str, keys: str, source_digest: str) -> dict[str, Any]:
    """The keys Secret; annotated with the digest of keys.yaml (`digest(keys)`, which the
    routing ConfigMap names in its keys-hash annotation) and of the Secrets it came from."""
    return with_applied_hash(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": names.ROUTING_SECRET,
                "namespace": namespace,
                "labels": labels(names.COMPONENT_ROUTING, names.ROUTING_SECRET),
                "annotations": {
                    names.ANNOTATION_SOURCE_HASH: source_digest,
                    names.ANNOTATION_KEYS_HASH: digest(keys),
                },
            },
            "data": {names.KEYS_KEY: base64.b64encode(keys.encode()).decode()},
        }
    )

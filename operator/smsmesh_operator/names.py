"""Names the operator gives to what it creates, and the labels and annotations it reads.

One module so that the Helm chart, the router and the tests can agree on them: a rename
here is a rename everywhere. Everything the operator creates carries
`app.kubernetes.io/managed-by: smsmesh-operator`, which is also the server-side label
selector of its ConfigMap and Deployment watches.
"""

from __future__ import annotations

from typing import Final

MANAGED_BY: Final = "smsmesh-operator"
FIELD_MANAGER: Final = "smsmesh-operator"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_CONNECTION: Final = "smsmesh.io/connection"
APP_NAME: Final = "smsmesh"

COMPONENT_CONNECTOR: Final = "connector"
COMPONENT_ROUTING: Final = "routing"
COMPONENT_OPERATOR: Final = "operator"

MANAGED_SELECTOR: Final = f"{LABEL_MANAGED_BY}={MANAGED_BY}"

# Set by users on an SmppConnection: "true" scales its connector to zero.
ANNOTATION_PAUSED: Final = "smsmesh.io/paused"
# On the connector pod template: changes whenever the connector's inputs change.
ANNOTATION_CONFIG_HASH: Final = "smsmesh.io/config-hash"
# On every object the operator writes: digest of the manifest it last applied, so a
# reconcile that would change nothing sends nothing.
ANNOTATION_APPLIED_HASH: Final = "smsmesh.io/applied-hash"
# On the routing snapshot: digest of the keys Secret's keys.yaml this routing.yaml goes
# with. A router applies the pair only when they match (a consistent snapshot).
ANNOTATION_KEYS_HASH: Final = "smsmesh.io/keys-hash"
# On the keys Secret: digest of the Secrets (names, resourceVersions, keys) it was built
# from, so the operator reads API keys only when one of them changed.
ANNOTATION_SOURCE_HASH: Final = "smsmesh.io/source-hash"
ANNOTATION_HEARTBEAT: Final = "smsmesh.io/heartbeat"

ROUTING_CONFIGMAP: Final = "smsmesh-routing"
ROUTING_SECRET: Final = "smsmesh-routing-keys"
ROUTING_KEY: Final = "routing.yaml"
KEYS_KEY: Final = "keys.yaml"
HEARTBEAT_CONFIGMAP: Final = "smsmesh-operator-heartbeat"

CONNECTOR_CONTAINER: Final = "connector"
CONNECTOR_CONFIG_KEY: Final = "connection.yaml"
CONNECTOR_CONFIG_DIR: Final = "/etc/smsmesh/connection"


def connector_name(connection: str) -> str:
    """Name of the ConfigMap and the Deployment of a connection's connector."""
    return f"smsmesh-connector-{connection}"


def keys_secret_name(configmap: str) -> str:
    """The keys Secret that goes with a routing snapshot ConfigMap."""
    return f"{configmap}-keys"


def is_paused(annotations: dict[str, str] | None) -> bool:
    return (annotations or {}).get(ANNOTATION_PAUSED, "").strip().lower() == "true"

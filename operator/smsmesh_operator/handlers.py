"""The kopf side of the operator: what is watched, indexed and probed.

Only indexes and event handlers are registered, no create/update/delete handlers, timers
or daemons on the custom resources. Consequences, all intended:

* kopf never writes to a user's object (no finalizers, no last-handled-configuration or
  progress annotations): GitOps tools see no drift, and deleting an SmppConnection never
  waits for the operator (a timer or daemon would add a finalizer to every object).
* Reconciliation is level-based per namespace (see `reconciler`), which suits objects that
  depend on each other; the event handlers only say "this namespace changed".
* ConfigMap and Deployment watches carry a server-side label selector: the operator keeps
  only what it manages. Secrets are indexed by key names and resourceVersion, never values.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import kopf

from smsmesh.resources import GROUP, VERSION
from smsmesh_operator import names
from smsmesh_operator.observed import ManagedObject, SecretInfo, plain
from smsmesh_operator.service import IndexViews, SmsmeshOperator

CUSTOM = ("smppconnections", "smsroutes", "smsapplications")
MANAGED_LABELS = {names.LABEL_MANAGED_BY: names.MANAGED_BY}


def login_function(settings: kopf.OperatorSettings) -> Callable[[], kopf.ConnectionInfo]:
    """How both kopf and the operator's own client log in: $KUBECONFIG if set, else the
    pod's ServiceAccount, else ~/.kube/config."""

    def login() -> kopf.ConnectionInfo:
        info: kopf.ConnectionInfo | None = None
        if not os.environ.get("KUBECONFIG"):
            info = kopf.login_with_service_account(settings=settings)
        if info is None:
            info = kopf.login_with_kubeconfig(settings=settings)
        if info is None:
            raise kopf.LoginError("no ServiceAccount token and no kubeconfig to log in with")
        return info

    return login


class _Merged(Mapping[str, Any]):
    """Several kopf indexes (namespace -> values) read as one."""

    def __init__(self, *indexes: Mapping[str, Any]) -> None:
        self._indexes = indexes

    def __getitem__(self, key: str) -> list[Any]:
        found = [v for index in self._indexes if key in index for v in index[key]]
        if not found:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter({k for index in self._indexes for k in index})

    def __len__(self) -> int:
        return len({k for index in self._indexes for k in index})


def build_registry(op: SmsmeshOperator) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return op.login()

    @kopf.on.startup(registry=registry)
    async def startup(**_: Any) -> None:
        op.start_background()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await op.stop()

    @kopf.on.probe(id="heartbeat", registry=registry)
    def heartbeat(**_: Any) -> dict[str, Any]:
        return op.heartbeat.check()

    # -- indexes: namespace -> what the reconciler reads ------------------------------------

    @kopf.index(GROUP, VERSION, "smppconnections", id="smsmesh_connections", registry=registry)
    def smsmesh_connections(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, Any]:
        return {namespace or "": plain(body)}

    @kopf.index(GROUP, VERSION, "smsroutes", id="smsmesh_routes", registry=registry)
    def smsmesh_routes(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, Any]:
        return {namespace or "": plain(body)}

    @kopf.index(GROUP, VERSION, "smsapplications", id="smsmesh_applications", registry=registry)
    def smsmesh_applications(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, Any]:
        return {namespace or "": plain(body)}

    @kopf.index("v1", "secrets", id="smsmesh_secrets", registry=registry)
    def smsmesh_secrets(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, Any]:
        return {namespace or "": SecretInfo.from_body(body)}

    @kopf.index(
        "apps",
        "v1",
        "deployments",
        labels=MANAGED_LABELS,
        id="smsmesh_deployments",
        registry=registry,
    )
    def smsmesh_deployments(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, Any]:
        return {namespace or "": ManagedObject.from_body("Deployment", body)}

    @kopf.index(
        "v1", "configmaps", labels=MANAGED_LABELS, id="smsmesh_configmaps", registry=registry
    )
    def smsmesh_configmaps(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, Any]:
        return {namespace or "": ManagedObject.from_body("ConfigMap", body)}

    # -- events: "this namespace changed" ----------------------------------------------------

    def activate(kwargs: Mapping[str, Any]) -> None:
        op.activate(
            IndexViews(
                connections=kwargs["smsmesh_connections"],
                routes=kwargs["smsmesh_routes"],
                applications=kwargs["smsmesh_applications"],
                secrets=kwargs["smsmesh_secrets"],
                managed=_Merged(kwargs["smsmesh_deployments"], kwargs["smsmesh_configmaps"]),
            )
        )

    async def changed(namespace: str | None, **kwargs: Any) -> None:
        activate(kwargs)
        op.changed(namespace)

    for plural in CUSTOM:
        kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"changed-{plural}")(changed)
    kopf.on.event("v1", "secrets", registry=registry, id="changed-secrets")(changed)
    kopf.on.event(
        "apps",
        "v1",
        "deployments",
        labels=MANAGED_LABELS,
        registry=registry,
        id="changed-deployments",
    )(changed)

    @kopf.on.event("v1", "configmaps", labels=MANAGED_LABELS, registry=registry)
    async def configmap_changed(
        name: str, namespace: str | None, meta: kopf.Meta, **kwargs: Any
    ) -> None:
        activate(kwargs)
        if name == names.HEARTBEAT_CONFIGMAP and namespace == op.heartbeat.namespace:
            op.heartbeat.seen(dict(meta.annotations))
        else:
            op.changed(namespace)

    return registry


def configure(settings: kopf.OperatorSettings, op: SmsmeshOperator) -> None:
    """kopf settings: standalone, no cluster scanning, server-side label selectors, watch
    and request timeouts, and a project prefix for anything kopf might ever persist."""
    config = op.config
    settings.peering.standalone = True
    settings.scanning.disabled = True
    settings.posting.enabled = True
    # kopf passes it as timeoutSeconds, which the API server parses as an integer.
    settings.watching.server_timeout = int(config.watch_server_timeout)
    settings.watching.client_timeout = config.watch_server_timeout + 30
    settings.watching.connect_timeout = 10
    settings.queueing.exit_timeout = 1.0  # on SIGTERM, do not linger over idle streams
    settings.process.ultimate_exiting_timeout = 25  # within a pod's 30 s grace period
    settings.networking.request_timeout = config.request_timeout
    settings.networking.connect_timeout = 10
    for key in (("v1", "configmaps"), ("apps", "v1", "deployments")):
        settings.watching.label_selectors[key] = names.MANAGED_SELECTOR
    settings.persistence.finalizer = "smsmesh.io/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="smsmesh.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="smsmesh.io")

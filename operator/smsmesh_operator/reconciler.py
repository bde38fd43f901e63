"""One namespace, reconciled as a whole: validate, publish the routing snapshot, run one
connector per valid SmppConnection, remove connectors of deleted ones, write statuses.

Level-based: every run starts from the current picture (kopf's in-memory indexes of the
watched objects and the last store snapshot), never from "what changed". Objects depend on
each other (routes on connections and applications, connectors on Secrets and
applications), so a change anywhere simply re-runs the namespace; a run that would change
nothing writes nothing, because every manifest carries the digest of itself and every
status is compared before it is patched.

Writes the watch has not echoed back yet are remembered for a few seconds (`RecentWrites`),
so a second run right after a write does not repeat it, or post its events twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from smsmesh.resources import GROUP, VERSION, SmppConnection
from smsmesh_operator import children, names
from smsmesh_operator.config import OperatorConfig
from smsmesh_operator.digests import digest, json_digest
from smsmesh_operator.evaluate import Evaluation, evaluate
from smsmesh_operator.kubeapi import ApiError, KubeApi, path_for
from smsmesh_operator.observed import ManagedObject, SecretInfo
from smsmesh_operator.status import (
    StoreSnapshot,
    Transition,
    connection_status,
    normalized,
    previous_conditions,
    resource_status,
)

log = logging.getLogger(__name__)

API_VERSION = f"{GROUP}/{VERSION}"
PLURALS = {
    "SmppConnection": "smppconnections",
    "SmsRoute": "smsroutes",
    "SmsApplication": "smsapplications",
}


class RetryLater(Exception):
    """Something changed under the run (or a write failed); run the namespace again soon."""


class Indexes(Protocol):
    """kopf's in-memory indexes, namespace -> values."""

    connections: Mapping[str, Iterable[dict[str, Any]]]
    routes: Mapping[str, Iterable[dict[str, Any]]]
    applications: Mapping[str, Iterable[dict[str, Any]]]
    secrets: Mapping[str, Iterable[SecretInfo]]
    managed: Mapping[str, Iterable[ManagedObject]]


EventPoster = Callable[[Mapping[str, Any], Transition], None]


class RecentWrites:
    """What this process wrote in the last `ttl` seconds, by key."""

    def __init__(self, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._items: dict[Any, tuple[Any, float]] = {}

    def remember(self, key: Any, value: Any) -> None:
        now = self._clock()
        if len(self._items) >= 256:  # forget what expired (e.g. of deleted objects)
            for old in [k for k, (_, at) in self._items.items() if now - at > self._ttl]:
                del self._items[old]
        self._items[key] = (value, now)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        if self._clock() - item[1] > self._ttl:
            del self._items[key]
            return None
        return item[0]


@dataclass
class Context:
    """Everything a namespace run needs, shared by all namespaces of the process."""

    config: OperatorConfig
    api: KubeApi
    indexes: Indexes
    post_event: EventPoster
    store: Callable[[], StoreSnapshot]
    recent: RecentWrites = field(default_factory=RecentWrites)
    clock: Callable[[], float] = time.time


def _values(index: Mapping[str, Iterable[Any]], namespace: str) -> list[Any]:
    return list(index.get(namespace, ()))


def _drifted(manifest: Mapping[str, Any], live: ManagedObject) -> bool:
    """Whether someone changed what the operator guarantees: a connector's replica count
    (never two binds) or a ConfigMap's data."""
    if manifest["kind"] == "Deployment":
        return bool(live.replicas != manifest["spec"]["replicas"])
    if "data" in manifest:
        return live.data_digest != json_digest(manifest["data"])
    return False


class NamespaceReconciler:
    def __init__(self, namespace: str, ctx: Context) -> None:
        self.namespace = namespace
        self.ctx = ctx
        self.runs = 0
        self._failures: list[str] = []

    async def run(self) -> None:
        """Reconcile the namespace once; `RetryLater` if any step should be repeated."""
        ctx, ns = self.ctx, self.namespace
        self.runs += 1
        self._failures = []
        connections = _values(ctx.indexes.connections, ns)
        routes = _values(ctx.indexes.routes, ns)
        applications = _values(ctx.indexes.applications, ns)
        secrets = {s.name: s for s in _values(ctx.indexes.secrets, ns)}
        managed = {(m.kind, m.name): m for m in _values(ctx.indexes.managed, ns)}
        evaluation = evaluate(ns, [*connections, *routes, *applications], secrets.values())

        await self._step(self._publish_snapshot(evaluation, secrets, managed))
        for body in connections:
            name = body["metadata"]["name"]
            conn = evaluation.connections.get(name)
            if conn is not None and evaluation.verdict(conn.kind, name).ok:
                await self._step(self._ensure_connector(body, conn, evaluation, secrets, managed))
        await self._step(self._sweep({b["metadata"]["name"] for b in connections}, managed))

        store = ctx.store()
        now = ctx.clock()
        for body in connections:
            name = body["metadata"]["name"]
            deployment = managed.get(("Deployment", names.connector_name(name)))
            base = self._base_conditions(body)
            status, transitions = connection_status(
                body,
                evaluation.verdict("SmppConnection", name),
                deployment,
                store,
                now=now,
                stale_after=ctx.config.stale_after,
                base=base,
            )
            await self._step(self._write_status(body, status, transitions))
        for body in [*routes, *applications]:
            verdict = evaluation.verdict(body["kind"], body["metadata"]["name"])
            status, transitions = resource_status(body, verdict, base=self._base_conditions(body))
            await self._step(self._write_status(body, status, transitions))
        if self._failures:
            raise RetryLater("; ".join(self._failures))

    async def _step(self, coro: Any) -> None:
        """Run one write step; a failure is logged and retried, the other steps go on."""
        try:
            await coro
        except (ApiError, RetryLater) as exc:
            log.warning("%s: %s", self.namespace, exc)
            self._failures.append(str(exc))

    # -- routing snapshot ------------------------------------------------------------------

    def _wants_snapshot(
        self, evaluation: Evaluation, managed: Mapping[tuple[str, str], ManagedObject]
    ) -> bool:
        """Served namespaces always have one; with cluster-wide watching, a namespace has
        one once it holds a route or application (and keeps it, emptied, after)."""
        if self.namespace in self.ctx.config.namespaces:
            return True
        return bool(
            evaluation.routes
            or evaluation.applications
            or ("ConfigMap", names.ROUTING_CONFIGMAP) in managed
        )

    async def _publish_snapshot(
        self,
        evaluation: Evaluation,
        secrets: Mapping[str, SecretInfo],
        managed: Mapping[tuple[str, str], ManagedObject],
    ) -> None:
        if not self._wants_snapshot(evaluation, managed):
            return
        ns = self.namespace
        refs = children.api_key_refs(evaluation.usable_applications())
        source = digest(
            *(f"{n}@{secrets[n].resource_version}:{','.join(k)}" for n, k in refs.items())
        )
        keys_digest = await self._keys_digest(refs, source, secrets.get(names.ROUTING_SECRET))
        configmap = children.routing_configmap(ns, children.routing_yaml(evaluation), keys_digest)
        await self._apply(configmap, managed.get(("ConfigMap", names.ROUTING_CONFIGMAP)))

    async def _keys_digest(
        self, refs: Mapping[str, list[str]], source: str, live: SecretInfo | None
    ) -> str:
        """Digest of the keys Secret for these references, (re)writing it if needed.

        API keys are read from their Secrets only when a referenced Secret changed.
        """
        key = ("Secret", self.namespace, names.ROUTING_SECRET)
        if live is not None and live.annotations.get(names.ANNOTATION_SOURCE_HASH) == source:
            known = live.annotations.get(names.ANNOTATION_KEYS_HASH)
            if known:
                return known
        remembered = self.ctx.recent.get(key)
        if remembered is not None and remembered[0] == source:
            return str(remembered[1])
        values: dict[str, dict[str, str]] = {}
        for name, keys in refs.items():
            body = await self.ctx.api.get(path_for("v1", "secrets", self.namespace, name))
            data = (body or {}).get("data") or {}
            missing = [k for k in keys if k not in data]
            if body is None or missing:
                raise RetryLater(f"Secret {name!r} changed while its API keys were read")
            values[name] = {k: data[k] for k in keys}
        text = children.keys_yaml(self.namespace, values)
        keys_digest = digest(text)
        manifest = children.keys_secret(self.namespace, text, source)
        await self.ctx.api.apply(
            path_for("v1", "secrets", self.namespace, names.ROUTING_SECRET), manifest
        )
        self.ctx.recent.remember(key, (source, keys_digest))
        log.info("%s: published API keys of %d Secret(s)", self.namespace, len(values))
        return keys_digest

    # -- connectors ------------------------------------------------------------------------

    async def _apply(self, manifest: dict[str, Any], live: ManagedObject | None) -> bool:
        """Apply `manifest` unless the live object (or a recent write) already has it.

        The applied-hash annotation says what this operator last wrote; the fields that
        matter most are also compared, so a hand edit (`kubectl scale --replicas=2`, an
        edited ConfigMap) is put back at once, not just at the next spec change.
        """
        meta = manifest["metadata"]
        wanted = meta["annotations"][names.ANNOTATION_APPLIED_HASH]
        key = (manifest["kind"], meta["namespace"], meta["name"])
        if live is not None and live.applied_hash == wanted:
            if not _drifted(manifest, live):
                return False
            log.warning("%s: %s %s was changed by hand; restoring it", *key)
        elif self.ctx.recent.get(key) == wanted:
            return False  # written a moment ago; the watch has not shown it yet
        plural = "deployments" if manifest["kind"] == "Deployment" else "configmaps"
        path = path_for(manifest["apiVersion"], plural, meta["namespace"], meta["name"])
        await self.ctx.api.apply(path, manifest)
        self.ctx.recent.remember(key, wanted)
        log.info("%s: applied %s %s", self.namespace, manifest["kind"], meta["name"])
        return True

    async def _ensure_connector(
        self,
        body: Mapping[str, Any],
        conn: SmppConnection,
        evaluation: Evaluation,
        secrets: Mapping[str, SecretInfo],
        managed: Mapping[tuple[str, str], ManagedObject],
    ) -> None:
        config = self.ctx.config
        child = names.connector_name(conn.metadata.name)
        configmap = children.connector_configmap(
            conn, children.connector_documents(conn, evaluation), body
        )
        read = {ref.name for ref in children.connector_secret_refs(conn)}
        read.update(n for n in (config.store_secret, config.metrics_token_secret) if n)
        versions = {n: secrets[n].resource_version for n in read if n in secrets}
        config_digest = children.config_hash(configmap, versions)
        paused = names.is_paused(body["metadata"].get("annotations"))
        deployment = children.connector_deployment(
            conn, config, body, config_digest=config_digest, paused=paused
        )
        # The ConfigMap first: a pod started for the new Deployment must find its config.
        await self._apply(configmap, managed.get(("ConfigMap", child)))
        live = managed.get(("Deployment", child))
        if not await self._apply(deployment, live):
            return
        if live is None:
            self._event(body, Transition("ConnectorCreated", f"created Deployment {child}"))
        elif live.config_hash != config_digest:
            self._event(
                body,
                Transition(
                    "ConnectorRolled",
                    f"configuration changed (config-hash {live.config_hash} -> {config_digest}); "
                    "the connector restarts",
                ),
            )

    async def _sweep(
        self, existing: set[str], managed: Mapping[tuple[str, str], ManagedObject]
    ) -> None:
        """Delete connectors whose SmppConnection is gone.

        Owner references let the garbage collector do the same; deleting here makes the
        bind go away at once and needs no finalizer (which would block deleting an
        SmppConnection whenever the operator is down).
        """
        for (kind, name), obj in sorted(managed.items()):
            if obj.component != names.COMPONENT_CONNECTOR or obj.connection in existing:
                continue
            key = (kind, self.namespace, name, "deleted")
            if self.ctx.recent.get(key):
                continue
            plural = "deployments" if kind == "Deployment" else "configmaps"
            api_version = "apps/v1" if kind == "Deployment" else "v1"
            await self.ctx.api.delete(path_for(api_version, plural, self.namespace, name))
            self.ctx.recent.remember(key, True)
            log.info(
                "%s: deleted %s %s (SmppConnection %s is gone)",
                self.namespace,
                kind,
                name,
                obj.connection,
            )

    # -- status ----------------------------------------------------------------------------

    def _base_conditions(self, body: Mapping[str, Any]) -> list[Any]:
        """The conditions to compute transitions from: what was last written by this
        process if the watch has not echoed it yet, else the live status."""
        remembered = self.ctx.recent.get(("status", body["metadata"].get("uid")))
        return previous_conditions(remembered if remembered is not None else body.get("status"))

    async def _write_status(
        self, body: Mapping[str, Any], status: dict[str, Any], transitions: list[Transition]
    ) -> None:
        key = ("status", body["metadata"].get("uid"))
        desired = normalized(status)
        remembered = self.ctx.recent.get(key)
        if desired == normalized(body.get("status")) or (
            remembered is not None and desired == normalized(remembered)
        ):
            return
        meta = body["metadata"]
        path = (
            path_for(API_VERSION, PLURALS[body["kind"]], self.namespace, meta["name"]) + "/status"
        )
        answer = await self.ctx.api.merge_patch(path, {"status": status})
        if answer is None:
            return  # deleted meanwhile
        self.ctx.recent.remember(key, status)
        for transition in transitions:
            self._event(body, transition)

    def _event(self, body: Mapping[str, Any], transition: Transition) -> None:
        try:
            self.ctx.post_event(body, transition)
        except Exception as exc:  # events are best effort; never fail a reconcile on them
            log.warning("cannot post event %s: %s", transition.reason, exc)

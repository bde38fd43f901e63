"""What the operator remembers about the objects it watches: small, immutable summaries.

kopf indexes keep these in memory per namespace. Custom resources are kept whole (they
are small and their status is needed), everything else is cut down to what a reconcile
reads: a Secret to its key names and resourceVersion (never its data), a Deployment to
its hashes and availability.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smsmesh_operator import names
from smsmesh_operator.digests import json_digest


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached deep copy of a kopf body (a live view), without managedFields (often
    larger than the object, and never read)."""
    out = {key: copy.deepcopy(value) for key, value in body.items()}
    if isinstance(out.get("metadata"), dict):
        out["metadata"].pop("managedFields", None)
    return out


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _smsmesh_annotations(meta: Mapping[str, Any]) -> dict[str, str]:
    annotations = meta.get("annotations") or {}
    return {k: str(v) for k, v in annotations.items() if k.startswith("smsmesh.io/")}


@dataclass(frozen=True, slots=True)
class SecretInfo:
    name: str
    resource_version: str
    keys: frozenset[str]
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SecretInfo:
        meta = _meta(body)
        keys = set(body.get("data") or {}) | set(body.get("stringData") or {})
        return cls(
            name=str(meta.get("name", "")),
            resource_version=str(meta.get("resourceVersion", "")),
            keys=frozenset(keys),
            annotations=_smsmesh_annotations(meta),
        )


@dataclass(frozen=True, slots=True)
class ManagedObject:
    """A ConfigMap or Deployment the operator wrote (label managed-by=smsmesh-operator)."""

    kind: str
    name: str
    component: str
    connection: str | None
    applied_hash: str | None
    annotations: dict[str, str] = field(default_factory=dict)
    data_digest: str | None = None  # ConfigMaps: of `data`, to notice hand edits
    # Deployments only:
    config_hash: str | None = None
    replicas: int | None = None
    generation: int = 0
    observed_generation: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    progress_message: str = ""

    @classmethod
    def from_body(cls, kind: str, body: Mapping[str, Any]) -> ManagedObject:
        meta = _meta(body)
        labels = meta.get("labels") or {}
        annotations = _smsmesh_annotations(meta)
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        template_meta = (spec.get("template") or {}).get("metadata") or {}
        messages = [
            str(c.get("message"))
            for c in status.get("conditions") or []
            if c.get("status") != "True" and c.get("message")
        ]
        return cls(
            kind=kind,
            name=str(meta.get("name", "")),
            component=str(labels.get(names.LABEL_COMPONENT, "")),
            connection=labels.get(names.LABEL_CONNECTION),
            applied_hash=annotations.get(names.ANNOTATION_APPLIED_HASH),
            annotations=annotations,
            data_digest=json_digest(body["data"])
            if isinstance(body.get("data"), Mapping)
            else None,
            config_hash=(template_meta.get("annotations") or {}).get(names.ANNOTATION_CONFIG_HASH),
            replicas=spec.get("replicas"),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            available_replicas=int(status.get("availableReplicas") or 0),
            progress_message="; ".join(messages),
        )

    def available(self) -> bool:
        """The Deployment controller saw the current spec and a pod of it is available."""
        return (
            self.observed_generation >= self.generation > 0
            and self.updated_replicas >= 1
            and self.available_replicas >= 1
        )

"""Liveness that notices a stalled operator, not just a dead one.

A process can be alive and serve /healthz while its watch streams have silently stopped
delivering (kopf issues #787, #1276): nothing is reconciled, nothing fails. So the
operator writes a heartbeat annotation on its own ConfigMap every `interval` seconds and
its ordinary ConfigMap watch records when each write comes back. The liveness probe
fails once nothing has come back for `stale_after` (3 intervals): the kubelet restarts
the pod, which starts fresh watches. This proves the whole path (API writes, the watch
stream, kopf's event dispatch, this process's event loop) end to end.

kopf's own watch timeouts (server/client timeouts, bookmarks with an inactivity timeout)
re-establish each stream periodically; the heartbeat is the end-to-end check on top.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import kopf

from smsmesh_operator import children, names
from smsmesh_operator.kubeapi import ApiError, KubeApi, path_for

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.interval = interval
        self.stale_after = 3 * interval
        self._clock = clock
        self.started_at = clock()
        self.last_written: str | None = None
        self.last_seen: float | None = None
        self.beats_seen = 0

    def manifest(self, value: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": names.HEARTBEAT_CONFIGMAP,
                "namespace": self.namespace,
                "labels": children.labels(names.COMPONENT_OPERATOR, names.HEARTBEAT_CONFIGMAP),
                "annotations": {names.ANNOTATION_HEARTBEAT: value},
            },
        }

    async def beat(self) -> None:
        value = f"{time.time():.3f}"
        path = path_for("v1", "configmaps", self.namespace, names.HEARTBEAT_CONFIGMAP)
        await self._api.apply(path, self.manifest(value))
        self.last_written = value

    async def run(self) -> None:
        """Beat every `interval` seconds until cancelled; API errors are logged and the
        probe, not this loop, decides when that is fatal."""
        while True:
            try:
                await self.beat()
            except ApiError as exc:
                log.warning("heartbeat write failed: %s", exc)
            await asyncio.sleep(self.interval)

    def seen(self, annotations: dict[str, str] | None) -> None:
        """The heartbeat ConfigMap came through the watch (any version counts: a write
        from a previous process proves the stream as well)."""
        if (annotations or {}).get(names.ANNOTATION_HEARTBEAT):
            self.last_seen = self._clock()
            self.beats_seen += 1

    def age(self) -> float:
        """Seconds since the last heartbeat came back (since start, if none has yet)."""
        reference = self.last_seen if self.last_seen is not None else self.started_at
        return self._clock() - reference

    def check(self) -> dict[str, Any]:
        """The probe: raises (the endpoint answers 500) when the watch looks stalled."""
        age = self.age()
        if age > self.stale_after:
            raise kopf.PermanentError(
                f"no heartbeat came back through the watch for {age:.0f} s "
                f"(limit {self.stale_after:g} s): the watch streams look stalled"
            )
        return {"heartbeatAge": round(age, 1), "beatsSeen": self.beats_seen}

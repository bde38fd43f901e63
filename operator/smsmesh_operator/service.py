"""The running operator: one worker per namespace, a status ticker and the heartbeat.

kopf delivers watch events; each one only marks its namespace dirty. The namespace's
worker then waits a moment (a burst of events, such as the initial listing, becomes one
run), reconciles, and on failure retries with back-off. Every `status_interval` seconds
the ticker reads the store once and marks every namespace dirty, which refreshes the
connections' bound/queueDepth/lastError and their Bound/Ready conditions.

Workers are started by the first watch event, never before: kopf calls event handlers
only once all its indexes hold their initial listing, so a worker never mistakes a
not-yet-listed SmppConnection for a deleted one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import kopf

from smsmesh_operator.config import OperatorConfig
from smsmesh_operator.heartbeat import Heartbeat
from smsmesh_operator.kubeapi import KubeApi
from smsmesh_operator.reconciler import Context, Indexes, NamespaceReconciler
from smsmesh_operator.status import Transition
from smsmesh_operator.storeview import StoreView

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.2
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


def post_event(body: Mapping[str, Any], transition: Transition) -> None:
    """A Kubernetes Event on `body`, through kopf's background poster."""
    post = kopf.warn if transition.warning else kopf.info
    post(
        kopf.Body(cast(kopf.RawBody, dict(body))),
        reason=transition.reason,
        message=transition.message,
    )


@dataclass
class IndexViews:
    """The kopf index views, under the names the reconciler reads."""

    connections: Mapping[str, Any]
    routes: Mapping[str, Any]
    applications: Mapping[str, Any]
    secrets: Mapping[str, Any]
    managed: Mapping[str, Any]


class Worker:
    """Runs one namespace's reconciler whenever it is poked, one run at a time."""

    def __init__(self, reconciler: NamespaceReconciler) -> None:
        self.reconciler = reconciler
        self._dirty = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"reconcile {reconciler.namespace}")

    def poke(self) -> None:
        self._dirty.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._dirty.wait()
            await asyncio.sleep(DEBOUNCE_SECONDS)  # coalesce a burst of events into one run
            self._dirty.clear()
            try:
                await self.reconciler.run()
                failures = 0
                continue
            except Exception as exc:  # a failed run is retried, it never ends the worker
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning(
                    "%s: reconcile failed (%s); again in %g s",
                    self.reconciler.namespace,
                    exc,
                    delay,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout=delay)
            self._dirty.set()

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class SmsmeshOperator:
    def __init__(
        self,
        config: OperatorConfig,
        login: Callable[[], kopf.ConnectionInfo],
        *,
        post: Callable[[Mapping[str, Any], Transition], None] = post_event,
    ) -> None:
        self.config = config
        self.login = login
        self.api = KubeApi(login, timeout=config.request_timeout)
        self.store = StoreView(config.store_url)
        self.heartbeat = Heartbeat(self.api, config.home_namespace, config.heartbeat_interval)
        self._post = post
        self.ctx: Context | None = None
        self.workers: dict[str, Worker] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start_background(self) -> None:
        """The heartbeat and the status ticker (called from kopf's startup handler)."""
        self._tasks.append(asyncio.create_task(self.heartbeat.run(), name="heartbeat"))
        self._tasks.append(asyncio.create_task(self._tick(), name="status ticker"))

    def activate(self, indexes: Indexes) -> None:
        if self.ctx is None:
            self.ctx = Context(
                config=self.config,
                api=self.api,
                indexes=indexes,
                post_event=self._post,
                store=lambda: self.store.snapshot,
            )
            log.info("indexes are complete; reconciling")
            for namespace in self.config.namespaces:  # served ones get a snapshot, even empty
                self.changed(namespace)

    def changed(self, namespace: str | None) -> None:
        """A watched object of `namespace` changed: reconcile that namespace soon."""
        if self.ctx is None or not namespace:
            return
        worker = self.workers.get(namespace)
        if worker is None:
            # Created in the caller's (kopf's) context, so kopf.info() works in the worker.
            worker = Worker(NamespaceReconciler(namespace, self.ctx))
            self.workers[namespace] = worker
        worker.poke()

    async def _tick(self) -> None:
        while True:
            await self.store.refresh()
            for worker in self.workers.values():
                worker.poke()
            await asyncio.sleep(self.config.status_interval)

    async def stop(self) -> None:
        """Stop every task and close connections; safe to call more than once."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        workers, self.workers = list(self.workers.values()), {}
        for worker in workers:
            await worker.stop()
        await self.store.close()
        await self.api.close()

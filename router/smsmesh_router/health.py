"""The router's view of each connection's health, read from the store and cached briefly.

Connectors publish their bind state to the store; the router never talks to them
directly. A target is available when its connector reported a live bind recently and
its queue is not backed up; otherwise routing demotes it behind healthier targets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

from smsmesh.model import ConnectionState
from smsmesh.store import Store
from smsmesh_router.routing import TargetHealth


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    refresh_seconds: float = 1.0
    stale_after_seconds: float = 15.0  # a connector that stopped reporting is presumed down
    max_backlog_seconds: float = 60.0  # queued / tps above this means "backed up"
    max_backlog_unlimited: int = 50_000  # for connections without a TPS limit


class HealthView:
    def __init__(self, store: Store, policy: HealthPolicy | None = None) -> None:
        self._store = store
        self._policy = policy or HealthPolicy()
        self._health: dict[str, TargetHealth] = {}
        self._states: dict[str, ConnectionState] = {}
        self._depths: dict[str, int] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def states(self) -> Mapping[str, ConnectionState]:
        return self._states

    @property
    def depths(self) -> Mapping[str, int]:
        return self._depths

    async def current(self) -> Mapping[str, TargetHealth]:
        """Health per connection; refreshed at most once per `refresh_seconds`."""
        if time.monotonic() - self._fetched_at < self._policy.refresh_seconds:
            return self._health
        async with self._lock:
            if time.monotonic() - self._fetched_at >= self._policy.refresh_seconds:
                await self.refresh()
        return self._health

    async def refresh(self) -> None:
        self._states = await self._store.connection_states()
        self._depths = await self._store.queue_depths()
        self._health = {
            name: self._judge(state, self._depths.get(name, 0), time.time())
            for name, state in self._states.items()
        }
        self._fetched_at = time.monotonic()

    def _judge(self, state: ConnectionState, depth: int, now: float) -> TargetHealth:
        policy = self._policy
        if now - state.updated_at > policy.stale_after_seconds:
            return TargetHealth(available=False, reason="connector not reporting")
        if not state.bound:
            reason = "not bound" + (f": {state.last_error}" if state.last_error else "")
            return TargetHealth(available=False, reason=reason)
        if state.tps_limit:
            backlog = depth / state.tps_limit
            if backlog > policy.max_backlog_seconds:
                return TargetHealth(
                    available=False, reason=f"backed up: {backlog:.0f} s of queued messages"
                )
        elif depth > policy.max_backlog_unlimited:
            return TargetHealth(available=False, reason=f"backed up: {depth} queued")
        return TargetHealth(available=True, reason="bound")

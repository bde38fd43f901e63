"""The operator's read-only view of the store: what each connector last published.

Connectors publish their bind state to the store (the routers read it there for
failover); the operator reads the same table, plus queue depths and how many messages
each connection submitted in the last minute (achievedTps), once per status interval for
all namespaces at once. It never talks to a connector pod. When the store cannot be
opened or read, the snapshot says so and the conditions show it; the next tick tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time

from smsmesh.store import Store, open_store
from smsmesh_operator.status import StoreSnapshot

log = logging.getLogger(__name__)


class StoreView:
    def __init__(
        self, url: str | None, *, timeout: float = 10.0, rate_window: float = 60.0
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._rate_window = rate_window
        self._store: Store | None = None
        self.snapshot = StoreSnapshot(configured=url is not None)

    async def refresh(self) -> StoreSnapshot:
        """Read states and depths now; the result is also kept in `snapshot`."""
        if self._url is None:
            return self.snapshot
        try:
            async with asyncio.timeout(self._timeout):
                if self._store is None:
                    store = open_store(self._url)
                    await store.open()
                    self._store = store
                now = time.time()
                states = await self._store.connection_states()
                depths = await self._store.queue_depths()
                submitted = await self._store.connection_throughput(now - self._rate_window, now)
        except Exception as exc:  # any backend failure is a condition, never a crash
            message = str(exc) or type(exc).__name__
            if self.snapshot.error != message:
                log.warning("cannot read the store: %s", message)
            await self._drop()
            self.snapshot = StoreSnapshot(configured=True, error=message, taken_at=time.time())
            return self.snapshot
        self.snapshot = StoreSnapshot(
            configured=True,
            states=states,
            depths=depths,
            submitted=submitted,
            rate_window=self._rate_window,
            taken_at=now,
        )
        return self.snapshot

    async def _drop(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                await store.close()
            except Exception as exc:
                log.debug("closing the store failed: %s", exc)

    async def close(self) -> None:
        await self._drop()

"""Expiry sweeper: ends messages whose validity passed while nobody could send them.

Connectors skip expired messages when they claim work, but a message queued on a
connection whose connector is gone would wait forever; the sweeper guarantees that
every accepted message reaches a final, reported state. Several router replicas may
sweep at once: `Store.expire` is an idempotent, transactional update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from smsmesh.store import Store
from smsmesh.telemetry import metrics

log = logging.getLogger(__name__)


RETENTION_INTERVAL = 600.0  # seconds between retention passes


class ExpirySweeper:
    """Expires what outlived its validity; with `retention`, also purges old history."""

    def __init__(
        self,
        store: Store,
        interval: float = 5.0,
        receipt_grace: float = 3600.0,
        retention: float | None = None,
    ) -> None:
        self._store = store
        self._interval = interval
        self._receipt_grace = receipt_grace
        self._retention = retention
        self._last_retention = 0.0
        self._task: asyncio.Task[None] | None = None
        self.expired_total = 0
        self.purged_total = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="expiry-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sweep(self) -> int:
        expired = await self._store.expire(time.time(), self._receipt_grace)
        if expired:
            log.info("expired %d messages past their validity", expired)
        self.expired_total += expired
        metrics.MESSAGES_EXPIRED.inc(expired)
        return expired

    async def retain(self, now: float | None = None) -> int:
        """Purge messages that ended more than `retention` seconds ago (0 without one)."""
        if self._retention is None:
            return 0
        now = time.time() if now is None else now
        purged = await self._store.purge_finished(now - self._retention)
        if purged:
            log.info("retention: removed %d finished messages and records", purged)
        self.purged_total += purged
        return purged

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
                if time.monotonic() - self._last_retention >= RETENTION_INTERVAL:
                    self._last_retention = time.monotonic()
                    await self.retain()
            except Exception:
                log.exception("expiry sweep failed; will retry")
            await asyncio.sleep(self._interval)

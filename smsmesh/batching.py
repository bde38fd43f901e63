"""Group commit: many concurrent callers, one store transaction.

Callers `await batcher.submit(item)` (or `put` it with a callback); a single flusher
task hands everything that queued up while the previous flush ran to one call of the
batch function, then gives each caller its own result. Under light load a batch is one
item and the latency is one transaction; under heavy load batches grow by themselves,
which is what lets a durable gateway keep up without a timer-based linger.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

# A `Batcher.put` caller's completion: (result, None), or (None, why the batch failed).
Done = Callable[[R | None, BaseException | None], None]


class Batcher(Generic[T, R]):
    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 500,
        name: str = "batcher",
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._name = name
        self._pending: list[tuple[T, Done[R]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def submit(self, item: T) -> R:
        """Queue `item` for the next flush and wait for its result (or exception)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.put(item, functools.partial(_resolve, future))
        return await future

    def put(self, item: T, done: Done[R]) -> None:
        """Queue `item` for the next flush; the flusher calls `done(result, None)`, or
        `done(None, error)` if the batch failed. For callers that answer from a
        callback (a receipt's deliver_sm_resp): no Future and no extra loop turn each."""
        if self._closing:
            raise RuntimeError(f"{self._name} is closed")
        self.start()
        self._pending.append((item, done))
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def close(self) -> None:
        """Flush what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._flush_batch(batch)
            if self._closing:
                return

    async def _flush_batch(self, batch: list[tuple[T, Done[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except Exception as exc:  # the whole batch failed: every caller learns why
            self._finish(batch, [None] * len(batch), exc)
            return
        if len(results) != len(batch):
            error = RuntimeError(f"{self._name}: {len(results)} results for {len(batch)} items")
            self._finish(batch, [None] * len(batch), error)
            return
        self._finish(batch, results, None)

    def _finish(
        self,
        batch: list[tuple[T, Done[R]]],
        results: Sequence[R | None],
        error: BaseException | None,
    ) -> None:
        finish(self._name, batch, results, error)


def finish(
    name: str,
    batch: Sequence[tuple[object, Done[R]]],
    results: Sequence[R | None],
    error: BaseException | None,
) -> None:
    """Call each item's completion with its result (or everyone's with `error`)."""
    for (_, done), result in zip(batch, results, strict=True):
        try:
            done(result, error)
        except Exception:  # one caller's bug must not cost the others their answer
            log.exception("%s: a completion callback failed", name)


def _resolve(future: asyncio.Future[R], result: R | None, error: BaseException | None) -> None:
    """A `Batcher.put` callback that resolves `submit`'s Future."""
    if future.done():  # the caller gave up waiting
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]  # no error: a result


class WriteBehind(Generic[T]):
    """Fire-and-forget batching for facts that must reach the store eventually.

    `put` never blocks the caller (a submit_sm_resp handler, say); a flusher writes
    everything queued in one call and, if the store is unavailable, keeps the items and
    retries with capped backoff instead of dropping them. `drain()` waits until all
    queued items are written (used on graceful shutdown).
    """

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[object]],
        *,
        max_batch: int = 1000,
        name: str = "write-behind",
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._name = name
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._pending: list[T] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.failures = 0

    def put(self, item: T) -> None:
        self._pending.append(item)
        self._idle.clear()
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def drain(self) -> None:
        await self._idle.wait()

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        delay = self._retry_initial
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                try:
                    await self._flush(batch)
                except Exception:
                    self.failures += 1
                    logging.getLogger(__name__).exception(
                        "%s: writing %d items failed; retrying in %.2f s",
                        self._name,
                        len(batch),
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(self._retry_max, delay * 2)
                    continue
                delay = self._retry_initial
                del self._pending[: len(batch)]
            self._idle.set()
            if self._closing:
                return

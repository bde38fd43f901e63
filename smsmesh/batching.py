"""Group commit: many concurrent callers, one store transaction.

Callers `await batcher.submit(item)` (or `put` it with a callback); a single flusher
task hands everything that queued up while the previous flush ran to one call of the
batch function, then gives each caller its own result. Under light load a batch is one
item and the latency is one transaction; under heavy load batches grow by themselves,
which is what lets a durable gateway keep up without a timer-based linger.
"""

from __future__ import annotations

import abc
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
            fail(self._name, batch, exc)
            return
        finish(self._name, batch, results)


def finish(name: str, batch: Sequence[tuple[object, Done[R]]], results: Sequence[R]) -> None:
    """Give each item's completion its result, in order; if the flush returned a result
    count that does not match, that is an error for all of them, not a silent shift."""
    if len(results) != len(batch):
        fail(name, batch, RuntimeError(f"{name}: {len(results)} results for {len(batch)} items"))
        return
    for (_, done), result in zip(batch, results, strict=True):
        _complete(name, done, result, None)


def fail(name: str, batch: Sequence[tuple[object, Done[R]]], error: BaseException) -> None:
    """Tell each item's completion why its batch failed."""
    for _, done in batch:
        _complete(name, done, None, error)


def _complete(name: str, done: Done[R], result: R | None, error: BaseException | None) -> None:
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


class Flusher(abc.ABC):
    """A task that writes what is queued, one batch after another, and keeps it queued
    while the store fails, trying again after capped exponential pauses.

    Subclasses queue items, call `_wake()`, and say what is left (`_has_work`) and how
    to write the next batch (`_write_next`, which raises to have it tried again).
    `drain()` waits until nothing is queued (graceful shutdown); `close()` writes what
    is queued, then stops the task.
    """

    def __init__(self, name: str, retry_initial: float, retry_max: float) -> None:
        self._name = name
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.failures = 0

    async def drain(self) -> None:
        await self._idle.wait()

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    def _wake(self) -> None:
        self._idle.clear()
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    @abc.abstractmethod
    def _has_work(self) -> bool:
        """Whether anything is queued."""

    @abc.abstractmethod
    async def _write_next(self) -> None:
        """Write the next batch; raise to have what is still queued tried again."""

    @abc.abstractmethod
    def _waiting(self) -> str:
        """What is queued, for the log line of a failed write."""

    async def _run(self) -> None:
        delay = self._retry_initial
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._has_work():
                try:
                    await self._write_next()
                except Exception:
                    self.failures += 1
                    log.exception(
                        "%s: writing failed (%s waiting); retrying in %.2f s",
                        self._name,
                        self._waiting(),
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(self._retry_max, delay * 2)
                    continue
                delay = self._retry_initial
            self._idle.set()
            if self._closing:
                return


class WriteBehind(Flusher, Generic[T]):
    """Fire-and-forget batching for facts that must reach the store eventually.

    `put` never blocks the caller (a submit_sm_resp handler, say); the flusher writes
    everything queued in one call (up to `max_batch`) and, if the store is unavailable,
    keeps the items and tries again instead of dropping them.
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
        super().__init__(name, retry_initial, retry_max)
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[T] = []

    def put(self, item: T) -> None:
        self._pending.append(item)
        self._wake()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _has_work(self) -> bool:
        return bool(self._pending)

    def _waiting(self) -> str:
        return f"{len(self._pending)} items"

    async def _write_next(self) -> None:
        batch = self._pending[: self._max_batch]
        await self._flush(batch)
        del self._pending[: len(batch)]

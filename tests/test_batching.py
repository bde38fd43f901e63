"""Group commit and write-behind: batching, ordering, failure propagation, retry."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from smsmesh.batching import Batcher, WriteBehind


async def test_concurrent_submits_share_one_flush_and_get_their_own_results() -> None:
    calls: list[list[int]] = []
    gate = asyncio.Event()
    flushing = asyncio.Event()

    async def flush(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        flushing.set()
        await gate.wait()
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(flush)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.wait_for(flushing.wait(), 5)  # the flusher took item 0 and waits on the gate
    rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 50)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert results == [i * 10 for i in range(50)]
    assert calls == [[0], list(range(1, 50))]  # everything that queued meanwhile: one batch
    await batcher.close()


async def test_max_batch_splits_large_queues() -> None:
    sizes: list[int] = []

    async def flush(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        return list(items)

    batcher: Batcher[int, int] = Batcher(flush, max_batch=10)
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(35))), 5)
    assert sum(sizes) == 35
    assert max(sizes) <= 10
    await batcher.close()


async def test_a_failed_flush_fails_every_caller_of_that_batch() -> None:
    async def flush(items: Sequence[int]) -> list[int]:
        raise OSError("disk full")

    batcher: Batcher[int, int] = Batcher(flush)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(i) for i in range(5)), return_exceptions=True), 5
    )
    assert all(isinstance(r, OSError) for r in results)
    await batcher.close()


async def test_wrong_result_count_is_an_error_not_a_silent_mismatch() -> None:
    async def flush(items: Sequence[int]) -> list[int]:
        return [1]

    batcher: Batcher[int, int] = Batcher(flush)
    results = await asyncio.wait_for(
        asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True), 5
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    await batcher.close()


async def test_closed_batcher_refuses_work() -> None:
    async def flush(items: Sequence[int]) -> list[int]:
        return list(items)

    batcher: Batcher[int, int] = Batcher(flush)
    await batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.submit(1)


async def test_write_behind_retries_until_the_store_comes_back() -> None:
    written: list[int] = []
    failures = 3

    async def flush(items: Sequence[int]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("store down")
        written.extend(items)

    queue: WriteBehind[int] = WriteBehind(flush, retry_initial=0.001, retry_max=0.01)
    for i in range(100):
        queue.put(i)
    await asyncio.wait_for(queue.drain(), 5)
    assert written == list(range(100))
    assert queue.failures == 3
    await queue.close()


async def test_put_callbacks_get_results_errors_and_survive_a_failing_neighbour() -> None:
    """`put` answers through callbacks, in order, from the flusher; a callback that
    raises is logged and the others of its batch are still called."""
    fail_batch = False

    async def flush(items: Sequence[int]) -> list[int]:
        if fail_batch:
            raise OSError("disk full")
        return [i * 2 for i in items]

    batcher: Batcher[int, int] = Batcher(flush)
    outcomes: list[tuple[int | None, str | None]] = []
    finished = asyncio.Event()

    def record(result: int | None, error: BaseException | None) -> None:
        outcomes.append((result, None if error is None else str(error)))
        if len(outcomes) in (3, 5):
            finished.set()

    def broken(result: int | None, error: BaseException | None) -> None:
        raise ValueError("a caller's bug")

    batcher.put(1, record)
    batcher.put(2, broken)
    batcher.put(3, record)
    batcher.put(4, record)
    await asyncio.wait_for(finished.wait(), 5)
    assert outcomes == [(2, None), (6, None), (8, None)]
    finished.clear()
    fail_batch = True
    batcher.put(5, record)
    batcher.put(6, record)
    await asyncio.wait_for(finished.wait(), 5)
    assert outcomes[3:] == [(None, "disk full"), (None, "disk full")]
    await batcher.close()

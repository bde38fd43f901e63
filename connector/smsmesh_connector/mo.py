"""Reassembling concatenated mobile-originated messages without ever losing a part.

The rule that makes it safe: a part is acknowledged only after it is durable, either
inside the whole reassembled message or on its own. So each part's deliver_sm handler
waits (unanswered) up to `wait` seconds for its siblings:

* all parts arrived in time (SMSCs with a window > 1 send them back to back): the text
  is joined (payload bytes first, then decoded once, so a character split across parts
  survives) and stored as ONE message; every part is then answered with the outcome;
* the wait ran out (a window-1 SMSC sends part 2 only after part 1 is answered, or a
  part got lost): the parts held so far are stored each on its own, and later parts of
  the same message skip the wait and are stored on their own straight away.

If the process dies meanwhile, nothing was acknowledged, so the SMSC delivers the parts
again. The price is at most `wait` seconds of latency per long MO, and at-least-once
semantics (a part the SMSC re-sends after a lost answer may be stored twice).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from smsmesh.smpp.text import ConcatInfo, decode

# (source, destination, reference, reference bits, total parts)
Key = tuple[str, str, int, int, int]
# store(source, destination, text) -> command_status to answer every part with;
# it never raises (a failure to store is a status, e.g. ESME_RX_T_APPN).
StoreText = Callable[[str, str, str], Awaitable[int]]

RELEASED_MEMORY_SECONDS = 600.0


@dataclass(eq=False)
class _Group:
    data_coding: int
    parts: dict[int, bytes] = field(default_factory=dict)
    waiters: dict[int, list[asyncio.Future[int]]] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class MoAssembler:
    def __init__(self, store: StoreText, wait: float) -> None:
        self._store = store
        self._wait = wait
        self._groups: dict[Key, _Group] = {}
        self._released: dict[Key, float] = {}  # groups that timed out: later parts go alone
        self._tasks: set[asyncio.Task[None]] = set()
        self.reassembled = 0  # long messages stored whole
        self.parts_alone = 0  # parts stored on their own after a timeout

    @property
    def held(self) -> int:
        """Parts waiting for their siblings (unanswered deliver_sm)."""
        return sum(len(w) for g in self._groups.values() for w in g.waiters.values())

    async def add(
        self, source: str, destination: str, info: ConcatInfo, payload: bytes, data_coding: int
    ) -> int:
        """Handle one part; returns the status to answer its deliver_sm with."""
        key: Key = (source, destination, info.reference, info.bits, info.total)
        if self._wait <= 0 or (key in self._released and self._recently_released(key)):
            self.parts_alone += 1
            return await self._store(source, destination, decode(payload, data_coding))
        group = self._groups.get(key)
        if group is None:
            group = _Group(data_coding)
            group.timer = asyncio.get_running_loop().call_later(self._wait, self._expire, key)
            self._groups[key] = group
        group.parts[info.part] = payload
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        group.waiters.setdefault(info.part, []).append(future)
        if len(group.parts) == info.total:
            del self._groups[key]
            if group.timer is not None:
                group.timer.cancel()
            joined = b"".join(group.parts[p] for p in sorted(group.parts))
            try:
                status = await self._store(source, destination, decode(joined, group.data_coding))
            except asyncio.CancelledError:
                _cancel(group)
                raise
            self.reassembled += 1
            for waiters in group.waiters.values():
                _resolve(waiters, status)
        return await future

    def discard(self) -> None:
        """The session is gone: held parts can no longer be answered, and the SMSC will
        deliver them again, so they are dropped without being stored."""
        groups, self._groups = self._groups, {}
        for group in groups.values():
            if group.timer is not None:
                group.timer.cancel()
            _cancel(group)

    async def close(self) -> None:
        """Wait for parts being stored after a timeout."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _recently_released(self, key: Key) -> bool:
        at = self._released[key]
        if time.monotonic() - at < RELEASED_MEMORY_SECONDS:
            return True
        del self._released[key]
        return False

    def _expire(self, key: Key) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        now = time.monotonic()
        if len(self._released) > 10_000:
            self._released = {
                k: t for k, t in self._released.items() if now - t < RELEASED_MEMORY_SECONDS
            }
        self._released[key] = now
        task = asyncio.get_running_loop().create_task(self._store_alone(key, group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store_alone(self, key: Key, group: _Group) -> None:
        source, destination = key[0], key[1]

        async def one(part: int) -> None:
            text = decode(group.parts[part], group.data_coding)
            status = await self._store(source, destination, text)
            self.parts_alone += 1
            _resolve(group.waiters.get(part, []), status)

        await asyncio.gather(*(one(p) for p in sorted(group.parts)))


def _resolve(waiters: list[asyncio.Future[int]], status: int) -> None:
    for future in waiters:
        if not future.done():
            future.set_result(status)


def _cancel(group: _Group) -> None:
    # A cancelled handler sends no answer: the SMSC will deliver the part again.
    for waiters in group.waiters.values():
        for future in waiters:
            future.cancel()

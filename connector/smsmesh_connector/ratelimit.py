"""Exact, smooth throughput limiting for one SMPP bind.

A generic cell rate algorithm (GCRA): each send is given a slot on a schedule spaced
1/rate apart, so sends are paced evenly instead of a second's quota leaving in one
burst (carriers punish bursts). A sender that wakes a little late may use up to
`tolerance` seconds of missed slots at once, so scheduling jitter does not erode the
achieved rate, while no window of time ever carries more than rate * (window +
tolerance) + 1 sends.

The limiter is adaptive: `throttled()` (the SMSC answered ESME_RTHROTTLED) halves
the rate and pauses briefly; every `recovery_interval` without throttling the rate
grows back by `recovery_factor` up to the configured limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    def __init__(
        self,
        rate: float | None,
        *,
        tolerance: float = 0.01,
        min_rate: float = 1.0,
        throttle_pause: float = 1.0,
        recovery_interval: float = 5.0,
        recovery_factor: float = 1.25,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive or None (unlimited)")
        self.limit = rate  # configured ceiling; None = unlimited
        self._rate = rate  # current effective rate (lowered while throttled)
        self._tolerance = tolerance
        self._min_rate = min_rate
        self._throttle_pause = throttle_pause
        self._recovery_interval = recovery_interval
        self._recovery_factor = recovery_factor
        self._clock = clock
        self._sleep = sleep
        self._tat = clock()  # theoretical arrival time of the next send
        self._last_throttle: float | None = None
        self._last_recovery = 0.0
        self._sent_window: list[float] = []
        self.throttle_events = 0

    @property
    def rate(self) -> float | None:
        """The rate currently enforced (None: unlimited)."""
        return self._rate

    def pending_delay(self) -> float:
        """How long a send asked for now would wait (a throttle pause included),
        without taking a slot."""
        return max(0.0, self._tat - self._clock())

    def reserve(self) -> float:
        """Take the next slot; return how long the caller must wait before sending."""
        now = self._clock()
        self._maybe_recover(now)
        if self._rate is None:
            if self._tat > now:  # a throttle pause is in force
                wait = self._tat - now
                return wait
            return 0.0
        interval = 1.0 / self._rate
        slot = max(self._tat, now - self._tolerance)
        self._tat = slot + interval
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        """Wait for this caller's slot. Callers are served in the order they call."""
        wait = self.reserve()
        if wait > 0:
            await self._sleep(wait)

    def throttled(self, achieved_rate: float | None = None) -> None:
        """The SMSC said we are too fast: halve the rate and pause briefly."""
        now = self._clock()
        self.throttle_events += 1
        self._last_throttle = now
        base = self._rate if self._rate is not None else (achieved_rate or 100.0)
        self._rate = max(self._min_rate, base / 2)
        self._tat = max(self._tat, now + self._throttle_pause)

    def _maybe_recover(self, now: float) -> None:
        if self._last_throttle is None or self._rate == self.limit:
            return
        since = now - max(self._last_throttle, self._last_recovery)
        if since < self._recovery_interval:
            return
        self._last_recovery = now
        assert self._rate is not None
        grown = self._rate * self._recovery_factor
        if self.limit is None:
            # Unlimited bind: after enough quiet growth, lift the limit altogether.
            self._rate = None if grown > 10_000 else grown
        else:
            self._rate = min(self.limit, grown)
        if self._rate == self.limit:
            self._last_throttle = None

"""The TPS limiter on a controlled clock: exact rate, smooth pacing, adaptive back-off."""

from __future__ import annotations

import itertools

import pytest

from smsmesh_connector.ratelimit import RateLimiter


class ManualClock:
    """A clock that advances only when the limiter sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def send_times(limiter: RateLimiter, clock: ManualClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        await limiter.acquire()
        times.append(clock.now)
    return times


@pytest.mark.parametrize("rate", [1.0, 7.0, 50.0, 333.0, 1000.0])
async def test_rate_is_exact(rate: float) -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    times = await send_times(limiter, clock, int(rate * 10) + 1)
    elapsed = times[-1] - times[0]
    assert elapsed == pytest.approx(10.0, rel=1e-9)


async def test_sends_are_evenly_spaced_not_bursty() -> None:
    clock = ManualClock()
    limiter = RateLimiter(100.0, clock=clock, sleep=clock.sleep)
    times = await send_times(limiter, clock, 1000)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
    assert gaps == {0.01}


async def test_late_wakeups_catch_up_within_tolerance_only() -> None:
    clock = ManualClock()
    limiter = RateLimiter(100.0, tolerance=0.01, clock=clock, sleep=clock.sleep)

    async def late_sleep(seconds: float) -> None:
        clock.now += seconds + 0.003  # every wake-up 3 ms late

    limiter._sleep = late_sleep
    times = await send_times(limiter, clock, 1001)
    # Lateness is absorbed by the tolerance, so the rate does not erode...
    assert times[-1] - times[0] == pytest.approx(10.0, rel=0.01)
    # ...and no 100 ms slice carries more than a tenth of the rate plus the tolerance.
    for start in times:
        in_slice = sum(1 for t in times if start <= t < start + 0.1)
        assert in_slice <= 10 + 1 + 1


async def test_idle_time_is_not_banked_as_a_burst() -> None:
    clock = ManualClock()
    limiter = RateLimiter(10.0, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    clock.now += 60.0  # a minute without traffic
    times = await send_times(limiter, clock, 11)
    assert times[-1] - times[0] == pytest.approx(1.0, abs=0.011)


async def test_unlimited_never_waits() -> None:
    clock = ManualClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    await send_times(limiter, clock, 10_000)
    assert clock.now == 1000.0


async def test_throttling_halves_the_rate_then_recovers() -> None:
    clock = ManualClock()
    limiter = RateLimiter(
        100.0, clock=clock, sleep=clock.sleep, throttle_pause=1.0, recovery_interval=5.0
    )
    await limiter.acquire()
    limiter.throttled()
    assert limiter.rate == 50.0
    before = clock.now
    await limiter.acquire()
    assert clock.now - before >= 1.0  # paused
    clock.now += 5.0
    await limiter.acquire()
    assert limiter.rate == pytest.approx(62.5)
    for _ in range(10):
        clock.now += 5.0
        await limiter.acquire()
    assert limiter.rate == 100.0
    assert limiter.throttle_events == 1


async def test_throttling_an_unlimited_bind_sets_a_rate_from_what_was_achieved() -> None:
    clock = ManualClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    limiter.throttled(achieved_rate=400.0)
    assert limiter.rate == 200.0


def test_rejects_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0)

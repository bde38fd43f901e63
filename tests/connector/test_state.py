"""The connector's rate meter and state snapshot, on a controlled clock."""

from __future__ import annotations

import pytest

from smsmesh_connector.state import ConnectorState, RateMeter, short_error


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_meter_averages_whole_seconds() -> None:
    clock = Clock()
    meter = RateMeter(span=5, clock=clock)
    assert meter.rate() == 0.0
    for _ in range(3):  # three seconds of 100 events each
        meter.add(100)
        clock.now += 1.0
    assert meter.rate() == pytest.approx(100.0)
    meter.add(1000)  # the current, incomplete second does not count yet
    assert meter.rate() == pytest.approx(100.0)
    clock.now += 10.0  # idle: old buckets fall out of the span
    assert meter.rate() == 0.0


def test_rate_meter_span_must_be_positive() -> None:
    with pytest.raises(ValueError, match="span"):
        RateMeter(span=0)


def test_snapshot_reads_live_values_and_hides_past_throttling() -> None:
    state = ConnectorState("c1", window_size=10)
    state.bound = True
    state.window_in_use = lambda: 7
    state.tps_limit = lambda: 40.0
    state.throttled_until = 2000.0
    snap = state.snapshot(now=1999.0)
    assert (snap.bound, snap.window_in_use, snap.window_size) == (True, 7, 10)
    assert (snap.tps_limit, snap.throttled_until) == (40.0, 2000.0)
    assert state.snapshot(now=2001.0).throttled_until is None
    state.bound = False
    assert state.snapshot().window_in_use == 0


def test_errors_are_one_short_line() -> None:
    text = short_error("bind\nrefused " + "x" * 500)
    assert "\n" not in text
    assert len(text) <= 200
    assert text.startswith("bind refused")

"""The process plumbing every smsmesh service runs in."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

from smsmesh import runtime


def test_a_service_runs_with_startup_objects_frozen_and_a_larger_young_generation() -> None:
    saved = gc.get_threshold()
    seen: dict[str, int] = {}

    async def main(stop: asyncio.Event) -> int:
        seen["threshold"] = gc.get_threshold()[0]
        seen["frozen"] = gc.get_freeze_count()
        os.kill(os.getpid(), signal.SIGTERM)  # the service's stop event is what ends it
        await asyncio.wait_for(stop.wait(), timeout=5)
        return 3

    try:
        assert runtime.run(main) == 3
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
    assert seen["threshold"] == runtime.GC_YOUNG_THRESHOLD
    assert seen["frozen"] > 10_000  # the imported modules' objects

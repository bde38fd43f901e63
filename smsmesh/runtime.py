"""Process plumbing shared by every smsmesh process: event loop, signals, logging."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from smsmesh import logmask


def setup_logging(level: str | None = None) -> None:
    level_name = (level or os.environ.get("SMSMESH_LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(
        level=getattr(logging, level_name, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Phone numbers and message texts stay out of logs unless SMSMESH_LOG_UNMASKED=1.
    logmask.install()


def run(main: Callable[[asyncio.Event], Coroutine[Any, Any, int | None]]) -> int:
    """Run `main(stop)` on uvloop when available; SIGTERM/SIGINT set `stop`.

    `main` is expected to wind down gracefully once `stop` is set (a Kubernetes pod gets
    SIGTERM and a grace period); a second signal exits at once.
    """

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                os._exit(130)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        return (await main(stop)) or 0

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(runner())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        return r.run(runner())

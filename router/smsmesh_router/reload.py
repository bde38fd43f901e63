"""Live configuration: routes, applications and keys change without a restart.

In local mode the source is a folder of resource YAML, checked for changes every
second; on Kubernetes the same `ConfigReloader` is fed by a watch on the custom
resources. A snapshot that fails to build is logged and the previous one stays live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from smsmesh.resources import ResourceError, load_folder
from smsmesh_router.config import RouterConfig, build_config

log = logging.getLogger(__name__)


def folder_fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    entries = []
    for path in sorted(folder.iterdir()):
        if path.suffix in (".yaml", ".yml") and path.is_file():
            stat = path.stat()
            entries.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


class FolderReloader:
    """Rebuilds the router's config when a file in `folder` changes."""

    def __init__(
        self,
        folder: Path,
        apply: Callable[[RouterConfig], None],
        interval: float = 1.0,
    ) -> None:
        self._folder = folder
        self._apply = apply
        self._interval = interval
        self._fingerprint = folder_fingerprint(folder)
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        self.failures = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="config-reloader")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def check(self) -> bool:
        """Reload if the folder changed; True when a new snapshot went live."""
        fingerprint = folder_fingerprint(self._folder)
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        try:
            config = build_config(load_folder(self._folder))
        except (ResourceError, OSError) as exc:
            self.failures += 1
            log.error("configuration change rejected, keeping the previous one: %s", exc)
            return False
        self._apply(config)
        self.reloads += 1
        log.info("configuration reloaded from %s", self._folder)
        for problem in config.problems:
            log.warning("configuration problem: %s", problem)
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.check()

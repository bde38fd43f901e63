"""Local mode: the whole gateway on one machine from a folder of resource YAML.

Each part runs as its own OS process, as it would run as its own pod: one SMSC
simulator per `SmscSimulator`, one connector per `SmppConnection`, and the router.
The supervisor restarts a process that dies (as a kubelet would) and on Ctrl-C
stops them all gracefully: router first (no new work), then connectors (they drain
their window and unbind), then simulators.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from smsmesh.resources import ResourceSet, load_folder

log = logging.getLogger("smsmesh.local")

READY_TIMEOUT = 30.0


@dataclass
class Child:
    """One supervised process and how to (re)start it."""

    name: str
    argv: list[str]
    ready_port: int | None = None  # the process is up once this loopback port accepts
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    env: dict[str, str] = field(default_factory=dict)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that was free a moment ago (tests and benchmarks use it too)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _smsmesh(*args: str) -> list[str]:
    return [sys.executable, "-m", "smsmesh", *args]


async def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on {host}:{port} after {timeout:.0f} s"
                ) from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


class LocalGateway:
    def __init__(
        self,
        folder: Path,
        *,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 8080,
        store_url: str | None = None,
    ) -> None:
        self.folder = folder.resolve()
        self.data_dir = data_dir.resolve()
        self.host = host
        self.port = port
        self.store_url = store_url or f"sqlite:///{self.data_dir / 'smsmesh.db'}"
        self.resources: ResourceSet = load_folder(self.folder)
        self.children: list[Child] = []
        self._stopping = False
        # /metrics needs a bearer token; locally one is made up and shown in the banner.
        self.metrics_token = os.environ.get("SMSMESH_METRICS_TOKEN") or secrets.token_urlsafe(16)
        self.metrics_ports: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def plan(self) -> tuple[list[Child], list[Child], Child]:
        common = ["--resources", str(self.folder)]
        simulators = [
            Child(
                name=f"simulator/{name}",
                argv=_smsmesh("simulate", *common, "--name", name),
                ready_port=sim.spec.port,
            )
            for name, sim in sorted(self.resources.simulators.items())
        ]
        connectors = []
        for name in sorted(self.resources.connections):
            # Each connector serves /metrics on a port of its own.
            self.metrics_ports[name] = port = free_port(self.host)
            connectors.append(
                Child(
                    name=f"connector/{name}",
                    argv=_smsmesh(
                        "connector",
                        *common,
                        "--connection",
                        name,
                        "--store",
                        self.store_url,
                        "--metrics-port",
                        str(port),
                    ),
                )
            )
        router = Child(
            name="router",
            argv=_smsmesh(
                "router",
                *common,
                "--store",
                self.store_url,
                "--host",
                self.host,
                "--port",
                str(self.port),
            ),
            ready_port=self.port,
        )
        return simulators, connectors, router

    async def _spawn(self, child: Child) -> None:
        env = {
            **os.environ,
            **child.env,
            "SMSMESH_PROCESS": child.name,
            "SMSMESH_METRICS_TOKEN": self.metrics_token,
        }
        child.process = await asyncio.create_subprocess_exec(
            *child.argv, env=env, start_new_session=True
        )
        child.started_at = time.monotonic()
        log.info("started %s (pid %d)", child.name, child.process.pid)
        if child.ready_port is not None:
            await wait_for_port(child.ready_port, READY_TIMEOUT, self.host)

    async def supervise(self, child: Child) -> None:
        """Restart `child` whenever it exits, with capped backoff, until stopping."""
        delay = 0.5
        while not self._stopping:
            assert child.process is not None
            code = await child.process.wait()
            if self._stopping:
                return
            log.error("%s exited with %s; restarting in %.1f s", child.name, code, delay)
            await asyncio.sleep(delay)
            if time.monotonic() - child.started_at > 60:
                delay = 0.5
            delay = min(delay * 2, 30.0)
            child.restarts += 1
            with contextlib.suppress(TimeoutError):
                await self._spawn(child)

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for problem in self.resources.validate_references():
            log.warning("configuration problem: %s", problem)
        simulators, connectors, router = self.plan()
        for group in (simulators, connectors, [router]):
            await asyncio.gather(*(self._spawn(child) for child in group))
            self.children.extend(group)

    async def stop(self, timeout: float = 20.0) -> None:
        self._stopping = True
        order = (
            [c for c in self.children if c.name == "router"],
            [c for c in self.children if c.name.startswith("connector/")],
            [c for c in self.children if c.name.startswith("simulator/")],
        )
        for group in order:
            await asyncio.gather(*(self._terminate(c, timeout) for c in group))

    async def _terminate(self, child: Child, timeout: float) -> None:
        process = child.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            log.error("%s did not stop within %.0f s; killing it", child.name, timeout)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def banner(self) -> str:
        lines = [
            "",
            f"smsmesh is up (local mode, store {self.store_url})",
            f"  router:      {self.url}",
        ]
        for name, sim in sorted(self.resources.simulators.items()):
            lines.append(f"  simulator:   {name} on {sim.spec.host}:{sim.spec.port}")
        for name in sorted(self.resources.connections):
            port = self.metrics_ports.get(name)
            lines.append(f"  connector:   {name} (metrics http://{self.host}:{port}/metrics)")
        lines.append(f"  console:     {self.url}/console")
        lines.append(f"  metrics:     {self.url}/metrics, token: {self.metrics_token}")
        key, app = self._first_api_key()
        if key:
            lines += [
                f"  application: {app}, API key from its Secret: {key}",
                "",
                "Send a message:",
                f"  curl -s {self.url}/v1/messages -H 'Authorization: Bearer {key}' \\",
                "       -H 'Content-Type: application/json' \\",
                '       -d \'{"to": "+31612345678", "from": "smsmesh", "text": "Hello"}\'',
                "Then read its status and timeline:",
                f"  curl -s {self.url}/v1/messages/<id> -H 'Authorization: Bearer {key}'",
            ]
        lines += ["", "Press Ctrl-C to stop.", ""]
        return "\n".join(lines)

    def _first_api_key(self) -> tuple[str | None, str | None]:
        """The local example's key, shown so the first curl works by copy and paste.

        Only local mode prints a key, and only one read from the folder the user gave.
        """
        for name, app in sorted(self.resources.applications.items()):
            for ref in app.spec.api_key_secret_refs:
                with contextlib.suppress(Exception):
                    return self.resources.secret_value(ref), name
        return None, None


async def run_local(
    folder: Path,
    stop: asyncio.Event,
    *,
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    store_url: str | None = None,
) -> int:
    gateway = LocalGateway(folder, data_dir=data_dir, host=host, port=port, store_url=store_url)
    try:
        await gateway.start()
    except BaseException:
        await gateway.stop()
        raise
    print(gateway.banner(), flush=True)
    supervisors = [asyncio.create_task(gateway.supervise(c)) for c in gateway.children]
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await gateway.stop()
        for task in supervisors:
            task.cancel()
        await asyncio.gather(*supervisors, return_exceptions=True)
    return 0

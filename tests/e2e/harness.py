"""Real processes on loopback: router and connector as `python -m smsmesh` subprocesses,
the SMSC simulator and a webhook receiver inside the test's event loop.

Nothing here is faked: HTTP is real HTTP, SMPP is real SMPP over TCP, the store is a
real SQLite file shared by the processes, exactly as in local mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from smsmesh.local import free_port
from smsmesh.simulator.server import Simulator

API_KEY = "e2e-key"


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve `app` on 127.0.0.1, on a port the kernel picks: (its runner, the port)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


@dataclass
class Hook:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class WebhookReceiver:
    """An application's webhook endpoint; tests await the calls they expect."""

    def __init__(self) -> None:
        self.calls: list[Hook] = []
        self.fail_next = 0  # answer 500 to this many calls first
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner, self.port = await serve_on_loopback(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        async with self._changed:
            if self.fail_next > 0:
                self.fail_next -= 1
                return web.Response(status=500)
            self.calls.append(Hook(request.path, dict(request.headers), body, time.time()))
            self._changed.notify_all()
        return web.Response(status=204)

    async def wait_for(
        self, predicate: Callable[[list[Hook]], bool], timeout: float = 20.0
    ) -> list[Hook]:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self.calls))
            return list(self.calls)

    def statuses(self) -> dict[str, str]:
        return {c.body["id"]: c.body["status"] for c in self.calls if c.path == "/status"}


def resources_yaml(
    sim_port: int,
    hook_url: str,
    *,
    tps: float | None = None,
    window: int = 10,
    long_messages: str = "udh8",
    bind_type: str = "transceiver",
    receipt_group: str | None = None,
    receiver: bool = False,
) -> str:
    """Resources for connection `sim` (and, with `receiver`, a receiver-only `sim-rx`
    bind of the same SMSC account in the same receipt group)."""
    throughput = f"{{tps: {tps}, window: {window}}}" if tps else f"{{window: {window}}}"
    group = f"\n  receiptGroup: {receipt_group}" if receipt_group else ""
    # MOs need a bind that receives: the transmitter leaves them to the receiver.
    inbound = "\n  inbound: {application: app}" if bind_type != "transmitter" else ""
    rx = (
        f"""
---
apiVersion: smsmesh.io/v1alpha1
kind: SmppConnection
metadata: {{name: sim-rx}}
spec:
  host: 127.0.0.1
  port: {sim_port}
  credentialsSecretRef: {{name: smsc-credentials}}
  bindType: receiver
  reconnect: {{initialDelaySeconds: 0.1, maxDelaySeconds: 1}}
  inbound: {{application: app}}{group}"""
        if receiver
        else ""
    )
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: smsc-credentials}}
stringData: {{systemId: e2e, password: secret1}}
---
apiVersion: v1
kind: Secret
metadata: {{name: app-key}}
stringData: {{apiKey: {API_KEY}}}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmppConnection
metadata: {{name: sim}}
spec:
  host: 127.0.0.1
  port: {sim_port}
  credentialsSecretRef: {{name: smsc-credentials}}
  throughput: {throughput}
  keepAlive: {{enquireLinkSeconds: 5, responseTimeoutSeconds: 5}}
  reconnect: {{initialDelaySeconds: 0.1, maxDelaySeconds: 1}}
  submit: {{longMessages: {long_messages}, retryDelaySeconds: 0.2}}
  bindType: {bind_type}{inbound}{group}{rx}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmsApplication
metadata: {{name: app}}
spec:
  apiKeySecretRefs: [{{name: app-key, key: apiKey}}]
  defaultSender: smsmesh
  callbackUrl: {hook_url}/status
  inbound: {{webhookUrl: {hook_url}/mo}}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmsRoute
metadata: {{name: default}}
spec:
  match: {{}}
  targets: [{{connection: sim}}]
"""


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    process: asyncio.subprocess.Process | None = None
    runs: int = 0


@dataclass
class Gateway:
    """Router + connector processes around an in-loop simulator and webhook receiver."""

    workdir: Path
    sim: Simulator
    hooks: WebhookReceiver
    tps: float | None = None
    window: int = 10
    long_messages: str = "udh8"
    bind_type: str = "transceiver"
    receipt_group: str | None = None
    receiver: bool = False  # also a receiver-only connection `sim-rx` (start_connector)
    router_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)  # the connector's /metrics
    env: dict[str, str] = field(default_factory=dict)  # extra environment for both processes
    procs: dict[str, Proc] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None

    @property
    def folder(self) -> Path:
        return self.workdir / "resources"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.workdir / 'smsmesh.db'}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    def write_resources(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "resources.yaml").write_text(
            resources_yaml(
                self.sim.port,
                self.hooks.url,
                tps=self.tps,
                window=self.window,
                long_messages=self.long_messages,
                bind_type=self.bind_type,
                receipt_group=self.receipt_group,
                receiver=self.receiver,
            )
        )

    def _proc(self, name: str, *args: str) -> Proc:
        if name not in self.procs:
            self.procs[name] = Proc(
                name,
                [sys.executable, "-m", "smsmesh", *args],
                self.workdir / f"{name}.log",
            )
        return self.procs[name]

    async def start(self) -> None:
        self.write_resources()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        await self.start_connector()
        await self.start_router()

    async def _spawn(self, proc: Proc) -> None:
        proc.runs += 1
        log = proc.log.open("ab")
        env = {**os.environ, "SMSMESH_LOG_LEVEL": "INFO", **self.env}
        proc.process = await asyncio.create_subprocess_exec(
            *proc.argv, stdout=log, stderr=log, env=env
        )
        log.close()

    async def start_router(self) -> None:
        proc = self._proc(
            "router",
            "router",
            "--resources",
            str(self.folder),
            "--store",
            self.store_url,
            "--port",
            str(self.router_port),
        )
        await self._spawn(proc)
        await self.wait_http_ready()

    async def start_connector(self, connection: str = "sim") -> None:
        """The connector of `connection`; process "connector" for `sim`, else its name."""
        proc = self._proc(
            "connector" if connection == "sim" else connection,
            "connector",
            "--resources",
            str(self.folder),
            "--connection",
            connection,
            "--store",
            self.store_url,
            "--metrics-port",
            str(self.metrics_port if connection == "sim" else 0),
        )
        await self._spawn(proc)

    async def wait_http_ready(self, timeout: float = 20.0) -> None:
        assert self.session is not None
        async with asyncio.timeout(timeout):
            while True:
                for name in ("router", "connector"):  # a process that died at start
                    if name in self.procs:
                        self.check_alive(name)
                with contextlib.suppress(aiohttp.ClientError):
                    async with self.session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)

    def check_alive(self, name: str) -> None:
        proc = self.procs[name]
        assert proc.process is not None
        if proc.process.returncode is not None:
            raise AssertionError(
                f"{name} exited with {proc.process.returncode}:\n{proc.log.read_text()[-3000:]}"
            )

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        proc = self.procs[name]
        assert proc.process is not None
        proc.process.send_signal(sig)
        async with asyncio.timeout(30):
            return await proc.process.wait()

    async def stop(self) -> None:
        for name in ("router", *(n for n in self.procs if n != "router")):
            proc = self.procs.get(name)
            if proc is None or proc.process is None or proc.process.returncode is not None:
                continue
            proc.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(30):
                    await proc.process.wait()
            except TimeoutError:
                proc.process.kill()
                await proc.process.wait()
        if self.session is not None:
            await self.session.close()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.log.read_text()[-4000:]}"
            for p in self.procs.values()
            if p.log.exists()
        )

    async def send(self, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.post(
            f"{self.url}/v1/messages",
            json=body,
            headers={"Authorization": f"Bearer {API_KEY}", **headers},
        ) as response:
            return response.status, await response.json()

    async def message(self, message_id: str) -> Any:
        assert self.session is not None
        async with self.session.get(
            f"{self.url}/v1/messages/{message_id}",
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as response:
            assert response.status == 200
            return await response.json()

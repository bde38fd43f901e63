"""The cluster store with real processes: two routers and two connections on one PostgreSQL.

Needs `SMSMESH_TEST_POSTGRES_URL` (hack/postgres.sh starts a loopback cluster; .ci/run
does it); each test works in a schema of its own, dropped afterwards. The restart in the
fault test needs the cluster to be the one hack/postgres.sh manages.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import pytest

from smsmesh.local import free_port
from smsmesh.simulator.server import Simulator
from tests.e2e.harness import API_KEY, Hook, WebhookReceiver

POSTGRES_URL = os.environ.get("SMSMESH_TEST_POSTGRES_URL") or None
HACK = Path(__file__).resolve().parents[2] / "hack" / "postgres.sh"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        POSTGRES_URL is None,
        reason="SMSMESH_TEST_POSTGRES_URL not set: PostgreSQL cluster tests skipped "
        "(see hack/postgres.sh)",
    ),
]


def with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"schema": schema})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def resources(sim_port: int, hook_url: str, tps: float | None) -> str:
    throughput = f"{{tps: {tps}, window: 20}}" if tps else "{window: 50}"
    connections = "\n---\n".join(
        f"""apiVersion: smsmesh.io/v1alpha1
kind: SmppConnection
metadata: {{name: {name}}}
spec:
  host: 127.0.0.1
  port: {sim_port}
  credentialsSecretRef: {{name: smsc-{name}}}
  throughput: {throughput}
  reconnect: {{initialDelaySeconds: 0.1, maxDelaySeconds: 1}}
---
apiVersion: v1
kind: Secret
metadata: {{name: smsc-{name}}}
stringData: {{systemId: {name}, password: secret1}}"""
        for name in ("sim-a", "sim-b")
    )
    # One SMSC account per connection: an SMSC delivers an account's receipts to any of
    # its binds, and receipts are correlated per connection (see the issue notes).
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: key}}
stringData: {{apiKey: {API_KEY}}}
---
{connections}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmsApplication
metadata: {{name: app}}
spec:
  apiKeySecretRefs: [{{name: key, key: apiKey}}]
  defaultSender: smsmesh
  callbackUrl: {hook_url}/status
---
apiVersion: smsmesh.io/v1alpha1
kind: SmsRoute
metadata: {{name: split}}
spec:
  targets: [{{connection: sim-a, weight: 1}}, {{connection: sim-b, weight: 1}}]
"""


@dataclass
class Cluster:
    workdir: Path
    store_url: str
    sim: Simulator
    router_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.workdir / "resources"

    def argv(self, name: str) -> list[str]:
        common = ["--resources", str(self.folder), "--store", self.store_url]
        if name.startswith("router-"):
            port = self.router_ports[int(name[-1])]
            return ["router", *common, "--port", str(port)]
        return ["connector", *common, "--connection", name.removeprefix("connector-"),
                "--metrics-port", "0"]  # fmt: skip

    async def start(self, name: str) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.procs[name] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smsmesh", *self.argv(name), stdout=log, stderr=log
        )
        log.close()
        if name.startswith("router-"):
            await self.wait_ready(self.router_ports[int(name[-1])])

    async def wait_ready(self, port: int) -> None:
        async with asyncio.timeout(30), aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    async def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(30):
            await proc.wait()

    async def stop(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text()[-3000:]}" for p in self.workdir.glob("*.log")
        )


@pytest.fixture
async def cluster_factory(tmp_path: Path, hooks: WebhookReceiver) -> AsyncIterator[Any]:
    made: list[Cluster] = []
    schema = f"e2e_{uuid.uuid4().hex[:12]}"

    async def make(tps: float | None = None) -> Cluster:
        assert POSTGRES_URL is not None
        sim = Simulator(host="127.0.0.1", port=0, receipt_delay=0.05, window=50)
        await sim.start()
        cluster = Cluster(tmp_path, with_schema(POSTGRES_URL, schema), sim)
        cluster.folder.mkdir(parents=True)
        (cluster.folder / "resources.yaml").write_text(resources(sim.port, hooks.url, tps))
        made.append(cluster)
        for name in ("connector-sim-a", "connector-sim-b", "router-0", "router-1"):
            await cluster.start(name)
        return cluster

    yield make
    for cluster in made:
        await cluster.stop()
        await cluster.sim.stop()
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE', timeout=60)
    finally:
        await conn.close()


async def send_all(
    cluster: Cluster, count: int, tag: str, *, concurrency: int = 64
) -> dict[str, str]:
    """POST `count` messages spread over both routers; text -> id of each 202.

    A router that is down or answers 503 is not an acceptance: the message is tried on
    the other router, as a client behind a Service would. Only 202s count.
    """
    accepted: dict[str, str] = {}
    queue = list(range(count))
    headers = {"Authorization": f"Bearer {API_KEY}"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def worker(offset: int) -> None:
            while queue:
                i = queue.pop()
                text = f"{tag} {i}"
                for attempt in range(40):
                    port = cluster.router_ports[(i + attempt + offset) % 2]
                    try:
                        async with session.post(
                            f"http://127.0.0.1:{port}/v1/messages",
                            json={"to": "+31612345678", "text": text},
                            headers={**headers, "Idempotency-Key": text},
                        ) as response:
                            if response.status == 202:
                                accepted[text] = (await response.json())["id"]
                                break
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                    await asyncio.sleep(0.05 * attempt)

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return accepted


def finals(ids: set[str]) -> Any:
    def predicate(calls: list[Hook]) -> bool:
        return ids <= {c.body["id"] for c in calls if c.path == "/status"}

    return predicate


@pytest.mark.timeout(400)
async def test_two_routers_two_connections_20000_messages_exactly_once(
    cluster_factory: Any, hooks: WebhookReceiver
) -> None:
    cluster: Cluster = await cluster_factory()
    accepted = await send_all(cluster, 20_000, "scale")
    assert len(accepted) == 20_000
    calls = await hooks.wait_for(finals(set(accepted.values())), timeout=240)
    statuses = {c.body["id"]: c.body["status"] for c in calls if c.path == "/status"}
    assert {statuses[i] for i in accepted.values()} == {"delivered"}, cluster.logs()
    sent = Counter(r.text for r in cluster.sim.received if r.text.startswith("scale "))
    assert len(sent) == 20_000
    assert max(sent.values()) == 1, "a message was submitted twice without any crash"
    # Both binds carried traffic (the route splits by weight).
    by_bind = Counter(r.system_id for r in cluster.sim.received)
    assert set(by_bind) == {"sim-a", "sim-b"}
    assert min(by_bind.values()) > 5_000


async def states(cluster: Cluster, ids: set[str]) -> Any:
    """Where the given messages are in the store (for a failure message)."""
    import asyncpg

    assert POSTGRES_URL is not None
    schema = urlsplit(cluster.store_url).query.rpartition("schema=")[2]
    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        rows = await conn.fetch(
            f'SELECT state, connection, attempts, count(*) FROM "{schema}".messages '
            "WHERE id = any($1::text[]) GROUP BY 1, 2, 3",
            list(ids),
        )
        hooks = await conn.fetch(
            f'SELECT state, attempts, count(*) FROM "{schema}".webhooks '
            "WHERE message_id = any($1::text[]) GROUP BY 1, 2",
            list(ids),
        )
    finally:
        await conn.close()
    return [tuple(r) for r in rows], [tuple(r) for r in hooks]


def managed_cluster() -> bool:
    try:
        done = subprocess.run([str(HACK), "status"], capture_output=True, text=True, timeout=30,
                              check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == (POSTGRES_URL or "").partition("?")[0]


@pytest.mark.timeout(400)
async def test_kill_9_of_router_and_connector_and_a_database_restart_lose_nothing(
    cluster_factory: Any, hooks: WebhookReceiver
) -> None:
    cluster: Cluster = await cluster_factory(tps=300)
    sending = asyncio.create_task(send_all(cluster, 3000, "fault", concurrency=32))

    await cluster.sim.wait_submits(500, timeout=60)
    await cluster.kill("router-0")
    await cluster.sim.wait_submits(1000, timeout=60)
    await cluster.kill("connector-sim-a")
    await cluster.start("connector-sim-a")
    if managed_cluster():
        await cluster.sim.wait_submits(1500, timeout=60)
        restart = await asyncio.create_subprocess_exec(
            str(HACK), "restart", stdout=asyncio.subprocess.DEVNULL
        )
        async with asyncio.timeout(60):
            assert await restart.wait() == 0
    accepted = await asyncio.wait_for(sending, 180)
    await cluster.start("router-0")

    ids = set(accepted.values())
    assert len(ids) == len(accepted) >= 2900  # nearly all got through despite the faults
    try:
        calls = await hooks.wait_for(finals(ids), timeout=120)
    except TimeoutError:
        seen = {c.body["id"] for c in hooks.calls if c.path == "/status"}
        raise AssertionError(
            f"no final status for {len(ids - seen)} messages: "
            f"{await states(cluster, ids - seen)}\n{cluster.logs()}"
        ) from None
    statuses = {c.body["id"]: c.body["status"] for c in calls if c.path == "/status"}
    assert {statuses[i] for i in ids} == {"delivered"}, cluster.logs()
    sent = Counter(r.text for r in cluster.sim.received if r.text.startswith("fault "))
    assert set(accepted) <= set(sent)

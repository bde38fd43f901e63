"""Metrics of the controls that the end-to-end runs do not provoke: a route's failover
(its preferred target down) in a real router app, and SMSC throttling in a real
connector against the simulator. Both run in this process, so the values are read
straight from the registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from smsmesh.model import ConnectionState, NewMessage, new_message_id
from smsmesh.resources import load_folder
from smsmesh.simulator import Simulator, SimulatorSettings
from smsmesh.store import SqliteStore
from smsmesh.telemetry import metrics
from smsmesh_connector.service import Connector
from smsmesh_connector.settings import ConnectorSettings
from smsmesh_router.app import API_KEY, create_app
from smsmesh_router.config import build_config

RESOURCES = """
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {systemId: u, password: p, apiKey: k1}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmppConnection
metadata: {name: a}
spec: {host: 127.0.0.1, port: 1, credentialsSecretRef: {name: creds}}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmppConnection
metadata: {name: b}
spec: {host: 127.0.0.1, port: 2, credentialsSecretRef: {name: creds}}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmsApplication
metadata: {name: metrics-app}
spec:
  apiKeySecretRefs: [{name: creds, key: apiKey}]
  defaultSender: smsmesh
---
apiVersion: smsmesh.io/v1alpha1
kind: SmsRoute
metadata: {name: chain}
spec:
  match: {}
  targets: [{connection: a}, {connection: b}]
"""


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "smsmesh.db")
    await store.open()
    yield store
    await store.close()


async def test_a_route_counts_the_failovers_health_makes_it_take(
    tmp_path: Path, store: SqliteStore
) -> None:
    folder = tmp_path / "resources"
    folder.mkdir()
    (folder / "r.yaml").write_text(RESOURCES)
    app = create_app(store, build_config(load_folder(folder)))
    now = time.time()
    await store.publish_connection_state(ConnectionState("a", bound=False, updated_at=now))
    await store.publish_connection_state(ConnectionState("b", bound=True, updated_at=now))
    failovers = sample("smsmesh_route_failovers_total", route="chain")
    matched = sample("smsmesh_route_messages_total", route="chain")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        headers = {"Authorization": "Bearer k1"}
        response = await client.post("/v1/messages", json={"to": "+4915112345678", "text": "x"},
                                      headers=headers)  # fmt: skip
        assert response.status == 202
        record = await store.get_message((await response.json())["id"])
        assert record is not None
        assert record.targets == ("b", "a")
        assert sample("smsmesh_route_failovers_total", route="chain") == failovers + 1
        # Preferred target back (the health view caches for a second: refresh it now).
        await store.publish_connection_state(ConnectionState("a", True, time.time()))
        await app[API_KEY].health.refresh()
        response = await client.post("/v1/messages", json={"to": "+4915112345678", "text": "y"},
                                     headers=headers)  # fmt: skip
        assert response.status == 202
    assert sample("smsmesh_route_failovers_total", route="chain") == failovers + 1
    assert sample("smsmesh_route_messages_total", route="chain") == matched + 2
    assert sample("smsmesh_application_accepted_total", application="metrics-app") >= 2


async def test_throttling_is_counted_per_response_and_per_episode(
    tmp_path: Path, store: SqliteStore
) -> None:
    settings = SimulatorSettings(port=0, system_id="u", password="p", receipt_delay=0,
                                 window=50, enquire_link_interval=None)  # fmt: skip
    async with Simulator(settings) as sim:
        sim.set_behaviour(throttle_tps=100.0)
        now = time.time()
        messages = [
            NewMessage(id=new_message_id(), application="app", source="smsmesh",
                       destination=f"3161300{i:04d}", text="hi", route="r", targets=("thr",),
                       expires_at=now + 600, created_at=now)
            for i in range(120)
        ]  # fmt: skip
        ids = [r.message_id for r in await store.accept(messages)]
        conn = {"connection": "thr"}
        throttled = sample("smsmesh_connection_throttled_total", **conn)
        episodes = sample("smsmesh_connection_throttle_episodes_total", **conn)
        connector_settings = ConnectorSettings(
            name="thr", store_url=f"sqlite:///{tmp_path / 'smsmesh.db'}", host="127.0.0.1",
            port=sim.port, system_id="u", password="p", window=20, state_interval=0.2,
        )  # fmt: skip
        connector = Connector(connector_settings)
        stop = asyncio.Event()
        task = asyncio.create_task(connector.run(stop))
        try:
            await sim.wait_for(lambda: sim.counters.accepted >= len(ids), timeout=30)
        finally:
            stop.set()
            async with asyncio.timeout(10):
                await task
    counted = sample("smsmesh_connection_throttled_total", **conn) - throttled
    assert counted == connector.state.counters.throttled == sim.counters.throttled > 0
    status = {"connection": "thr", "command_status": "ESME_RTHROTTLED"}
    assert sample("smsmesh_connection_submits_total", **status) >= counted
    assert sample("smsmesh_connection_throttle_episodes_total", **conn) - episodes >= 1
    # After the stop, the last scrape sees the bind down.
    assert sample("smsmesh_connection_bound", **conn) == 0

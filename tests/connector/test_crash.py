"""`smsmesh connector` as its own OS process, killed with SIGKILL mid-traffic and restarted:
nothing is lost, and what is sent twice is bounded by the window."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from connkit import PASSWORD, SYSTEM_ID, accept, new_message, wait_status

from smsmesh.model import MessageStatus
from smsmesh.simulator import Simulator
from smsmesh.store import SqliteStore

WINDOW = 20
IN_PROGRESS_LIMIT = 2 * WINDOW  # the connector's default claim bound

RESOURCES = """\
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {systemId: SYSTEM_ID, password: PASSWORD}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmppConnection
metadata: {name: c1}
spec:
  host: 127.0.0.1
  port: PORT
  credentialsSecretRef: {name: creds}
  throughput: {tps: 400, window: WINDOW}
  reconnect: {initialDelaySeconds: 0.1, maxDelaySeconds: 0.5}
"""


@contextlib.asynccontextmanager
async def connector_process(folder: Path, db: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsmesh", "connector", "--resources", str(folder),
        "--connection", "c1", "--store", f"sqlite:///{db}",
        env={**os.environ, "SMSMESH_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), 10)


async def test_kill_9_mid_traffic_loses_nothing(
    sim: Simulator, store: SqliteStore, db: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "resources"
    folder.mkdir()
    values = {"SYSTEM_ID": SYSTEM_ID, "PASSWORD": PASSWORD, "PORT": sim.port, "WINDOW": WINDOW}
    text = RESOURCES
    for key, value in values.items():
        text = text.replace(key, str(value))
    (folder / "c1.yaml").write_text(text)
    count = 500
    ids = await accept(store, [new_message(destination=f"3162{i:07d}") for i in range(count)])

    async with connector_process(folder, db) as first:
        await sim.wait_for(lambda: sim.counters.accepted >= 150, timeout=30)
        first.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
    killed_at = sim.counters.accepted
    assert killed_at < count  # really killed in the middle

    async with connector_process(folder, db) as second:
        recs = await wait_status(store, ids, frozenset({MessageStatus.DELIVERED}), timeout=60)
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 20) == 0  # graceful stop

    per_destination = collections.Counter(r.destination for r in sim.received if r.message_id)
    duplicates = sum(n - 1 for n in per_destination.values())
    assert len(per_destination) == count
    assert duplicates <= WINDOW
    recovered = [r for r in recs if any(e.kind == "recovered" for e in r.events)]
    assert recovered, "the restart found messages the killed process had in flight"
    assert len(recovered) <= IN_PROGRESS_LIMIT
    print(f"\nkill -9 at {killed_at} accepted: {len(recovered)} recovered, "
          f"{duplicates} sent twice")  # fmt: skip

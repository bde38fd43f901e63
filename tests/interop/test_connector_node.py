"""The connector against an SMSC written with the npm `smpp` package (tests/interop/node).

If the connector only worked with smsmesh's own simulator, a shared misreading of SMPP
would go unnoticed: here an independent implementation takes the bind, the submits
(short and UDH-concatenated) and sends the delivery receipts back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from smsmesh.model import MessageStatus, NewMessage, new_message_id
from smsmesh.store import SqliteStore
from smsmesh_connector.service import Connector
from smsmesh_connector.settings import ConnectorSettings

pytestmark = pytest.mark.interop

NODE_DIR = Path(__file__).parent / "node"
WAIT = 10.0
SYSTEM_ID, PASSWORD = "smsmesh", "secret1"


def _node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the npm smpp peer cannot run")
    if not (NODE_DIR / "node_modules" / "smpp" / "package.json").exists():
        pytest.skip(
            "npm package smpp missing: run `make node-peers` (npm install in tests/interop/node)"
        )
    return node


class NodeSmsc:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.submits: list[dict[str, Any]] = []

    async def read_submits(self, count: int) -> list[dict[str, Any]]:
        assert self.process.stdout is not None
        async with asyncio.timeout(WAIT):
            while len(self.submits) < count:
                line = await self.process.stdout.readline()
                if not line:
                    raise AssertionError("the node SMSC exited")
                self.submits.append(json.loads(line))
        return self.submits


@contextlib.asynccontextmanager
async def node_smsc() -> AsyncIterator[NodeSmsc]:
    node = _node_or_skip()
    process = await asyncio.create_subprocess_exec(
        node, str(NODE_DIR / "smsc.js"), SYSTEM_ID, PASSWORD,
        cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), WAIT)
        yield NodeSmsc(process, json.loads(first)["port"])
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), WAIT)


def message(destination: str, text: str) -> NewMessage:
    now = time.time()
    return NewMessage(
        id=new_message_id(), application="app", source="smsmesh", destination=destination,
        text=text, route="r", targets=("node",), expires_at=now + 600, created_at=now,
    )  # fmt: skip


async def test_connector_delivers_through_the_npm_smpp_smsc(tmp_path: Path) -> None:
    db = tmp_path / "smsmesh.db"
    store = SqliteStore(db)
    await store.open()
    try:
        async with node_smsc() as smsc:
            messages = [message(f"3161900{i:04d}", f"hello node {i}") for i in range(20)]
            messages.append(message("31619009999", "long " * 60))  # 300 GSM chars: 2 parts
            ids = [r.message_id for r in await store.accept(messages)]
            settings = ConnectorSettings(
                name="node", store_url=f"sqlite:///{db}", host="127.0.0.1", port=smsc.port,
                system_id=SYSTEM_ID, password=PASSWORD, window=10, response_timeout=5.0,
            )  # fmt: skip
            stop = asyncio.Event()
            connector = Connector(settings)
            task = asyncio.create_task(connector.run(stop))
            try:
                submits = await smsc.read_submits(22)

                async def all_delivered() -> bool:
                    recs = [await store.get_message(i) for i in ids]
                    return all(r is not None and r.status is MessageStatus.DELIVERED for r in recs)

                deadline = time.monotonic() + WAIT
                while not await all_delivered():  # the store has no event to wait on
                    assert time.monotonic() < deadline, "not every message was delivered"
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                assert await asyncio.wait_for(task, WAIT) == 0
        by_destination: dict[str, list[str]] = {}
        for submit in submits:
            by_destination.setdefault(submit["submit"], []).append(submit["id"])
        for msg, message_id in zip(messages, ids, strict=True):
            record = await store.get_message(message_id)
            assert record is not None
            assert record.smsc_message_ids == tuple(by_destination[msg.destination])
        long_parts = [s for s in submits if s["submit"] == "31619009999"]
        assert [s["udh"] for s in long_parts] == [True, True]
        # Every receipt was stored; one that overtook the record of its submit (a long
        # message is recorded after its last part) was parked and applied later.
        assert connector.state.counters.receipts == 22
    finally:
        await store.close()

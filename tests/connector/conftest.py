"""Fixtures of the connector tests: a SQLite file, a store on it, SMSCs on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from connkit import PASSWORD, SYSTEM_ID, ScriptedSmsc, open_store

from smsmesh.simulator import Simulator, SimulatorSettings
from smsmesh.store import SqliteStore


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "smsmesh.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SqliteStore]:
    """The test's own view of the store file (as a router would have)."""
    async with open_store(db) as s:
        yield s


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    settings = SimulatorSettings(
        port=0,
        system_id=SYSTEM_ID,
        password=PASSWORD,
        receipt_delay=0,
        window=50,
        enquire_link_interval=None,
    )
    async with Simulator(settings) as simulator:
        yield simulator


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedSmsc]:
    smsc = await ScriptedSmsc().start(window=50)
    yield smsc
    await smsc.stop()

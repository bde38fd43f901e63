"""Backends for the store conformance suite.

Every test in tests/store that asks for `store` (or `backend`) runs once per backend,
with ids "sqlite" and "postgres". SQLite always runs; PostgreSQL runs when
`SMSMESH_TEST_POSTGRES_URL` names a database it may use (each test works in a schema
of its own there): `export SMSMESH_TEST_POSTGRES_URL="$(hack/postgres.sh start)"`.
Without it those cases are skipped, and one line at the end of the run says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from storekit import BACKENDS, POSTGRES_SKIP_REASON, POSTGRES_URL, Backend, spawned

from smsmesh.store import Store


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "postgres" and POSTGRES_URL is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    backend = Backend(request.param, tmp_path)
    yield backend
    await backend.close_all()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line, even with -q, when the PostgreSQL half of the suite did not run."""
    skipped = terminalreporter.stats.get("skipped", [])
    if POSTGRES_URL is None and any(POSTGRES_SKIP_REASON in str(r.longrepr) for r in skipped):
        terminalreporter.write_line(POSTGRES_SKIP_REASON, yellow=True)


@pytest.fixture(autouse=True)
async def _reap_workers() -> AsyncIterator[None]:
    """Kill and reap worker processes a failing test left behind."""
    yield
    while spawned:
        proc = spawned.pop()
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.communicate(), 30)

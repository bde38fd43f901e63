"""Backends for the store conformance suite.

Every test in tests/store that asks for `store` (or `backend`) runs once per backend.
SQLite always runs; PostgreSQL joins when `SMSMESH_TEST_POSTGRES_URL` names an empty
database it may use (its store must also pass every test here).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from storekit import BACKENDS, Backend

from smsmesh.store import Store


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    backend = Backend(request.param, tmp_path)
    yield backend
    await backend.close_all()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()

"""A real router app (aiohttp test server on loopback) over a real SQLite store."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from smsmesh.resources import load_folder
from smsmesh.store import SqliteStore
from smsmesh_router.app import API_KEY, create_app
from smsmesh_router.config import build_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "local"

EXTRA = """
apiVersion: v1
kind: Secret
metadata: {name: other-key}
stringData: {apiKey: other-app-key}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmsApplication
metadata: {name: other}
spec:
  apiKeySecretRefs: [{name: other-key, key: apiKey}]
  allowedSenders: ["Other*"]
"""


@pytest.fixture
def resources(tmp_path: Path) -> Path:
    folder = tmp_path / "resources"
    shutil.copytree(EXAMPLES, folder)
    (folder / "90-other-app.yaml").write_text(EXTRA)
    return folder


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "router.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def client(resources: Path, store: SqliteStore) -> AsyncIterator[TestClient[object, object]]:
    app = create_app(store, build_config(load_folder(resources)))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        client.app[API_KEY]
        yield client

"""Search and statistics are served by their indexes: no table scan, no sort.

Asks each database for its plan of the statements the store runs (the same text and
parameters, from the backends' `search_sql`), over enough rows that a planner would
rather scan than use a useless index.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from storekit import CONN, CONN_B, T0, Backend, new_message

from smsmesh.model import MessageQuery, MessageStatus, encode_cursor
from smsmesh.store import SqliteStore, Store, postgres_search, sqlite_search

QUERIES = [
    MessageQuery("app"),
    MessageQuery("app", destination="4915100000007"),
    MessageQuery("app", destination="4915100000007", cursor=encode_cursor(T0 + 50, "m")),
    MessageQuery("app", statuses=frozenset({MessageStatus.DELIVERED}), connection=CONN),
    MessageQuery("app", since=T0 + 10, until=T0 + 90, limit=500),
    MessageQuery("app", cursor=encode_cursor(T0 + 50, "m"), connection=CONN_B),
]


async def fill(store: Store) -> None:
    batch = [
        new_message(
            created=T0 + i * 0.05,
            application=("app", "other", "third")[i % 3],
            destination=f"49151{i % 500:08d}",
        )
        for i in range(6000)
    ]
    for start in range(0, len(batch), 1000):
        await store.accept(batch[start : start + 1000])


async def test_sqlite_plans(backend: Backend) -> None:
    if backend.name != "sqlite":
        pytest.skip("SQLite plans")
    store = await backend.open()
    await fill(store)
    assert isinstance(store, SqliteStore)
    with sqlite3.connect(store.path) as conn:
        conn.execute("ANALYZE")
        for query in QUERIES:
            sql, params = sqlite_search.search_sql(query)
            plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "TEMP B-TREE" not in plan, plan  # rows come in index order
            assert "USING INDEX messages_search" in plan, plan
        stats = conn.execute(
            f"EXPLAIN QUERY PLAN {sqlite_search.STATS_SQL}",
            {"since": T0, "until": T0 + 600, "bucket": 10.0, "app": "app"},
        ).fetchall()
        plan = " | ".join(r[3] for r in stats)
        assert "events_status_at" in plan, plan
        assert "SCAN e " not in plan + " ", plan


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out.extend(_nodes(child))
    return out


async def test_postgres_plans(backend: Backend) -> None:
    if backend.name != "postgres":
        pytest.skip("PostgreSQL plans")
    import asyncpg

    store = await backend.open()
    await fill(store)
    assert backend.url
    conn = await asyncpg.connect(backend.url.split("?")[0], timeout=10)
    try:
        await conn.execute(f'SET search_path TO "{backend.schema}"')
        await conn.execute("ANALYZE messages; ANALYZE events")
        for n, query in enumerate(QUERIES):
            sql, params = postgres_search.search_sql(query)
            raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *params)
            nodes = _nodes(json.loads(raw)[0]["Plan"])
            types = [node["Node Type"] for node in nodes]
            assert "Seq Scan" not in types, types
            conds = " ".join(node.get("Index Cond", "") for node in nodes)
            assert any("Index Name" in node for node in nodes), types
            if n in (0, 2):  # the hot paths: an application's pages, a recipient's pages
                assert "Sort" not in types, types  # rows come in index order
            if query.cursor is not None:  # the keyset bounds the index range
                assert "ROW(created_at, id) <" in conds, nodes
        raw = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) {postgres_search.STATS_SQL}", "app", T0, T0 + 60, 10.0
        )
        nodes = _nodes(json.loads(raw)[0]["Plan"])
        event_scans = [n for n in nodes if n.get("Relation Name") == "events"]
        assert [n.get("Index Name") for n in event_scans] == ["events_status_at"], nodes
    finally:
        await conn.close()

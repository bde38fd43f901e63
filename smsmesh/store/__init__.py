"""Durable store of smsmesh: the `Store` interface, its backends and `open_store`.

A store is named by a URL so that every process (router, connectors, CLI) can be
pointed at the same database with one setting:

    sqlite:///var/lib/smsmesh/smsmesh.db   absolute path
    sqlite:smsmesh.db                      path relative to the working directory
    postgresql://user:password@host:5432/db?sslmode=verify-full&sslrootcert=/ca.crt
    postgres://...                         the same

SQLite options may also be given as query parameters, e.g.
`sqlite:///data/smsmesh.db?synchronous=NORMAL&busy_timeout=10`. PostgreSQL options
(pool_max, schema, statement_timeout, ...) are described in
`smsmesh.store.postgres_config`. The PostgreSQL backend is imported only when a
postgresql:// URL is opened, so local mode never needs its driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from smsmesh.store.base import Store, StoreError
from smsmesh.store.sqlite import SqliteStore

__all__ = [
    "BackendNotAvailable",
    "SqliteStore",
    "Store",
    "StoreError",
    "migrate",
    "open_store",
]


class BackendNotAvailable(StoreError, NotImplementedError):
    """The URL names a store backend whose driver is not installed."""


_SQLITE_OPTIONS = {"synchronous": str, "busy_timeout": float, "max_attempts": int}


def open_store(url: str, **opts: Any) -> Store:
    """A (not yet opened) store for `url`; keyword options go to the backend's constructor.

    Call `await store.open()` before use. Raises `StoreError` for a URL it cannot use.
    """
    scheme, sep, rest = url.partition(":")
    if not sep:
        raise StoreError("store URL has no scheme (expected sqlite:... or postgresql://...)")
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres"):
        try:
            from smsmesh.store.postgres import PostgresStore
        except ImportError as exc:
            raise _no_driver(exc) from exc
        return PostgresStore(url, **opts)
    if scheme != "sqlite":
        raise StoreError(f"unknown store URL scheme {scheme!r} (expected sqlite or postgresql)")
    path, _, query = rest.partition("?")
    if path.startswith("//"):
        authority, slash, path = path[2:].partition("/")
        if authority or not slash:
            raise StoreError(
                f"store URL {url!r}: use sqlite:///absolute/path.db or sqlite:relative.db"
            )
        path = "/" + path
    path = unquote(path)
    if not path or path in (":memory:", "/:memory:") or path.endswith("/"):
        raise StoreError(
            f"store URL {url!r} names no database file (in-memory databases cannot be "
            "shared between processes)"
        )
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        convert = _SQLITE_OPTIONS.get(name)
        if convert is None:
            raise StoreError(f"store URL {url!r}: unknown option {name!r}")
        try:
            options[name] = convert(value.upper() if name == "synchronous" else value)
        except ValueError as exc:
            raise StoreError(f"store URL {url!r}: bad value for {name}: {value!r}") from exc
    options.update(opts)
    try:
        return SqliteStore(path, **options)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"store URL {url!r}: {exc}") from exc


def _no_driver(exc: ImportError) -> BackendNotAvailable:
    return BackendNotAvailable(
        f"the PostgreSQL store needs the asyncpg driver ({exc}); pip install asyncpg"
    )


async def migrate(url: str) -> list[str]:
    """Bring the store at `url` to the current schema; the names of the steps applied.

    PostgreSQL: the pending versioned migrations (safe from many processes at once).
    SQLite: opening the store migrates it, so this opens and closes it and names the
    versions it went through.
    """
    scheme = url.partition(":")[0].lower()
    if scheme in ("postgresql", "postgres"):
        try:
            from smsmesh.store.postgres import migrate as migrate_postgres
        except ImportError as exc:
            raise _no_driver(exc) from exc
        return await migrate_postgres(url)
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    before = await asyncio.to_thread(_sqlite_user_version, store.path)
    await store.open()
    try:
        after = int((await store.diagnostics())["schema_version"])
    finally:
        await store.close()
    return [f"sqlite-v{v}" for v in range(before + 1, after + 1)]


def _sqlite_user_version(path: Path) -> int:
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

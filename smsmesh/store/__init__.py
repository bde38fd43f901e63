"""Durable store of smsmesh: the `Store` interface, its backends and `open_store`.

A store is named by a URL so that every process (router, connectors, CLI) can be
pointed at the same database with one setting:

    sqlite:///var/lib/smsmesh/smsmesh.db   absolute path
    sqlite:smsmesh.db                      path relative to the working directory
    postgresql://...                       (not available yet)

SQLite options may also be given as query parameters, e.g.
`sqlite:///data/smsmesh.db?synchronous=NORMAL&busy_timeout=10`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

from smsmesh.store.base import Store, StoreError
from smsmesh.store.sqlite import SqliteStore

__all__ = ["BackendNotAvailable", "SqliteStore", "Store", "StoreError", "open_store"]


class BackendNotAvailable(StoreError, NotImplementedError):
    """The URL names a store backend this build of smsmesh does not have (yet)."""


_SQLITE_OPTIONS = {"synchronous": str, "busy_timeout": float, "max_attempts": int}


def open_store(url: str, **opts: Any) -> Store:
    """A (not yet opened) store for `url`; keyword options go to the backend's constructor.

    Call `await store.open()` before use. Raises `StoreError` for a URL it cannot use.
    """
    scheme, sep, rest = url.partition(":")
    if not sep:
        raise StoreError(f"store URL {url!r} has no scheme (expected sqlite:... )")
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres"):
        raise BackendNotAvailable(
            "the PostgreSQL store is not implemented yet; use a sqlite: URL for now"
        )
    if scheme != "sqlite":
        raise StoreError(f"unknown store URL scheme {scheme!r} (expected sqlite)")
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

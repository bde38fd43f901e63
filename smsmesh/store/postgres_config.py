"""Settings of the PostgreSQL store, read from its URL, and URL redaction.

    postgresql://user:password@host:5432/db?sslmode=verify-full&sslrootcert=/ca.crt&pool_max=20

The URL usually comes from a Kubernetes Secret (`SMSMESH_STORE_URL`). Query parameters
are of three kinds:

- smsmesh's own; keyword options given to `open_store` override them:

      pool_min=1 pool_max=10   pooled connections per process (plus one for LISTEN)
      schema=NAME              the tables' schema, created if missing (default: the
                               search_path's first, usually public)
      statement_timeout=30     seconds any statement may run (enforced by the server;
                               the client gives up 5 s later if the server is silent)
      connect_timeout=10       seconds to open one connection
      migration_timeout=600    seconds for migrations at open() / migrate()
      max_attempts=5           submission attempts before a requeue becomes `failed`
      listen_keepalive=30      seconds between liveness probes of the LISTEN session

- libpq connection parameters that asyncpg understands (`sslmode`, `sslrootcert`,
  `sslcert`, `sslkey`, `target_session_attrs`, ...): passed on. TLS is `sslmode=require`
  (encrypted) or `sslmode=verify-full&sslrootcert=/path/ca.crt` (encrypted, and the
  server's certificate and name checked: use this in production). Without sslmode,
  asyncpg's default `prefer` encrypts when the server offers TLS, unverified.
- anything else is a server setting for every session (e.g. `application_name=router-1`,
  `lock_timeout=5s`), as asyncpg does it; the server names a wrong one when the store
  opens.

The password must never reach a log line or an error message: `redact_url` is the only
form of a URL this package prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from smsmesh.store.base import StoreError

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class PgSettings:
    """Everything the PostgreSQL store needs to connect, besides the DSN itself."""

    dsn: str  # the URL without smsmesh's own options (handed to asyncpg; holds the password)
    redacted: str  # the URL for messages
    pool_min: int = 1
    pool_max: int = 10
    schema: str | None = None  # tables live here (created if missing); None: search_path as is
    statement_timeout: float = 30.0  # seconds; server-side limit for every statement
    connect_timeout: float = 10.0  # seconds to establish one connection
    migration_timeout: float = 600.0  # seconds for applying migrations at open/migrate
    max_attempts: int = 5  # submission attempts before a requeue becomes `failed`
    listen_keepalive: float = 30.0  # seconds between liveness probes of the listener
    ssl: Any = None  # an ssl.SSLContext given in code (overrides sslmode)
    server_settings: tuple[tuple[str, str], ...] = ()  # from the URL, for every session

    @property
    def command_timeout(self) -> float:
        """The client-side limit per statement: the server's, plus room to say so itself.

        If the server cannot answer at all (restarting, network gone), this bound still
        ends the wait, so no store call hangs.
        """
        return self.statement_timeout + 5.0

    def validate(self) -> PgSettings:
        if not 1 <= self.pool_max <= 1000:
            raise ValueError("pool_max must be between 1 and 1000")
        if not 0 <= self.pool_min <= self.pool_max:
            raise ValueError("pool_min must be between 0 and pool_max")
        if self.schema is not None and not _SCHEMA_NAME.fullmatch(self.schema):
            raise ValueError(
                f"schema {self.schema!r} must be a lower-case SQL name ([a-z_][a-z0-9_]*)"
            )
        timeouts = ("statement_timeout", "connect_timeout", "migration_timeout", "listen_keepalive")
        for name in timeouts:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        return self


# libpq parameters asyncpg reads from the URL itself; every other unknown parameter is a
# server setting.
_CONNECTION_PARAMETERS = frozenset(
    {
        "host", "port", "dbname", "database", "user", "password", "passfile", "service",
        "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword",
        "sslnegotiation", "ssl_min_protocol_version", "ssl_max_protocol_version",
        "target_session_attrs", "krbsrvname", "gsslib",
    }
)  # fmt: skip

SMSMESH_OPTIONS: dict[str, Any] = {
    "pool_min": int,
    "pool_max": int,
    "schema": str,
    "statement_timeout": float,
    "connect_timeout": float,  # libpq's name too
    "migration_timeout": float,
    "max_attempts": int,
    "listen_keepalive": float,
}


def redact_url(url: str) -> str:
    """The URL with its password (in the authority or a `password=` parameter) hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable store URL>"
    netloc = parts.netloc
    if "@" in netloc:
        auth, _, hosts = netloc.rpartition("@")
        user, colon, _ = auth.partition(":")
        netloc = f"{user}{':***' if colon else ''}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if k.lower() in ("password", "sslpassword") else v) for k, v in pairs],
            safe="/:*",
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse_url(url: str, **opts: Any) -> PgSettings:
    """Split a postgresql:// URL into the DSN for asyncpg and smsmesh's settings.

    Raises `StoreError` (naming the redacted URL) for anything it cannot use.
    """
    redacted = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StoreError(f"store URL {redacted}: {exc}") from exc
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise StoreError(f"store URL {redacted}: not a postgresql:// URL")
    if parts.fragment:
        raise StoreError(f"store URL {redacted}: a fragment (#...) has no meaning here")
    values: dict[str, Any] = {}
    passed_on: list[tuple[str, str]] = []
    server_settings: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        convert = SMSMESH_OPTIONS.get(name)
        if convert is None:
            if name in _CONNECTION_PARAMETERS:
                passed_on.append((name, value))
            else:
                server_settings.append((name, value))
            continue
        try:
            values[name] = convert(value)
        except ValueError as exc:
            raise StoreError(f"store URL {redacted}: bad value for {name}: {value!r}") from exc
    unknown = set(opts) - set(SMSMESH_OPTIONS) - {"ssl"}
    if unknown:
        raise StoreError(f"PostgreSQL store: unknown option(s) {', '.join(sorted(unknown))}")
    values.update(opts)
    values["server_settings"] = tuple(server_settings)
    dsn = urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urlencode(passed_on, quote_via=quote), "")
    )
    try:
        return PgSettings(dsn=dsn, redacted=redacted, **values).validate()
    except (TypeError, ValueError) as exc:
        raise StoreError(f"store URL {redacted}: {exc}") from exc

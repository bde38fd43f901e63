"""The PostgreSQL schema and its versioned migrations.

Each `Migration` runs in its own transaction together with the row that records it in
`schema_migrations`, so a failure leaves the previous version intact. Many processes
start at once in a cluster (routers, connectors, after a rollout): they serialise on a
session-level `pg_advisory_lock` keyed by the schema name, so the first one migrates
and the others find the work done. A database migrated by a newer smsmesh (a version
this code does not know) is refused rather than used with the wrong expectations.

Why these indexes (the tables grow to tens of millions of rows; every hot path must
touch a bounded number of index pages, never scan):

- claim: `messages_claim` is a partial index on queued messages only, in claim order
  (connection, priority DESC, created_at, id). Finished messages, the bulk of the table,
  are not in it, so it stays as small as the queues, and a claim reads its first N
  entries with no sort.
- recover: `messages_dispatching`, partial on dispatching: tiny (at most a window per
  connection).
- receipts: `part_keys` is keyed by (connection, key): every id form of every part's
  smsc id (hex/decimal, leading zeros) is a key, so a receipt is one index probe per
  form it can take. Early receipts wait in `orphan_receipts`/`orphan_keys`, the same way.
- look-ups by message id: primary keys on messages (id), parts (message_id, part) and
  events (message_id, seq), so a timeline is one range scan.
- idempotency: a unique partial index on (application, idempotency_key).
- expiry: partial on (state, expires_at) for queued and submitted messages only.
- webhooks: `webhooks_due` partial on pending jobs, in due order: the outbox index holds
  only what is still to send.
- retention: `messages_finished` (final messages by updated_at, which is when they became
  final) and `webhooks_finished` let `purge_finished` find old rows in batches without
  scanning the live ones; `inbound_received` does the same for mobile-originated messages.
- search (0002): `messages_search` (application, created_at, id) and
  `messages_search_destination` (application, destination, created_at, id) serve a page of
  one application's messages newest first, keyset included, with no sort;
  `events_status_at` (partial: status changes only) serves per-bucket statistics.

Times are unix seconds in `double precision`, exactly as the Python side holds them, so
a value read back equals the value written (no rounding through timestamptz).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smsmesh.store.base import StoreError

if TYPE_CHECKING:
    from smsmesh.store.postgres_tx import Conn


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


_V1 = """
CREATE TABLE messages (
    id              text PRIMARY KEY,
    application     text NOT NULL,
    source          text NOT NULL,
    destination     text NOT NULL,
    text            text NOT NULL,
    route           text NOT NULL,
    targets         text[] NOT NULL,
    target_index    integer NOT NULL DEFAULT 0,
    connection      text NOT NULL,               -- targets[target_index + 1]
    state           text NOT NULL,               -- smsmesh.store.rules.State
    priority        smallint NOT NULL,
    segments        integer NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    not_before      double precision NOT NULL DEFAULT 0,
    expires_at      double precision NOT NULL,
    created_at      double precision NOT NULL,
    updated_at      double precision NOT NULL,
    client_ref      text,
    callback_url    text,
    idempotency_key text,
    trace_context   jsonb NOT NULL DEFAULT '{}',
    error           text,
    command_status  bigint
);
CREATE INDEX messages_claim ON messages (connection, priority DESC, created_at, id)
    WHERE state = 'queued';
CREATE INDEX messages_dispatching ON messages (connection) WHERE state = 'dispatching';
CREATE UNIQUE INDEX messages_idempotency ON messages (application, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_expiry ON messages (state, expires_at)
    WHERE state IN ('queued', 'submitted');
CREATE INDEX messages_finished ON messages (updated_at)
    WHERE state IN ('delivered', 'undeliverable', 'expired', 'rejected', 'failed');

CREATE TABLE parts (
    message_id  text NOT NULL,
    part        integer NOT NULL,                -- 1-based, in submit order
    connection  text NOT NULL,
    smsc_id     text NOT NULL,                   -- as submit_sm_resp returned it
    smsc_key    text NOT NULL,                   -- canonical form (stripped, lower case)
    state       text,                            -- last receipt state; NULL before any
    error_code  text,
    updated_at  double precision NOT NULL,
    PRIMARY KEY (message_id, part)
);

-- receipt correlation: every id_candidates() form of every part's smsc id.
CREATE TABLE part_keys (
    connection  text NOT NULL,
    key         text NOT NULL,
    message_id  text NOT NULL,
    part        integer NOT NULL,
    PRIMARY KEY (connection, key, message_id, part)
);

-- receipts that arrived before the submit they belong to was recorded.
CREATE TABLE orphan_receipts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection  text NOT NULL,
    smsc_id     text NOT NULL,
    state       text NOT NULL,
    at          double precision NOT NULL,
    error_code  text,
    raw         text,
    received_at double precision NOT NULL
);
CREATE INDEX orphan_receipts_age ON orphan_receipts (received_at);
CREATE TABLE orphan_keys (
    connection  text NOT NULL,
    key         text NOT NULL,
    orphan_id   bigint NOT NULL,
    PRIMARY KEY (connection, key, orphan_id)
);

CREATE TABLE events (
    message_id  text NOT NULL,
    seq         bigint GENERATED ALWAYS AS IDENTITY,  -- recording order = timeline order
    at          double precision NOT NULL,
    kind        text NOT NULL,
    status      text,
    connection  text,
    detail      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (message_id, seq)
);

CREATE TABLE inbound (
    id            text PRIMARY KEY,
    connection    text NOT NULL,
    source        text NOT NULL,
    destination   text NOT NULL,
    text          text NOT NULL,
    received_at   double precision NOT NULL,
    application   text,
    trace_context jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX inbound_received ON inbound (received_at);

CREATE TABLE webhooks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL,
    url           text NOT NULL,
    payload       jsonb NOT NULL,
    message_id    text NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,    -- failed attempts so far
    due_at        double precision NOT NULL,
    lease_until   double precision,              -- leased to a dispatcher until then
    state         text NOT NULL,                 -- pending, done, gave_up
    last_error    text,
    trace_context jsonb NOT NULL DEFAULT '{}',
    created_at    double precision NOT NULL,
    updated_at    double precision NOT NULL
);
CREATE INDEX webhooks_due ON webhooks (due_at, id) WHERE state = 'pending';
CREATE INDEX webhooks_pending_message ON webhooks (message_id) WHERE state = 'pending';
CREATE INDEX webhooks_finished ON webhooks (updated_at) WHERE state <> 'pending';

CREATE TABLE connections (
    name        text PRIMARY KEY,
    state       jsonb NOT NULL,                  -- ConnectionState as JSON
    updated_at  double precision NOT NULL
);
"""

# Message search and statistics (`postgres_search`). Plain CREATE INDEX, because a
# migration runs in a transaction and CONCURRENTLY cannot: on a big table it blocks
# writes to `messages`/`events` while it builds, so upgrade a large installation in a
# quiet hour (or create these indexes CONCURRENTLY by hand first: IF NOT EXISTS skips).
_V2 = """
CREATE INDEX IF NOT EXISTS messages_search ON messages (application, created_at, id);
CREATE INDEX IF NOT EXISTS messages_search_destination
    ON messages (application, destination, created_at, id);
CREATE INDEX IF NOT EXISTS events_status_at ON events (at) WHERE status IS NOT NULL;
"""

# 0003: messages and webhooks are queues. Every claim and status change leaves a dead
# row version behind, and the claim index keeps pointing at it until a vacuum: claims
# slow down as dead entries pile up at the front of that index. Vacuum these two after
# a fixed number of changes, not after a fifth of the table changed (the default: on a
# table holding 30 days of history, millions of dead rows first). How often autovacuum
# looks at all is the server's `autovacuum_naptime` (README: PostgreSQL settings).
_V3 = """
ALTER TABLE messages SET (autovacuum_vacuum_scale_factor = 0,
                          autovacuum_vacuum_threshold = 20000,
                          autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE webhooks SET (autovacuum_vacuum_scale_factor = 0,
                          autovacuum_vacuum_threshold = 20000);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "0001_initial", _V1),
    Migration(2, "0002_search", _V2),
    Migration(3, "0003_queue_vacuum", _V3),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def apply_migrations(conn: Conn, schema: str | None) -> list[str]:
    """Bring the schema to `SCHEMA_VERSION`; returns the names of the migrations applied.

    `schema` is created if missing (the connection's search_path must name it already).
    Holds a session advisory lock meanwhile, so concurrent callers migrate once.
    """
    lock_name = schema if schema is not None else await conn.fetchval("SELECT current_schema()")
    if lock_name is None:
        raise StoreError("the search_path names no existing schema to create tables in")
    await conn.execute(
        "SELECT pg_advisory_lock(hashtext('smsmesh.migrate'), hashtext($1))", lock_name
    )
    try:
        if schema is not None:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute(_CREATE_LEDGER)
        done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        known = {m.version for m in MIGRATIONS}
        if done - known:
            raise StoreError(
                f"database schema has version(s) {sorted(done - known)} that this smsmesh does "
                f"not know (it knows up to {SCHEMA_VERSION}); upgrade smsmesh"
            )
        applied: list[str] = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration.name)
        return applied
    finally:
        await conn.execute(
            "SELECT pg_advisory_unlock(hashtext('smsmesh.migrate'), hashtext($1))", lock_name
        )

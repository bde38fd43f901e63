"""The SQLite schema and its migrations, versioned with `PRAGMA user_version`.

Each entry of `MIGRATIONS` takes the schema from version i to i+1 and runs inside the
write transaction that also bumps `user_version`, so a crash mid-migration leaves the
previous version intact. Several processes may open the same file at once: the first
one to get the write lock migrates, the others find the version already current.
"""

from __future__ import annotations

import sqlite3

from smsmesh.store.base import StoreError

_V1 = """
CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    application     TEXT NOT NULL,
    source          TEXT NOT NULL,
    destination     TEXT NOT NULL,
    text            TEXT NOT NULL,
    route           TEXT NOT NULL,
    targets         TEXT NOT NULL,            -- JSON array of connection names
    target_index    INTEGER NOT NULL DEFAULT 0,
    connection      TEXT NOT NULL,            -- targets[target_index]
    state           TEXT NOT NULL,            -- smsmesh.store.rules.State
    priority        INTEGER NOT NULL,
    segments        INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      REAL NOT NULL DEFAULT 0,
    expires_at      REAL NOT NULL,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    client_ref      TEXT,
    callback_url    TEXT,
    idempotency_key TEXT,
    trace_context   TEXT NOT NULL DEFAULT '{}',
    error           TEXT,
    command_status  INTEGER
);
-- claim: queued messages of one connection, highest priority first, then oldest.
CREATE INDEX messages_claim ON messages (connection, state, priority DESC, created_at);
CREATE UNIQUE INDEX messages_idempotency ON messages (application, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- expire: queued / submitted messages by validity.
CREATE INDEX messages_expiry ON messages (state, expires_at);

CREATE TABLE parts (
    message_id  TEXT NOT NULL,
    part        INTEGER NOT NULL,                -- 1-based, in submit order
    connection  TEXT NOT NULL,
    smsc_id     TEXT NOT NULL,                   -- as submit_sm_resp returned it
    smsc_key    TEXT NOT NULL,                   -- canonical form (stripped, lower case)
    state       TEXT,                            -- last receipt state; NULL before any
    error_code  TEXT,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (message_id, part)
) WITHOUT ROWID;

-- receipt correlation: every id_candidates() form of every part's smsc id.
CREATE TABLE part_keys (
    connection  TEXT NOT NULL,
    key         TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    part        INTEGER NOT NULL,
    PRIMARY KEY (connection, key, message_id, part)
) WITHOUT ROWID;

-- receipts that arrived before the submit they belong to was recorded.
CREATE TABLE orphan_receipts (
    id          INTEGER PRIMARY KEY,
    connection  TEXT NOT NULL,
    smsc_id     TEXT NOT NULL,
    state       TEXT NOT NULL,
    at          REAL NOT NULL,
    error_code  TEXT,
    raw         TEXT,
    received_at REAL NOT NULL
);
CREATE INDEX orphan_receipts_age ON orphan_receipts (received_at);
CREATE TABLE orphan_keys (
    connection  TEXT NOT NULL,
    key         TEXT NOT NULL,
    orphan_id   INTEGER NOT NULL,
    PRIMARY KEY (connection, key, orphan_id)
) WITHOUT ROWID;

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,             -- recording order = timeline order
    message_id  TEXT NOT NULL,
    at          REAL NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT,
    connection  TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_message ON events (message_id, seq);

CREATE TABLE inbound (
    id            TEXT PRIMARY KEY,
    connection    TEXT NOT NULL,
    source        TEXT NOT NULL,
    destination   TEXT NOT NULL,
    text          TEXT NOT NULL,
    received_at   REAL NOT NULL,
    application   TEXT,
    trace_context TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE webhooks (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,
    url           TEXT NOT NULL,
    payload       TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,    -- failed attempts so far
    due_at        REAL NOT NULL,
    lease_until   REAL,                          -- leased to a dispatcher until then
    state         TEXT NOT NULL,                 -- pending, done, gave_up
    last_error    TEXT,
    trace_context TEXT NOT NULL DEFAULT '{}',
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX webhooks_due ON webhooks (state, due_at);

CREATE TABLE connections (
    name        TEXT PRIMARY KEY,
    state       TEXT NOT NULL,                   -- JSON of ConnectionState
    updated_at  REAL NOT NULL
);
"""

# Version 2: message search and statistics (`sqlite_search`). A page of an application's
# messages, newest first, is one index range read backwards; with a recipient, the
# second index. Statistics read only timeline rows that changed a status.
_V2 = """
CREATE INDEX messages_search ON messages (application, created_at, id);
CREATE INDEX messages_search_destination ON messages (application, destination, created_at, id);
CREATE INDEX events_status_at ON events (at) WHERE status IS NOT NULL;
"""

# Version 3: the claim and expiry indexes hold only the messages those scans look for.
# Indexed on `state`, every status change of every message moved two index entries;
# partial indexes leave a message's entry alone until it leaves the state they cover
# (measured: record_receipts about a tenth faster). `recover` gets a small index of its
# own for the messages a connector had in flight.
_V3 = """
DROP INDEX messages_claim;
CREATE INDEX messages_claim ON messages (connection, priority DESC, created_at)
    WHERE state = 'queued';
CREATE INDEX messages_dispatching ON messages (connection) WHERE state = 'dispatching';
DROP INDEX messages_expiry;
CREATE INDEX messages_expiry_queued ON messages (expires_at) WHERE state = 'queued';
CREATE INDEX messages_expiry_submitted ON messages (expires_at) WHERE state = 'submitted';
"""

# Version 4: retention (`purge_finished`) finds finished webhook jobs by age. Old
# messages and MO messages need no index: their ids sort by creation time, so the
# primary key bounds the scan (see Engine.purge_batch).
_V4 = """
CREATE INDEX webhooks_finished ON webhooks (updated_at) WHERE state <> 'pending';
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to `SCHEMA_VERSION`; returns the version found before."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {found} is newer than this smsmesh "
                f"understands ({SCHEMA_VERSION}); upgrade smsmesh"
            )
        for version in range(found, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
        if found != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit early)."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip():
        out.append(pending.strip())
    return out

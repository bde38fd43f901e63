"""Message search and statistics on the SQLite store (runs on the store's thread).

Each function is one SELECT, served by the indexes of schema version 2:
`messages_search` (application, created_at, id) and `messages_search_destination`
(application, destination, created_at, id) yield a page in order, without a sort,
stopping after `limit + 1` rows; `events_status_at` (partial: status changes only)
holds the few timeline rows statistics count.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from smsmesh.model import MessagePage, MessageQuery, MessageSummary, Priority, StatsBucket
from smsmesh.store.rules import public_status
from smsmesh.store.search import (
    SUMMARY_COLUMNS,
    buckets_from_counts,
    internal_states,
    page_from_rows,
)


def search_sql(query: MessageQuery) -> tuple[str, list[Any]]:
    """The SELECT for `query` and its parameters (public for the query-plan tests)."""
    where = ["application = ?"]
    params: list[Any] = [query.application]
    index = "messages_search"
    if query.destination is not None:
        where.append("destination = ?")
        params.append(query.destination)
        index = "messages_search_destination"
    if query.statuses:
        states = internal_states(query.statuses)
        where.append(f"state IN ({','.join('?' * len(states))})")
        params.extend(states)
    if query.connection is not None:
        where.append("connection = ?")
        params.append(query.connection)
    if query.since is not None:
        where.append("created_at >= ?")
        params.append(query.since)
    if query.until is not None:
        where.append("created_at < ?")
        params.append(query.until)
    after = query.after
    if after is not None:
        where.append("(created_at, id) < (?, ?)")
        params.extend(after)
    params.append(query.limit + 1)
    sql = (
        f"SELECT {SUMMARY_COLUMNS} FROM messages INDEXED BY {index} "
        f"WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?"
    )
    return sql, params


def search_messages(conn: sqlite3.Connection, query: MessageQuery) -> MessagePage:
    sql, params = search_sql(query)
    rows = [
        MessageSummary(
            id=r[0],
            application=r[1],
            source=r[2],
            destination=r[3],
            status=public_status(r[4]),
            route=r[5],
            connection=r[6],
            priority=Priority(r[7]),
            segments=r[8],
            attempts=r[9],
            created_at=r[10],
            updated_at=r[11],
            client_ref=r[12],
        )
        for r in conn.execute(sql, params).fetchall()
    ]
    return page_from_rows(query, rows)


STATS_SQL = """
SELECT CAST((e.at - :since) / :bucket AS INTEGER) AS b, e.status, count(*)
FROM events e INDEXED BY events_status_at
JOIN messages m ON m.id = e.message_id
WHERE e.status IS NOT NULL AND e.at >= :since AND e.at < :until AND m.application = :app
GROUP BY b, e.status
"""


def message_stats(
    conn: sqlite3.Connection, application: str, since: float, until: float, bucket: float
) -> list[StatsBucket]:
    rows = conn.execute(
        STATS_SQL, {"since": since, "until": until, "bucket": bucket, "app": application}
    ).fetchall()
    return buckets_from_counts(since, until, bucket, rows)


THROUGHPUT_SQL = """
SELECT connection, count(*) FROM events INDEXED BY events_status_at
WHERE status IS NOT NULL AND at >= ? AND at < ? AND status = 'submitted'
GROUP BY connection
"""


def connection_throughput(conn: sqlite3.Connection, since: float, until: float) -> dict[str, int]:
    rows = conn.execute(THROUGHPUT_SQL, (since, until)).fetchall()
    return {name: count for name, count in rows if name is not None}

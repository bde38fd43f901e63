"""Message search and statistics on the PostgreSQL store.

Each function is one statement, served by migration 0002's indexes:
`messages_search` (application, created_at, id) and `messages_search_destination`
(application, destination, created_at, id) return a page in index order (a backward
index scan with the keyset as a row comparison in the index condition, no sort), and
the partial `events_status_at` holds only the timeline rows that changed a status.

Statements are assembled from fixed fragments with a placeholder for every value, so
a search with fewer filters gets a plan of its own instead of a generic
`($n IS NULL OR ...)` plan that could not use the indexes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smsmesh.model import MessagePage, MessageQuery, MessageSummary, Priority, StatsBucket
from smsmesh.store.rules import public_status
from smsmesh.store.search import (
    SUMMARY_COLUMNS,
    buckets_from_counts,
    internal_states,
    page_from_rows,
)

if TYPE_CHECKING:
    from smsmesh.store.postgres_tx import Conn


def search_sql(query: MessageQuery) -> tuple[str, list[Any]]:
    """The SELECT for `query` and its parameters (public for the query-plan tests)."""
    params: list[Any] = [query.application]

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    where = ["application = $1"]
    if query.destination is not None:
        where.append(f"destination = {param(query.destination)}")
    if query.statuses:
        where.append(f"state = ANY({param(internal_states(query.statuses))}::text[])")
    if query.connection is not None:
        where.append(f"connection = {param(query.connection)}")
    if query.since is not None:
        where.append(f"created_at >= {param(query.since)}::float8")
    if query.until is not None:
        where.append(f"created_at < {param(query.until)}::float8")
    after = query.after
    if after is not None:
        where.append(f"(created_at, id) < ({param(after[0])}::float8, {param(after[1])}::text)")
    limit = param(query.limit + 1)
    sql = (
        f"SELECT {SUMMARY_COLUMNS} FROM messages WHERE {' AND '.join(where)} "
        f"ORDER BY created_at DESC, id DESC LIMIT {limit}"
    )
    return sql, params


async def search_messages(conn: Conn, query: MessageQuery) -> MessagePage:
    sql, params = search_sql(query)
    rows = [
        MessageSummary(
            id=r["id"],
            application=r["application"],
            source=r["source"],
            destination=r["destination"],
            status=public_status(r["state"]),
            route=r["route"],
            connection=r["connection"],
            priority=Priority(r["priority"]),
            segments=r["segments"],
            attempts=r["attempts"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            client_ref=r["client_ref"],
        )
        for r in await conn.fetch(sql, *params)
    ]
    return page_from_rows(query, rows)


STATS_SQL = """
SELECT floor((e.at - $2) / $4)::bigint AS b, e.status, count(*)
FROM events e JOIN messages m ON m.id = e.message_id
WHERE e.status IS NOT NULL AND e.at >= $2 AND e.at < $3 AND m.application = $1
GROUP BY 1, 2
"""


async def message_stats(
    conn: Conn, application: str, since: float, until: float, bucket: float
) -> list[StatsBucket]:
    rows = await conn.fetch(STATS_SQL, application, since, until, bucket)
    return buckets_from_counts(since, until, bucket, [(r[0], r[1], r[2]) for r in rows])


THROUGHPUT_SQL = """
SELECT connection, count(*) FROM events
WHERE status IS NOT NULL AND status = 'submitted' AND at >= $1 AND at < $2
GROUP BY connection
"""


async def connection_throughput(conn: Conn, since: float, until: float) -> dict[str, int]:
    rows = await conn.fetch(THROUGHPUT_SQL, since, until)
    return {r[0]: r[1] for r in rows if r[0] is not None}

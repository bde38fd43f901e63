"""What message search and statistics mean, independent of the SQL dialect.

Both backends build their statements from these helpers, so a status filter, a page
boundary and a statistics bucket mean the same on SQLite and PostgreSQL (the store
conformance suite checks it).
"""

from __future__ import annotations

from collections.abc import Iterable

from smsmesh.model import (
    STATS_STATUSES,
    MessagePage,
    MessageQuery,
    MessageStatus,
    MessageSummary,
    StatsBucket,
    check_stats_window,
    encode_cursor,
)
from smsmesh.store.rules import State

# The columns a search returns, in `summary_from_row` order.
SUMMARY_COLUMNS = (
    "id, application, source, destination, state, route, connection, priority, segments, "
    "attempts, created_at, updated_at, client_ref"
)


def internal_states(statuses: Iterable[MessageStatus]) -> list[str]:
    """The internal states that show as any of `statuses` (accepted = queued or dispatching)."""
    out: set[str] = set()
    for status in statuses:
        if status is MessageStatus.ACCEPTED:
            out.update((State.QUEUED.value, State.DISPATCHING.value))
        else:
            out.add(State(status.value).value)
    return sorted(out)


def page_from_rows(query: MessageQuery, rows: list[MessageSummary]) -> MessagePage:
    """The page for rows fetched with LIMIT query.limit + 1 (one extra says "more")."""
    if len(rows) <= query.limit:
        return MessagePage(tuple(rows), None)
    page = rows[: query.limit]
    last = page[-1]
    return MessagePage(tuple(page), encode_cursor(last.created_at, last.id))


def buckets_from_counts(
    since: float,
    until: float,
    bucket_seconds: float,
    counts: Iterable[tuple[int, str, int]],
) -> list[StatsBucket]:
    """Dense buckets from sparse (bucket index, status value, count) rows."""
    n = check_stats_window(since, until, bucket_seconds)
    table = [dict.fromkeys(STATS_STATUSES, 0) for _ in range(n)]
    for index, status, count in counts:
        # The SQL keeps `since <= at < until`; an index of n is float rounding at the end.
        if index >= 0 and status in MessageStatus._value2member_map_:
            table[min(index, n - 1)][MessageStatus(status)] += count
    return [StatsBucket(since + i * bucket_seconds, table[i]) for i in range(n)]

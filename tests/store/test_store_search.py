"""Conformance: message search (filters, keyset pages, isolation) and statistics."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from storekit import (
    CONN,
    CONN_B,
    T0,
    accept_one,
    claim_ids,
    new_message,
    receipt,
    requeue,
    submitted,
)

from smsmesh.model import (
    MessagePage,
    MessageQuery,
    MessageStatus,
    QueryError,
    SubmitOutcome,
    SubmitReport,
)
from smsmesh.store import Store


async def all_pages(store: Store, query: MessageQuery) -> list[MessagePage]:
    pages = [await store.search_messages(query)]
    for _ in range(1000):  # bounded: a cursor that never ends is a bug
        cursor = pages[-1].next_cursor
        if cursor is None:
            return pages
        query = MessageQuery(**{**_fields(query), "cursor": cursor})
        pages.append(await store.search_messages(query))
    raise AssertionError("pagination did not end")


def _fields(query: MessageQuery) -> dict[str, object]:
    return {name: getattr(query, name) for name in MessageQuery.__dataclass_fields__}


def ids(pages: list[MessagePage]) -> list[str]:
    return [m.id for p in pages for m in p.messages]


async def test_newest_first_in_pages_without_gaps_or_repeats(store: Store) -> None:
    batch = [new_message(created=T0 + i) for i in range(7)]
    await store.accept(batch)
    pages = await all_pages(store, MessageQuery("app", limit=3))
    assert [len(p.messages) for p in pages] == [3, 3, 1]
    assert ids(pages) == [m.id for m in reversed(batch)]
    assert pages[-1].next_cursor is None
    first = pages[0].messages[0]
    newest = batch[-1]
    assert (first.destination, first.source, first.route) == (
        newest.destination,
        newest.source,
        newest.route,
    )
    assert first.status is MessageStatus.ACCEPTED
    assert (first.created_at, first.connection, first.attempts) == (newest.created_at, CONN, 0)


async def test_an_exactly_full_last_page_has_no_cursor(store: Store) -> None:
    await store.accept([new_message(created=T0 + i) for i in range(4)])
    page = await store.search_messages(MessageQuery("app", limit=4))
    assert len(page.messages) == 4
    assert page.next_cursor is None


async def test_equal_creation_times_are_ordered_by_id_and_never_split_wrongly(
    store: Store,
) -> None:
    batch = [new_message(created=T0) for _ in range(5)]
    await store.accept(batch)
    pages = await all_pages(store, MessageQuery("app", limit=2))
    assert ids(pages) == sorted((m.id for m in batch), reverse=True)


async def test_messages_accepted_meanwhile_do_not_disturb_the_next_page(store: Store) -> None:
    await store.accept([new_message(created=T0 + i) for i in range(4)])
    first = await store.search_messages(MessageQuery("app", limit=2))
    await store.accept([new_message(created=T0 + 100)])  # newer than everything
    assert first.next_cursor is not None
    second = await store.search_messages(MessageQuery("app", limit=2, cursor=first.next_cursor))
    assert [m.created_at for m in second.messages] == [T0 + 1, T0]


async def test_an_application_sees_only_its_own_messages(store: Store) -> None:
    mine = await accept_one(store, application="app")
    await accept_one(store, application="other")
    page = await store.search_messages(MessageQuery("app"))
    assert [m.id for m in page.messages] == [mine]
    assert (await store.search_messages(MessageQuery("nobody"))).messages == ()


async def test_filter_by_recipient_and_time_range(store: Store) -> None:
    a1 = await accept_one(store, destination="4915100000001", created=T0 + 1)
    await accept_one(store, destination="4915100000002", created=T0 + 2)
    a3 = await accept_one(store, destination="4915100000001", created=T0 + 3)
    a5 = await accept_one(store, destination="4915100000001", created=T0 + 5)

    def q(**kw: object) -> MessageQuery:
        return MessageQuery("app", destination="4915100000001", **kw)  # type: ignore[arg-type]

    assert ids([await store.search_messages(q())]) == [a5, a3, a1]
    assert ids([await store.search_messages(q(since=T0 + 3))]) == [a5, a3]  # inclusive
    assert ids([await store.search_messages(q(until=T0 + 5))]) == [a3, a1]  # exclusive
    assert ids([await store.search_messages(q(since=T0 + 2, until=T0 + 4))]) == [a3]


async def test_filter_by_status_uses_public_statuses(store: Store) -> None:
    queued = await accept_one(store, created=T0 + 1)
    claimed = await accept_one(store, created=T0 + 2)
    assert await claim_ids(store) == [queued, claimed]
    await store.record_submits([requeue(queued, retry_at=T0 + 1000)])  # back to queued
    sent = await accept_one(store, created=T0 + 3)
    done = await accept_one(store, created=T0 + 4)
    refused = await accept_one(store, created=T0 + 5)
    await claim_ids(store)
    await store.record_submits(
        [
            submitted(sent, "S1"),
            submitted(done, "S2"),
            SubmitReport(refused, CONN, T0 + 20, SubmitOutcome.REJECTED, error="no"),
        ]
    )
    await store.record_receipts([receipt("S2")])

    async def with_status(*statuses: MessageStatus) -> list[str]:
        query = MessageQuery("app", statuses=frozenset(statuses))
        return ids([await store.search_messages(query)])

    # `accepted` covers both "waiting in the queue" and "handed to a connector".
    assert await with_status(MessageStatus.ACCEPTED) == [claimed, queued]
    assert await with_status(MessageStatus.SUBMITTED) == [sent]
    assert await with_status(MessageStatus.DELIVERED) == [done]
    assert await with_status(MessageStatus.REJECTED, MessageStatus.DELIVERED) == [refused, done]
    assert await with_status(MessageStatus.EXPIRED) == []
    [hit] = (await store.search_messages(MessageQuery("app", limit=1))).messages
    assert (hit.id, hit.status) == (refused, MessageStatus.REJECTED)


async def test_filter_by_connection_follows_failover(store: Store) -> None:
    moved = await accept_one(store, targets=(CONN, CONN_B), created=T0 + 1)
    stayed = await accept_one(store, targets=(CONN, CONN_B), created=T0 + 2)
    await claim_ids(store)
    await store.record_submits([requeue(moved, failover=True)])
    on_b = await store.search_messages(MessageQuery("app", connection=CONN_B))
    on_a = await store.search_messages(MessageQuery("app", connection=CONN))
    assert ids([on_b]) == [moved]
    assert ids([on_a]) == [stayed]
    assert on_b.messages[0].connection == CONN_B


@dataclass(frozen=True)
class Row:
    id: str
    created_at: float
    destination: str
    application: str
    status: MessageStatus
    connection: str


async def test_random_queries_agree_with_a_plain_filter(store: Store) -> None:
    """Against a reference filter in Python: every filter combination, every page size."""
    rng = random.Random(20240531)
    batch = [
        new_message(
            created=T0 + rng.choice(range(40)),  # many equal creation times
            destination=rng.choice(["491", "492", "493"]),
            application=rng.choice(["app", "app", "other"]),
            targets=(rng.choice([CONN, CONN_B]),),
        )
        for _ in range(120)
    ]
    await store.accept(batch)
    for connection in (CONN, CONN_B):
        claimed = await claim_ids(store, connection)
        picked = claimed[: len(claimed) // 2]
        await store.record_submits(
            [
                submitted(mid, f"{connection}-{i}", connection=connection)
                for i, mid in enumerate(picked)
            ]
        )
        await store.record_receipts(
            [receipt(f"{connection}-{i}", connection=connection) for i in range(0, len(picked), 3)]
        )
    rows = []
    for m in batch:
        rec = await store.get_message(m.id)
        assert rec is not None
        rows.append(
            Row(m.id, m.created_at, m.destination, m.application, rec.status, rec.connection)
        )

    for _ in range(60):
        app = rng.choice(["app", "other"])
        kw: dict[str, object] = {"limit": rng.choice([1, 2, 7, 50, 500])}
        if rng.random() < 0.4:
            kw["destination"] = rng.choice(["491", "492", "493", "499"])
        if rng.random() < 0.4:
            kw["statuses"] = frozenset(
                rng.sample(
                    [MessageStatus.ACCEPTED, MessageStatus.SUBMITTED, MessageStatus.DELIVERED],
                    rng.choice([1, 2]),
                )
            )
        if rng.random() < 0.3:
            kw["connection"] = rng.choice([CONN, CONN_B])
        if rng.random() < 0.4:
            kw["since"] = T0 + rng.choice(range(20))
        if rng.random() < 0.4:
            kw["until"] = T0 + rng.choice(range(21, 45))
        query = MessageQuery(app, **kw)  # type: ignore[arg-type]
        expected = sorted(
            (
                r
                for r in rows
                if r.application == app
                and ("destination" not in kw or r.destination == kw["destination"])
                and ("statuses" not in kw or r.status in kw["statuses"])  # type: ignore[operator]
                and ("connection" not in kw or r.connection == kw["connection"])
                and ("since" not in kw or r.created_at >= kw["since"])  # type: ignore[operator]
                and ("until" not in kw or r.created_at < kw["until"])  # type: ignore[operator]
            ),
            key=lambda r: (r.created_at, r.id),
            reverse=True,
        )
        pages = await all_pages(store, query)
        assert ids(pages) == [r.id for r in expected], kw
        assert all(len(p.messages) == query.limit for p in pages[:-1])


async def test_statistics_count_status_changes_per_bucket(store: Store) -> None:
    early = [await accept_one(store, created=T0 + 1 + i) for i in range(3)]  # bucket 0
    late = await accept_one(store, created=T0 + 12)  # bucket 1
    await accept_one(store, created=T0 + 3, application="other")  # not counted
    await claim_ids(store, now=T0 + 15)
    await store.record_submits(
        [
            submitted(early[0], "X0", at=T0 + 21),
            submitted(early[1], "X1", at=T0 + 22),
            SubmitReport(early[2], CONN, T0 + 29, SubmitOutcome.REJECTED, error="no"),
        ]
    )
    await store.record_receipts(
        [receipt("X0", at=T0 + 35), receipt("X1", at=T0 + 36), receipt("X0", at=T0 + 37)]
    )
    buckets = await store.message_stats("app", T0, T0 + 50, 10)
    assert [b.start for b in buckets] == [T0, T0 + 10, T0 + 20, T0 + 30, T0 + 40]
    table = [{s.value: n for s, n in b.counts.items() if n} for b in buckets]
    assert table == [
        {"accepted": 3},
        {"accepted": 1},
        {"submitted": 2, "rejected": 1},
        {"delivered": 2},  # the repeated receipt changes nothing
        {},
    ]
    assert set(buckets[0].counts) == set(MessageStatus)  # zeros are there too
    assert late not in early
    # A window that starts mid-way counts only what happened inside it.
    [middle] = await store.message_stats("app", T0 + 20, T0 + 30, 10)
    assert middle.counts[MessageStatus.SUBMITTED] == 2


async def test_statistics_refuse_windows_nobody_should_ask(store: Store) -> None:
    with pytest.raises(QueryError):
        await store.message_stats("app", T0, T0, 10)
    with pytest.raises(QueryError):
        await store.message_stats("app", T0, T0 + 10, 0)
    with pytest.raises(QueryError):
        await store.message_stats("app", T0, T0 + 10**9, 1)


async def test_connection_throughput_counts_submits_in_the_window(store: Store) -> None:
    a = [await accept_one(store, created=T0 + i) for i in range(3)]
    b = await accept_one(store, targets=(CONN_B,), created=T0 + 4, application="other")
    await claim_ids(store)
    await claim_ids(store, CONN_B)
    await store.record_submits(
        [
            submitted(a[0], "A0", at=T0 + 20),
            submitted(a[1], "A1", at=T0 + 21),
            submitted(a[2], "A2", at=T0 + 40),
            submitted(b, "B0", connection=CONN_B, at=T0 + 25),
        ]
    )
    assert await store.connection_throughput(T0 + 20, T0 + 30) == {CONN: 2, CONN_B: 1}
    assert await store.connection_throughput(T0 + 30, T0 + 50) == {CONN: 1}
    assert await store.connection_throughput(T0 + 50, T0 + 60) == {}

"""SQLite-only behaviour: store URLs, schema versioning, pragmas, several OS processes
on one file, wake-ups across processes, and crash consistency after kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from storekit import (
    CALLBACK,
    CONN,
    T0,
    accept_one,
    claim_ids,
    finish,
    kinds,
    new_message,
    receipt,
    receipt_states,
    record,
    run_worker,
    submit_new,
    submitted,
)

from smsmesh.model import MessageStatus, NewMessage, Receipt, ReceiptState, SubmitReport
from smsmesh.store import SqliteStore, StoreError, open_store, sqlite_engine
from smsmesh.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, _statements
from smsmesh.store.sqlite_submits import plan_submits
from smsmesh.store.sqlite_tx import StalePlan
from smsmesh.store.wakeup import socket_path


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def two_stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """Two stores on one file, as two processes would have them."""
    first, second = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


# -- URLs -------------------------------------------------------------------------------


def test_open_store_absolute_url(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/a.db")
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "a.db"


def test_open_store_relative_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:data/b.db")
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "data" / "b.db"


async def test_open_store_url_options(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/c.db?synchronous=normal&busy_timeout=2")
    await store.open()
    try:
        assert isinstance(store, SqliteStore)
        settings = await store.diagnostics()
        assert settings["synchronous"] == "NORMAL"
        assert settings["busy_timeout_ms"] == 2000
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "smsmesh.db",  # no scheme
        "mysql://db/x",  # unknown scheme
        "sqlite::memory:",  # cannot be shared between processes
        "sqlite://host/x.db",  # a host makes no sense for a file
        "sqlite:///tmp/",  # a directory, not a file
        "sqlite:///tmp/x.db?journal=delete",  # unknown option
        "sqlite:///tmp/x.db?synchronous=off",  # not a durable mode
        "sqlite:///tmp/x.db?busy_timeout=soon",  # not a number
    ],
)
def test_bad_store_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(StoreError, match="store URL"):
        open_store(url)


# -- schema and pragmas -------------------------------------------------------------------


async def test_schema_version_and_pragmas(sqlite_store: SqliteStore) -> None:
    settings = await sqlite_store.diagnostics()
    assert settings["journal_mode"] == "wal"
    assert settings["synchronous"] == "NORMAL"
    assert settings["schema_version"] == SCHEMA_VERSION == 4
    assert settings["busy_timeout_ms"] == 30_000


async def test_full_store_flushes_what_it_acknowledges_but_not_what_only_repeats(
    tmp_path: Path,
) -> None:
    """synchronous=FULL applies to accepts and receipts; claims never wait for the disk."""
    store = SqliteStore(tmp_path / "full.db", synchronous="FULL")
    await store.open()
    try:
        await store.accept([new_message()])
        assert (await store.diagnostics())["synchronous"] == "FULL"
        assert await store.claim(CONN, 10, T0 + 10)
        assert (await store.diagnostics())["synchronous"] == "NORMAL"
        await store.record_receipts([receipt("does-not-exist")])
        assert (await store.diagnostics())["synchronous"] == "FULL"
    finally:
        await store.close()


async def test_an_idle_webhook_poll_does_not_wait_for_the_write_lock(tmp_path: Path) -> None:
    """Dispatchers poll for due jobs; with none due they must not queue for the lock
    that accepts and submit reports need (here: another connection holds it)."""
    store = SqliteStore(tmp_path / "s.db", busy_timeout=5.0)
    await store.open()
    holder = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        assert await asyncio.wait_for(store.claim_webhooks(10, T0, 30), timeout=1.0) == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await store.close()


async def test_a_version_2_database_is_migrated_with_its_messages(tmp_path: Path) -> None:
    """Version 3 replaced the claim and expiry indexes: what a version 2 store held is
    still claimed, and expires, through the new ones."""
    path = tmp_path / "v2.db"
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("BEGIN")
        for script in MIGRATIONS[:2]:
            for statement in _statements(script):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute("COMMIT")
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        await store.accept([new_message(id="old-1"), new_message(id="old-2", expires_at=T0)])
        assert (await store.diagnostics())["schema_version"] == SCHEMA_VERSION
        assert [m.id for m in await store.claim(CONN, 10, T0 + 10)] == ["old-1"]
        assert await store.expire(T0 + 10, 0) == 1
        assert (await record(store, "old-2")).status is MessageStatus.EXPIRED
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert {"messages_claim", "messages_dispatching", "messages_expiry_queued"} <= indexes
    assert "messages_expiry" not in indexes
    assert "webhooks_finished" in indexes  # version 4


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        await SqliteStore(path).open()


async def test_open_twice_is_harmless_and_close_unlinks_the_wake_socket(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "w.db", synchronous="NORMAL")
    await store.open()
    await store.open()
    assert await store.wait_for_work(CONN, 0.01) is True  # first wait binds and answers
    path = socket_path(store.wake_dir, CONN)
    assert _exists(path)
    await store.close()
    assert not _exists(path)
    await store.close()


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore("x.db", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts"):
        SqliteStore("x.db", max_attempts=0)


# -- wake-ups ----------------------------------------------------------------------------


async def test_a_stale_socket_of_a_crashed_connector_is_taken_over(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "stale.db")
    path = socket_path(store.wake_dir, CONN)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(path)
    dead.close()  # the file stays, as after kill -9
    await store.open()
    try:
        await store.recover(CONN)
        router = SqliteStore(tmp_path / "stale.db")
        await router.open()
        await router.accept([_message()])
        assert await store.wait_for_work(CONN, 10) is True
        await router.close()
    finally:
        await store.close()


async def test_wake_ups_work_when_the_path_is_too_long_for_a_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    connector, router = SqliteStore(deep / "s.db"), SqliteStore(deep / "s.db")
    assert socket_path(connector.wake_dir, CONN).startswith("/tmp/smsmesh-wake-")
    await connector.open()
    await router.open()
    try:
        await connector.recover(CONN)
        await router.accept([_message()])
        assert await connector.wait_for_work(CONN, 10) is True
    finally:
        await router.close()
        await connector.close()


def test_socket_paths_never_escape_the_wake_directory(tmp_path: Path) -> None:
    for name in ("../../etc/passwd", "a/b", "UPPER", "x" * 300):
        path = socket_path(tmp_path, name)
        assert os.path.dirname(path) in (str(tmp_path),) or path.startswith("/tmp/smsmesh-wake-")
        assert "/" not in os.path.basename(path)[:-5]


# -- receipts: learning the SMSC's id convention ---------------------------------------------


async def test_ambiguous_ids_follow_the_convention_the_connection_showed(
    sqlite_store: SqliteStore,
) -> None:
    """An SMSC that answers in hex and reports in decimal: "10" in a receipt is 0x10's
    message, not the one whose hex id happens to read "10"... once that is known."""
    store = sqlite_store
    await submit_new(store, "1A2B3C4D")  # letters: only one reading can match
    [learned] = await store.record_receipts([receipt(str(0x1A2B3C4D))])
    assert learned.message_status is MessageStatus.DELIVERED

    hex_16 = await submit_new(store, "10")  # 0x10 = 16
    hex_10 = await submit_new(store, "A")  # 0xA = 10, reported as "10"
    [match] = await store.record_receipts([receipt("10")])
    assert match.message_id == hex_10
    [match] = await store.record_receipts([receipt("16")])
    assert match.message_id == hex_16
    assert (await record(store, hex_16)).status is MessageStatus.DELIVERED


async def test_a_receipt_plan_another_writer_made_stale_is_not_written(
    two_stores: tuple[SqliteStore, SqliteStore],
) -> None:
    """Receipts are worked out from a read before the write lock is taken. When another
    store's write lands in between (here it applies a receipt to one of the parts),
    the planned writes find that and the transaction is rolled back, whole. (An
    intermediate receipt: a final one would also be caught by the message's status.)"""
    first, second = two_stores
    taken = await submit_new(first, "x1")
    untouched = await submit_new(first, "x2")
    engine = first._engine
    batch = [receipt("x2"), receipt("x1", ReceiptState.ENROUTE)]
    plan = await first._run(engine._receipts.plan, engine.conn, batch)
    assert plan.later == []  # both decided from the read
    await second.record_receipts([receipt("x1", ReceiptState.ACCEPTED)])

    def write() -> None:
        with engine._write() as tx:
            engine._receipts.apply(tx, plan)

    with pytest.raises(StalePlan):
        await first._run(write)
    assert (await record(first, untouched)).events[-1].kind == "submitted"
    taken_events = (await record(first, taken)).events
    assert [e.detail["state"] for e in taken_events if e.kind == "receipt"] == ["accepted"]


@pytest.mark.parametrize("late_state", [ReceiptState.ENROUTE, ReceiptState.DELIVERED])
async def test_receipts_are_redone_in_the_lock_when_their_read_went_stale(
    two_stores: tuple[SqliteStore, SqliteStore],
    monkeypatch: pytest.MonkeyPatch,
    late_state: ReceiptState,
) -> None:
    """The same race through `record_receipts`: a second store expires one message right
    after the batch was read (the interleaving is forced by wrapping `plan`; both writes
    are the stores' own). The batch is redone inside the lock and ends as a serial
    order would: the expired message keeps its status, the other is delivered. (An
    intermediate receipt's part update notices, a final one's message update does.)"""
    first, second = two_stores
    expiring = await submit_new(first, "y1", expires_at=T0 + 60)
    other = await submit_new(first, "y2")
    correlator = first._engine._receipts
    plan = correlator.plan
    plans = []

    def plan_then_expire(
        conn: sqlite3.Connection, receipts: Sequence[Receipt], fresh: Any = None
    ) -> Any:
        plans.append(len(receipts))
        made = plan(conn, receipts, fresh)
        if len(plans) == 1:  # the second store's own thread does its write meanwhile
            assert second._executor is not None
            assert second._executor.submit(second._engine.expire, T0 + 120, 0).result() == 1
        return made

    monkeypatch.setattr(correlator, "plan", plan_then_expire)
    matches = await first.record_receipts([receipt("y1", late_state), receipt("y2")])
    assert plans == [2, 2]  # read again, inside the lock
    assert [(m.message_id, m.message_status) for m in matches] == [
        (expiring, MessageStatus.EXPIRED),
        (other, MessageStatus.DELIVERED),
    ]
    assert (await record(first, expiring)).events[-1].kind == "receipt"


async def test_a_receipt_kept_meanwhile_is_applied_before_the_one_written_with_its_submit(
    two_stores: tuple[SqliteStore, SqliteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh message's final receipt is written together with its submit (one write
    of each row) only while no receipt is kept for a later submit. A second store keeps
    one right after the batch was planned (interleaving forced by wrapping `plan`): the
    write notices, is rolled back and redone inside the lock, where the kept receipt
    is applied first and the batch's own after it."""
    first, second = two_stores
    message_id = await accept_one(first)
    assert await claim_ids(first) == [message_id]
    correlator = first._engine._receipts
    plan = correlator.plan
    finishing: list[bool] = []

    def plan_then_keep(
        conn: sqlite3.Connection, receipts: Sequence[Receipt], fresh: Any = None
    ) -> Any:
        made = plan(conn, receipts, fresh)
        finishing.append(fresh is not None and bool(fresh.finished))
        if len(finishing) == 1:  # the second store's own thread does its write meanwhile
            assert second._executor is not None
            early = [receipt("77", ReceiptState.ENROUTE, at=T0 + 19)]
            second._executor.submit(second._engine.record_receipts, early).result()
        return made

    monkeypatch.setattr(correlator, "plan", plan_then_keep)
    [match] = await first.record_outcomes(
        [submitted(message_id, "77")], [receipt("77", at=T0 + 21)]
    )
    assert finishing == [True, False]  # the redo plans the receipt after the submit
    assert (match.message_id, match.message_status) == (message_id, MessageStatus.DELIVERED)
    rec = await record(first, message_id)
    assert receipt_states(rec) == [("enroute", True), ("delivered", False)]
    assert kinds(rec)[-1] == "delivered"


async def test_submit_reports_are_redone_in_the_lock_when_their_read_went_stale(
    two_stores: tuple[SqliteStore, SqliteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Submit reports are also worked out before the write lock. A second store records
    the same message as submitted right after the first one's read (interleaving forced
    by wrapping `plan_submits`; both writes are the stores' own): the first one's write
    finds the message no longer open, is rolled back and redone inside the lock, where
    its report is ignored as stale. The other message of the batch is recorded once."""
    first, second = two_stores
    raced = await accept_one(first)
    other = await accept_one(first)
    assert sorted(await claim_ids(first)) == sorted([raced, other])
    plans: list[int] = []

    def plan_then_race(conn: sqlite3.Connection, reports: Sequence[SubmitReport]) -> Any:
        made = plan_submits(conn, reports)
        plans.append(len(made.later))
        if len(plans) == 1:  # the second store's own thread does its write meanwhile
            assert second._executor is not None
            race = [submitted(raced, "s-by-second")]
            second._executor.submit(second._engine.record_submits, race).result()
        return made

    monkeypatch.setattr(sqlite_engine, "plan_submits", plan_then_race)
    await first.record_submits([submitted(raced, "s1"), submitted(other, "s2")])
    # The first read planned both; the second store's write planned its own (the
    # patch is process-wide); the redo left the raced report to the checked path.
    assert plans == [0, 0, 1]
    assert kinds(await record(first, raced))[-2:] == ["submitted", "report_ignored"]
    other_record = await record(first, other)
    assert kinds(other_record).count("submitted") == 1
    assert other_record.status is MessageStatus.SUBMITTED
    [match] = await first.record_receipts([receipt("s-by-second")])
    assert match.message_id == raced
    [unmatched] = await first.record_receipts([receipt("s1")])
    assert unmatched.message_id is None


async def test_a_finalising_receipt_is_one_row_but_two_timeline_events(
    sqlite_store: SqliteStore,
) -> None:
    """The batched receipt path stores a receipt that finalises its message in the final
    status row (one insert fewer); the timeline reads exactly as the one-at-a-time path
    writes it, with two rows."""
    store = sqlite_store
    batched = await submit_new(store, "m1", callback_url=CALLBACK)
    one_by_one = await submit_new(store, "m2", callback_url=CALLBACK)
    await store.record_receipts([receipt("m1", ReceiptState.UNDELIVERABLE, error_code="034")])
    # Two receipts for one message in a batch take the one-at-a-time path.
    await store.record_receipts(
        [
            receipt("m2", ReceiptState.ACCEPTED),
            receipt("m2", ReceiptState.UNDELIVERABLE, error_code="034"),
        ]
    )

    def stored_rows(message_id: str) -> int:
        found = store._engine.conn.execute(
            "SELECT count(*) FROM events WHERE message_id = ?", (message_id,)
        ).fetchone()
        return int(found[0])

    fast, slow = await record(store, batched), await record(store, one_by_one)
    assert kinds(fast) == ["accepted", "claimed", "submitted", "receipt", "undeliverable"]
    assert await store._run(stored_rows, batched) == len(fast.events) - 1
    assert await store._run(stored_rows, one_by_one) == len(slow.events)
    # The same last two events either way (but for the smsc id), nothing internal shown.
    for rec, smsc_id in ((fast, "m1"), (slow, "m2")):
        receipt_event, final_event = rec.events[-2:]
        assert receipt_event.status is None
        assert receipt_event.detail == {
            "part": 1,
            "state": "undeliverable",
            "smsc_id": smsc_id,
            "error_code": "034",
        }
        assert final_event.status is MessageStatus.UNDELIVERABLE
        assert final_event.detail == {"reason": "part 1: undeliverable (err 034)"}
        assert receipt_event.at == final_event.at


# -- several processes on one file ----------------------------------------------------------


@pytest.mark.slow
async def test_processes_accepting_and_claiming_lose_and_duplicate_nothing(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "shared.db")  # nobody has created it: the processes race to
    marker = str(tmp_path / "producers-done")
    count = 1500
    claimers = [await run_worker("claim", db, CONN, marker, "60") for _ in range(2)]
    producers = [await run_worker("accept", db, CONN, p, str(count), "50") for p in "ab"]
    for proc in producers:
        assert (await finish(proc)).strip() == "done"
    _touch(marker)
    claimed = [line for proc in claimers for line in (await finish(proc)).split()]

    expected = {f"{p}-{n}" for p in "ab" for n in range(count)}
    assert len(claimed) == len(set(claimed)), "a message was claimed twice"
    assert set(claimed) == expected, "a message was lost"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        states = dict(conn.execute("SELECT state, count(*) FROM messages GROUP BY state"))
        assert states == {"dispatching": 2 * count}
        claims = conn.execute("SELECT count(*) FROM events WHERE kind = 'claimed'").fetchone()
        assert claims[0] == 2 * count


async def test_processes_opening_a_new_database_together_all_start(tmp_path: Path) -> None:
    """`smsmesh up` starts the router and every connector at once on a fresh file: each
    must get through creating it, switching it to WAL and migrating it. (Switching the
    journal mode can answer "database is locked" without waiting, busy_timeout or not.)"""
    for round_no in range(4):
        db = str(tmp_path / f"fresh-{round_no}.db")
        start_at = time.time() + 1.0  # the interpreters start first, then open at once
        workers = [await run_worker("open", db, CONN, str(start_at)) for _ in range(6)]
        for proc in workers:
            assert (await finish(proc)).strip() == "opened"


async def test_wait_for_work_wakes_on_accept_in_another_process(tmp_path: Path) -> None:
    db = tmp_path / "wake.db"
    connector = SqliteStore(db)
    await connector.open()
    try:
        await connector.recover(CONN)  # listening from here on
        assert await connector.wait_for_work(CONN, 0.2) is False
        started = time.monotonic()
        producer = await run_worker("accept", str(db), CONN, "w", "1", "1")
        assert await connector.wait_for_work(CONN, 30) is True
        woke_after = time.monotonic() - started
        assert [m.id for m in await connector.claim(CONN, 10, time.time())] == ["w-0"]
        await finish(producer)
        # Well under the 30 s timeout: the process start-up dominates this figure.
        assert woke_after < 10, woke_after
    finally:
        await connector.close()


@pytest.mark.slow
async def test_kill_9_mid_stream_leaves_a_consistent_database(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    batch = 50
    writer = await run_worker("writer", str(db), CONN, "k", str(batch))
    assert writer.stdout is not None
    committed = 0
    try:
        while committed < 10 * batch:
            line = await asyncio.wait_for(writer.stdout.readline(), 30)
            assert line, (await writer.stderr.read()).decode() if writer.stderr else ""
            committed = int(line.split()[1])
    finally:
        writer.send_signal(signal.SIGKILL)
        await asyncio.wait_for(writer.wait(), 30)
    assert writer.returncode == -signal.SIGKILL

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        accepted = conn.execute("SELECT count(*) FROM events WHERE kind = 'accepted'").fetchone()
    assert stored >= committed  # everything reported as committed is there
    assert stored % batch == 0  # and no batch is there in part
    assert accepted[0] == stored  # every message has its timeline entry

    store = SqliteStore(db)
    await store.open()
    try:
        claimed = await store.claim(CONN, stored + 10, time.time())
        assert len(claimed) == stored
        assert {m.id for m in claimed} == {f"k-{n}" for n in range(stored)}
    finally:
        await store.close()


def _message() -> NewMessage:
    """A message claimable by wall-clock time (the conformance suite uses virtual time)."""
    return new_message(expires_at=time.time() + 3600, created=time.time())


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _touch(path: str) -> None:
    Path(path).touch()

"""PostgreSQL-only behaviour: URLs and secrets, several OS processes on one database,
LISTEN/NOTIFY wake-ups that survive a killed session, migrations, retention, timeouts,
and a database restart in the middle of traffic.

The URL tests run everywhere; the rest need `SMSMESH_TEST_POSTGRES_URL` (see
hack/postgres.sh) and each works in a schema of its own. The restart test also needs
the cluster to be the one hack/postgres.sh manages, since it stops and starts it.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from storekit import (
    CALLBACK,
    CONN,
    POSTGRES_SKIP_REASON,
    POSTGRES_URL,
    T0,
    Backend,
    accept_one,
    claim_ids,
    finish,
    new_message,
    receipt,
    record,
    run_worker,
    submit_new,
    submitted,
    with_query,
)

from smsmesh.model import MessageStatus
from smsmesh.store import Store, StoreError, migrate, open_store

asyncpg = pytest.importorskip("asyncpg")

from smsmesh.store import postgres_schema  # noqa: E402 (needs asyncpg)
from smsmesh.store.postgres import PostgresStore  # noqa: E402
from smsmesh.store.postgres import migrate as migrate_postgres  # noqa: E402
from smsmesh.store.postgres_config import redact_url  # noqa: E402
from smsmesh.store.postgres_listen import channel_name  # noqa: E402

HACK = Path(__file__).resolve().parents[2] / "hack" / "postgres.sh"
SECRET = "s3cr3t-pw"

needs_postgres = pytest.mark.skipif(POSTGRES_URL is None, reason=POSTGRES_SKIP_REASON)


# -- URLs and secrets (no server needed) --------------------------------------------------


def test_postgres_urls_open_the_postgres_store() -> None:
    for url in (
        "postgresql://u:pw@db/smsmesh",
        "postgres://u@db:5433/smsmesh",
        "POSTGRESQL://db/x",
    ):
        assert isinstance(open_store(url), PostgresStore)


def test_url_options_and_keyword_overrides() -> None:
    store = open_store(
        "postgresql://u:pw@db/x?pool_max=7&pool_min=2&schema=tenant_a&statement_timeout=4"
        "&connect_timeout=3&sslmode=verify-full&sslrootcert=/ca.crt&application_name=r1",
        max_attempts=9,
    )
    assert isinstance(store, PostgresStore)
    s = store.settings
    assert (s.pool_min, s.pool_max, s.schema, s.max_attempts) == (2, 7, "tenant_a", 9)
    assert (s.statement_timeout, s.connect_timeout) == (4.0, 3.0)
    assert s.command_timeout > s.statement_timeout  # the client waits for the server's verdict
    # libpq parameters stay in the DSN for asyncpg; smsmesh's own are taken out.
    assert "sslmode=verify-full" in s.dsn
    assert "sslrootcert=%2Fca.crt" in s.dsn
    assert "pool_max" not in s.dsn
    assert "schema" not in s.dsn
    assert s.server_settings == (("application_name", "r1"),)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("postgresql://u:pw@db/x?pool_max=0", "pool_max"),
        ("postgresql://u:pw@db/x?pool_max=many", "pool_max"),
        ("postgresql://u:pw@db/x?pool_min=5&pool_max=2", "pool_min"),
        ("postgresql://u:pw@db/x?schema=Bad-Name", "schema"),
        ("postgresql://u:pw@db/x?statement_timeout=0", "statement_timeout"),
        ("postgresql://u:pw@db/x?max_attempts=0", "max_attempts"),
        ("postgresql://u:pw@db/x#frag", "fragment"),
    ],
)
def test_bad_postgres_urls_are_refused_clearly(url: str, complaint: str) -> None:
    with pytest.raises(StoreError, match=complaint) as info:
        open_store(url)
    assert "pw" not in str(info.value)


def test_unknown_keyword_option_is_refused() -> None:
    with pytest.raises(StoreError, match="synchronous"):
        open_store("postgresql://db/x", synchronous="FULL")


def test_redaction_hides_every_password() -> None:
    url = f"postgresql://smsmesh:{SECRET}@db:5432/x?password={SECRET}&sslmode=require"
    redacted = redact_url(url)
    assert SECRET not in redacted
    assert redacted.startswith("postgresql://smsmesh:***@db:5432/x?")
    assert "sslmode=require" in redacted
    assert redact_url("postgresql://db/x") == "postgresql://db/x"
    assert SECRET not in repr(open_store(url))


async def test_unreachable_database_is_a_prompt_store_error_without_the_password() -> None:
    store = open_store(f"postgresql://smsmesh:{SECRET}@127.0.0.1:1/x?connect_timeout=5")
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await store.open()
    assert time.monotonic() - started < 10
    assert SECRET not in str(info.value)
    assert "127.0.0.1" in str(info.value)
    with pytest.raises(StoreError, match="not open"):
        await store.claim(CONN, 1, T0)
    with pytest.raises(StoreError):
        await migrate(f"postgresql://smsmesh:{SECRET}@127.0.0.1:1/x?connect_timeout=5")


def test_channel_names_fit_and_differ() -> None:
    long_a, long_b = "a" * 63, "a" * 62 + "b"
    for schema, connection in (("public", "conn-a"), ("t_x", long_a), ("s" * 63, long_b)):
        assert len(channel_name(schema, connection).encode()) <= 63
    assert channel_name("public", long_a) != channel_name("public", long_b)
    assert channel_name("one", "conn-a") != channel_name("two", "conn-a")


# -- with a database ----------------------------------------------------------------------


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[Backend]:
    if POSTGRES_URL is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    backend = Backend("postgres", tmp_path)
    yield backend
    await backend.close_all()


async def admin() -> Any:
    assert POSTGRES_URL is not None
    return await asyncpg.connect(POSTGRES_URL, timeout=10)


async def in_schema(backend: Backend, query: str, *args: Any) -> Any:
    """Run one query in the test's schema on a session of our own."""
    conn = await admin()
    try:
        await conn.execute(f'SET search_path = "{backend.schema}"')
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


def pg_store(store: Store) -> PostgresStore:
    assert isinstance(store, PostgresStore)
    return store


async def test_processes_accepting_and_claiming_lose_and_duplicate_nothing(
    pg: Backend, tmp_path: Path
) -> None:
    await pg.open()  # create the schema before the processes race for it
    marker = str(tmp_path / "producers-done")
    count = 600
    claimers = [await run_worker("claim", pg.url, CONN, marker, "60") for _ in range(3)]
    producers = [await run_worker("accept", pg.url, CONN, p, str(count), "50") for p in "ab"]
    for proc in producers:
        assert (await finish(proc)).strip() == "done"
    await asyncio.to_thread(Path(marker).touch)
    claimed = [line for proc in claimers for line in (await finish(proc)).split()]

    assert len(claimed) == len(set(claimed)), "a message was claimed twice"
    assert set(claimed) == {f"{p}-{n}" for p in "ab" for n in range(count)}
    assert await in_schema(pg, "SELECT count(*) FROM messages WHERE state = 'dispatching'") == (
        2 * count
    )
    assert await in_schema(pg, "SELECT count(*) FROM events WHERE kind = 'claimed'") == 2 * count


async def test_wait_for_work_wakes_on_accept_in_another_process(pg: Backend) -> None:
    connector = await pg.open()
    await connector.recover(CONN)  # listening from here on
    assert await connector.wait_for_work(CONN, 0.2) is False
    producer = await run_worker("accept", pg.url, CONN, "w", "1", "1")
    started = time.monotonic()
    assert await connector.wait_for_work(CONN, 30) is True
    woke_after = time.monotonic() - started
    assert [m.id for m in await connector.claim(CONN, 10, time.time())] == ["w-0"]
    await finish(producer)
    assert woke_after < 10, woke_after  # process start-up dominates; the timeout is 30


async def test_listener_reconnects_after_its_session_is_killed(pg: Backend) -> None:
    connector, router = pg_store(await pg.open()), await pg.open()
    await connector.recover(CONN)
    before = (await connector.diagnostics())["listener_pid"]
    assert isinstance(before, int)
    conn = await admin()
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", before) is True
    finally:
        await conn.close()
    # The reconnect itself is a wake-up: notifications sent meanwhile were lost.
    assert await connector.wait_for_work(CONN, 15) is True
    info = await connector.diagnostics()
    assert info["listener_reconnects"] == 1
    assert info["listener_pid"] not in (None, before)
    # And the new session listens again: a later accept wakes the connector.
    assert await connector.wait_for_work(CONN, 0.2) is False
    waiter = asyncio.create_task(connector.wait_for_work(CONN, 15))
    message_id = await accept_one(router)
    assert await asyncio.wait_for(waiter, 20) is True
    assert await claim_ids(connector) == [message_id]


async def test_close_ends_a_pending_wait_at_once(pg: Backend) -> None:
    store = await pg.open()
    await store.recover(CONN)
    waiter = asyncio.create_task(store.wait_for_work(CONN, 60))
    await asyncio.sleep(0)  # let it start waiting (if it has not, it fails fast below)
    started = time.monotonic()
    await store.close()
    try:
        woke = await asyncio.wait_for(waiter, 10)
    except StoreError:
        woke = True  # it had not started waiting yet: a closed store says so
    assert woke is True
    assert time.monotonic() - started < 5
    with pytest.raises(StoreError, match="not open"):
        await store.wait_for_work(CONN, 1)


async def test_receipts_correlate_whichever_handle_recorded_the_submit(pg: Backend) -> None:
    first, second = await pg.open(), await pg.open()
    message_id = await submit_new(first, "4D2", callback_url=CALLBACK)
    [match] = await second.record_receipts([receipt("1234")])  # 0x4D2, in decimal
    assert (match.message_id, match.message_status) == (message_id, MessageStatus.DELIVERED)


async def test_a_receipt_racing_its_submit_is_never_lost(pg: Backend) -> None:
    """Submit and receipt committed at the same moment by two sessions: the advisory lock
    makes one see the other's work, so the receipt is applied either way."""
    submitter, receiver = await pg.open(), await pg.open()
    ids = [r.message_id for r in await submitter.accept([new_message() for _ in range(40)])]
    assert sorted(await claim_ids(submitter)) == sorted(ids)
    for n, message_id in enumerate(ids):
        sid = f"{0xA000 + n:X}"
        await asyncio.gather(
            submitter.record_submits([submitted(message_id, sid)]),
            receiver.record_receipts([receipt(str(0xA000 + n))]),
        )
    statuses = {(await record(submitter, i)).status for i in ids}
    assert statuses == {MessageStatus.DELIVERED}
    assert await in_schema(pg, "SELECT count(*) FROM orphan_receipts") == 0


async def test_pool_size_and_settings_come_from_the_url(pg: Backend) -> None:
    assert POSTGRES_URL is not None
    store = open_store(with_query(pg.url, pool_max="3", statement_timeout="7"))
    await store.open()
    try:
        info = await pg_store(store).diagnostics()
        assert info["pool_max"] == 3
        assert info["statement_timeout"] == "7s"
        assert info["schema"] == pg.schema
        assert info["schema_version"] == info["schema_version_expected"]
        assert "smsmesh:smsmesh@" not in info["url"]
    finally:
        await store.close()


async def test_a_blocked_statement_ends_in_a_store_error(pg: Backend) -> None:
    store = await pg.open(statement_timeout=0.5)
    conn = await admin()
    try:
        async with conn.transaction():
            await conn.execute(f'LOCK TABLE "{pg.schema}".messages IN ACCESS EXCLUSIVE MODE')
            started = time.monotonic()
            with pytest.raises(StoreError, match="timeout"):
                await store.accept([new_message()])
            assert time.monotonic() - started < 5
    finally:
        await conn.close()
    await accept_one(store)  # the same pool works again once the lock is gone


# -- migrations ----------------------------------------------------------------------------


async def test_concurrent_migrations_apply_once(pg: Backend) -> None:
    results = await asyncio.gather(*(migrate_postgres(pg.url) for _ in range(6)))
    names = [m.name for m in postgres_schema.MIGRATIONS]
    assert names[:3] == ["0001_initial", "0002_search", "0003_queue_vacuum"]
    assert sorted(results) == [[]] * 5 + [names]
    assert await migrate(pg.url) == []  # the generic entry point, idempotent
    assert await in_schema(pg, "SELECT count(*) FROM schema_migrations") == len(names)
    stores = await asyncio.gather(*(pg.open() for _ in range(4)))  # opens race as well
    assert [pg_store(s).applied_migrations for s in stores] == [[]] * 4


async def test_the_queue_tables_are_vacuumed_by_a_fixed_count_of_changes(pg: Backend) -> None:
    await migrate_postgres(pg.url)
    for table in ("messages", "webhooks"):
        options = await in_schema(
            pg, "SELECT reloptions FROM pg_class WHERE oid = to_regclass($1)", table
        )
        assert "autovacuum_vacuum_scale_factor=0" in options, table
        assert "autovacuum_vacuum_threshold=20000" in options, table


async def test_a_failing_migration_changes_nothing(
    pg: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    await migrate_postgres(pg.url)
    current = postgres_schema.SCHEMA_VERSION
    broken = postgres_schema.Migration(
        current + 1, "broken", "CREATE TABLE half_done (x int); SELECT * FROM no_such_table;"
    )
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", (*postgres_schema.MIGRATIONS, broken))
    with pytest.raises(StoreError, match="no_such_table"):
        await migrate_postgres(pg.url)
    assert await in_schema(pg, "SELECT max(version) FROM schema_migrations") == current
    assert await in_schema(pg, "SELECT to_regclass('half_done')::text") is None


async def test_a_newer_schema_is_refused(pg: Backend) -> None:
    await migrate_postgres(pg.url)
    await in_schema(pg, "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')")
    with pytest.raises(StoreError, match="upgrade smsmesh") as info:
        await pg.open()
    assert "smsmesh:smsmesh@" not in str(info.value)


# -- the cluster hack/postgres.sh manages: TLS, restart ------------------------------------


def _hack_says(command: str) -> str | None:
    """What `hack/postgres.sh <command>` prints, or None if it fails."""
    try:
        done = subprocess.run(
            [str(HACK), command], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _managed_url() -> str | None:
    """The URL of the cluster hack/postgres.sh runs, if it is running."""
    return _hack_says("status")


def _skip_unless_managed() -> None:
    if POSTGRES_URL is None or _managed_url() != POSTGRES_URL.partition("?")[0]:
        pytest.skip("the test database is not the cluster hack/postgres.sh manages")


async def test_tls_verify_full_against_the_clusters_ca(pg: Backend) -> None:
    _skip_unless_managed()
    ca = _hack_says("ca")
    if ca is None:
        pytest.skip("the managed cluster has no TLS (no openssl?)")
    verified = open_store(with_query(pg.url, sslmode="verify-full", sslrootcert=ca))
    plain = open_store(with_query(pg.url, sslmode="disable"))
    for store in (verified, plain):
        await store.open()
    try:
        assert (await pg_store(verified).diagnostics())["ssl"] is True
        assert (await pg_store(plain).diagnostics())["ssl"] is False
        await accept_one(verified)
        assert await plain.queue_depths() == {CONN: 1}
    finally:
        await verified.close()
        await plain.close()
    # CAs that did not sign the server's certificate (the system's): refused, clearly.
    strangers = "/etc/ssl/certs/ca-certificates.crt"
    if await asyncio.to_thread(Path(strangers).exists):
        wrong = open_store(with_query(pg.url, sslmode="verify-full", sslrootcert=strangers))
        with pytest.raises(StoreError, match="certificate verify failed"):
            await wrong.open()


async def _hack(command: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(HACK), command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()


@pytest.mark.slow
async def test_a_restart_mid_stream_fails_calls_fast_and_recovers(pg: Backend) -> None:
    _skip_unless_managed()
    router = await pg.open(statement_timeout=2, connect_timeout=2)
    connector = pg_store(await pg.open(statement_timeout=2, connect_timeout=2))
    await connector.recover(CONN)
    stop = asyncio.Event()
    outcomes: list[str] = []

    async def traffic() -> None:
        # Calls keep coming while the database goes away: each ends, one way or the other.
        while not stop.is_set():
            try:
                await asyncio.wait_for(router.accept([new_message()]), 30)
                outcomes.append("ok")
            except StoreError:
                outcomes.append("error")
                await asyncio.sleep(0.05)  # pacing while down, not synchronisation

    stream = asyncio.create_task(traffic())
    try:
        await _hack("stop")
        started = time.monotonic()
        with pytest.raises(StoreError):
            await connector.claim(CONN, 10, T0 + 10)
        with pytest.raises(StoreError):
            await router.get_message("anything")
        assert time.monotonic() - started < 10
        assert await connector.wait_for_work(CONN, 0.1) in (True, False)  # no exception
    finally:
        await _hack("start")
        stop.set()
        await asyncio.wait_for(stream, 60)
    assert "error" in outcomes

    message_id = await accept_one(router)  # the first call after the restart succeeds
    assert await connector.wait_for_work(CONN, 20) is True
    assert message_id in await claim_ids(connector)
    assert (await connector.diagnostics())["listener_reconnects"] >= 1
    waiter = asyncio.create_task(connector.wait_for_work(CONN, 20))
    second = await accept_one(router)
    assert await asyncio.wait_for(waiter, 30) is True
    assert await claim_ids(connector) == [second]

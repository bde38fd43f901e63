"""The connector under SMSC faults: throttling, refusals, failover, retries, dropped binds."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

from connkit import (
    ScriptedSmsc,
    accept,
    make_settings,
    new_message,
    records,
    running,
    wait_status,
    wait_until,
)

from smsmesh.model import MessageStatus
from smsmesh.simulator import Simulator
from smsmesh.smpp.pdu import CommandStatus, SubmitSm
from smsmesh.store import SqliteStore

S = CommandStatus
DELIVERED = frozenset({MessageStatus.DELIVERED})
SUBMITTED = frozenset({MessageStatus.SUBMITTED})


async def test_throttled_parts_are_resent_in_place_and_the_limiter_slows_down(
    sim: Simulator, store: SqliteStore, db: Path
) -> None:
    sim.set_behaviour(throttle_tps=100.0)
    ids = await accept(store, [new_message(destination=f"3161300{i:04d}") for i in range(120)])
    async with running(make_settings(sim.port, db, window=20)) as conn:
        recs = await wait_status(store, ids, DELIVERED, timeout=20)
        connector = conn.connector
        assert sim.counters.throttled > 0
        assert connector.state.counters.throttled == sim.counters.throttled
        assert connector.limiter.rate is not None  # unlimited before; slowed down now
        assert connector.limiter.throttle_events >= 1
        # Throttling is handled in place: nothing went back to the queue.
        assert connector.state.counters.requeued == 0
    assert sim.counters.accepted == 120  # each message accepted exactly once
    assert all(r.attempts == 1 for r in recs)
    throttled = [r for r in recs if any(e.kind == "throttled" for e in r.events)]
    assert throttled, "a throttled message has a timeline event"


async def test_permanent_refusal_rejects_the_message(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    def decide(pdu: SubmitSm) -> int | None:
        return S.ESME_RINVDSTADR if pdu.destination_addr.endswith("999") else None

    scripted.decide = decide
    good, bad = new_message(destination="31612345678"), new_message(destination="31612345999")
    ids = await accept(store, [good, bad])
    async with running(make_settings(scripted.port, db)):
        ok, rejected = await wait_status(
            store, ids, frozenset({MessageStatus.SUBMITTED, MessageStatus.REJECTED})
        )
    assert ok.status is MessageStatus.SUBMITTED
    assert rejected.status is MessageStatus.REJECTED
    assert rejected.attempts == 1
    assert len(scripted.submits) == 2  # a refusal is final: not retried


async def test_failover_moves_the_message_to_the_next_target(
    scripted: ScriptedSmsc, sim: Simulator, store: SqliteStore, db: Path
) -> None:
    scripted.decide = lambda pdu: S.ESME_RINVSRCADR  # this carrier refuses our sender
    both = new_message("c1", targets=("c1", "c2"))
    alone = new_message("c1", targets=("c1",))
    ids = await accept(store, [both, alone])
    first = make_settings(scripted.port, db, name="c1")
    second = make_settings(sim.port, db, name="c2")
    async with running(first), running(second):
        delivered, failed = await wait_status(store, ids)
    assert delivered.status is MessageStatus.DELIVERED
    assert delivered.connection == "c2"
    assert [e.detail.get("failover_to") for e in delivered.events if e.kind == "requeued"] == ["c2"]
    assert failed.status is MessageStatus.FAILED  # no target left after c1
    assert len(sim.received) == 1


async def test_transient_error_is_retried_after_the_retry_delay(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    answers = collections.deque([S.ESME_RSYSERR])
    scripted.decide = lambda pdu: answers.popleft() if answers else None
    (message_id,) = await accept(store, [new_message()])
    async with running(make_settings(scripted.port, db, retry_delay=0.4)) as conn:
        (rec,) = await wait_status(store, [message_id], SUBMITTED)
        assert conn.connector.state.counters.requeued == 1
    assert rec.attempts == 2
    first, second = scripted.submit_times
    assert second - first >= 0.39
    requeued = next(e for e in rec.events if e.kind == "requeued")
    assert requeued.detail["retry_at"] - requeued.at >= 0.39


async def test_session_dropped_mid_window_loses_nothing(
    sim: Simulator, store: SqliteStore, db: Path
) -> None:
    count, window = 400, 20
    ids = await accept(store, [new_message(destination=f"3161400{i:04d}") for i in range(count)])
    async with running(make_settings(sim.port, db, window=window)) as conn:
        await sim.wait_submits(150)
        assert sim.drop_connections() == 1
        recs = await wait_status(store, ids, DELIVERED, timeout=20)
        assert conn.connector.state.counters.reconnects >= 1
    assert sim.counters.binds >= 2
    per_destination = collections.Counter(r.destination for r in sim.received if r.message_id)
    duplicates = sum(n - 1 for n in per_destination.values())
    assert set(per_destination) == {f"3161400{i:04d}" for i in range(count)}
    assert duplicates <= window
    assert all(len(r.smsc_message_ids) == 1 for r in recs)


async def test_a_drop_duplicates_at_most_the_unanswered_window(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    count, window = 50, 10
    ids = await accept(store, [new_message(destination=f"3161500{i:04d}") for i in range(count)])
    hold = asyncio.Event()
    scripted.hold = hold  # the SMSC takes submits but answers none
    async with running(make_settings(scripted.port, db, window=window)):
        await wait_until(lambda: scripted.held >= window)
        assert len(scripted.submits) == window  # the window is never exceeded
        scripted.hold = None
        scripted.sessions[0].abort()  # every answer is lost with the connection
        hold.set()
        await wait_status(store, ids, SUBMITTED, timeout=20)
    per_destination = collections.Counter(p.destination_addr for p in scripted.submits)
    assert len(per_destination) == count
    assert sum(n - 1 for n in per_destination.values()) == window


async def test_bad_password_backs_off_retries_and_reports(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    settings = make_settings(
        scripted.port, db, password="wrong", reconnect_initial=0.1, reconnect_max=0.4
    )
    async with running(settings, bound=False) as conn:
        counters = conn.connector.state.counters
        started = time.monotonic()
        await wait_until(lambda: counters.bind_failures >= 3, timeout=5)
        elapsed = time.monotonic() - started
        state = (await store.connection_states())["c1"]

        async def published_error() -> bool:
            s = (await store.connection_states()).get("c1")
            return s is not None and s.last_error is not None

        await wait_until(published_error)
        state = (await store.connection_states())["c1"]
    assert elapsed >= 0.1  # not a tight loop: it waited between attempts
    assert state.bound is False
    assert state.last_error is not None
    assert "ESME_RINVPASWD" in state.last_error
    assert "wrong" not in state.last_error
    assert scripted.sessions == []


async def test_requeued_message_keeps_attempt_count(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    scripted.decide = lambda pdu: S.ESME_RSYSERR  # never accepted
    (message_id,) = await accept(store, [new_message()])
    settings = make_settings(scripted.port, db, retry_delay=0.05, max_attempts=3)
    async with running(settings):
        (rec,) = await wait_status(store, [message_id])
    assert rec.status is MessageStatus.FAILED
    assert rec.attempts == 3
    assert len(scripted.submits) == 3
    (final,) = await records(store, [message_id])
    assert final.status is MessageStatus.FAILED


async def test_missing_response_requeues_and_resends(
    scripted: ScriptedSmsc, store: SqliteStore, db: Path
) -> None:
    hold = asyncio.Event()
    scripted.hold = hold  # the first submit is never answered in time
    (message_id,) = await accept(store, [new_message()])
    async with running(make_settings(scripted.port, db, response_timeout=0.2)) as conn:
        await wait_until(lambda: scripted.held == 1)
        scripted.hold = None  # later submits are answered at once
        (rec,) = await wait_status(store, [message_id], SUBMITTED)
        assert conn.connector.state.counters.requeued == 1
        hold.set()
    assert rec.attempts == 2
    assert len(scripted.submits) == 2  # the SMSC may have taken it twice: a duplicate
    requeued = next(e for e in rec.events if e.kind == "requeued")
    assert "no submit_sm_resp" in requeued.detail["error"]

"""Store -> connector -> SMSC -> receipt -> store, over real sockets and a real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

from connkit import accept, make_settings, new_message, running, wait_status, wait_until

from smsmesh.model import MessageStatus
from smsmesh.simulator import Simulator
from smsmesh.smpp.text import parse_concat
from smsmesh.store import SqliteStore

DELIVERED = frozenset({MessageStatus.DELIVERED})


async def test_messages_end_delivered_with_the_smsc_ids(
    sim: Simulator, store: SqliteStore, db: Path
) -> None:
    messages = [new_message(destination=f"3161200{i:04d}", text=f"hello {i}") for i in range(60)]
    ids = await accept(store, messages)
    async with running(make_settings(sim.port, db, window=10)) as conn:
        recs = await wait_status(store, ids, DELIVERED)
        state = (await store.connection_states())["c1"]
        assert state.bound
        assert state.window_size == 10
        assert state.last_error is None
        counters = conn.connector.state.counters
        assert counters.submitted == 60
        assert counters.receipts == 60
        assert counters.requeued == counters.rejected == 0
        assert await conn.shutdown() == 0
    sent = {r.destination: r for r in sim.received}
    assert len(sim.received) == 60  # nothing sent twice
    for message, rec in zip(messages, recs, strict=True):
        submit = sent[message.destination]
        assert rec.smsc_message_ids == (submit.message_id,)
        assert submit.text == message.text
        assert submit.registered_delivery == 1
        assert submit.source == "smsmesh"
    final = (await store.connection_states())["c1"]
    assert final.bound is False


async def test_long_ucs2_text_goes_as_numbered_udh_parts(
    sim: Simulator, store: SqliteStore, db: Path
) -> None:
    text = "Привет, мир! " * 20  # 260 UCS-2 characters: 4 parts of at most 67
    (message_id,) = await accept(store, [new_message(text=text)])
    async with running(make_settings(sim.port, db)):
        (rec,) = await wait_status(store, [message_id], DELIVERED)
    parts = list(sim.received)
    assert len(parts) == 4
    assert len(rec.smsc_message_ids) == 4
    assert rec.smsc_message_ids == tuple(p.message_id for p in parts)
    infos = [parse_concat(p.short_message, True)[0] for p in parts]
    assert all(p.esm_class & 0x40 and p.data_coding == 0x08 for p in parts)
    assert [(i.part, i.total) for i in infos if i] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len({i.reference for i in infos if i}) == 1
    assert "".join(p.text for p in parts) == text


async def test_sar_mode_sends_sar_tlvs(sim: Simulator, store: SqliteStore, db: Path) -> None:
    from smsmesh.smpp.text import SplitMode

    text = "x" * 200  # GSM7: 2 parts of at most 153
    (message_id,) = await accept(store, [new_message(text=text)])
    async with running(make_settings(sim.port, db, long_messages=SplitMode.SAR)):
        await wait_status(store, [message_id], DELIVERED)
    parts = list(sim.received)
    assert [p.esm_class & 0x40 for p in parts] == [0, 0]  # no UDH in SAR mode
    assert [(p.concat.part, p.concat.total) for p in parts if p.concat] == [(1, 2), (2, 2)]
    assert "".join(p.text for p in parts) == text


async def test_state_is_published_periodically(
    sim: Simulator, store: SqliteStore, db: Path
) -> None:
    async with running(make_settings(sim.port, db, state_interval=0.1, tps=25.0)):
        first = (await store.connection_states())["c1"]

        async def newer() -> bool:
            return (await store.connection_states())["c1"].updated_at > first.updated_at

        await wait_until(newer, timeout=2.0)
        state = (await store.connection_states())["c1"]
        assert state.bound
        assert state.tps_limit == 25.0
        assert time.time() - state.updated_at < 2.0

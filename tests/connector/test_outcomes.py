"""The outcome writer: submit reports and the receipts behind them, written together.

On the real SQLite store; `GatedStore` only counts its `record_outcomes` calls and can
hold one at a gate or make it fail, to show how the writer batches and retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from connkit import WAIT, accept, new_message, records

from smsmesh.model import (
    MessageStatus,
    Receipt,
    ReceiptMatch,
    ReceiptState,
    SubmitOutcome,
    SubmitReport,
)
from smsmesh.store import SqliteStore, StoreError
from smsmesh_connector.outcomes import RECEIPT_BACKLOG_BATCH, RECEIPT_BATCH, OutcomeWriter


class GatedStore(SqliteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[tuple[int, int]] = []  # (reports, receipts) per call
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.failures = 0

    async def record_outcomes(
        self, reports: Sequence[SubmitReport], receipts: Sequence[Receipt]
    ) -> list[ReceiptMatch]:
        self.calls.append((len(reports), len(receipts)))
        self.entered.set()
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise StoreError("disk on fire")
        return await super().record_outcomes(reports, receipts)


class Answers:
    """Receipt completions, as the inbound handler gets them."""

    def __init__(self) -> None:
        self.results: list[tuple[ReceiptMatch | None, BaseException | None]] = []
        self.changed = asyncio.Event()

    def __call__(self, match: ReceiptMatch | None, error: BaseException | None) -> None:
        self.results.append((match, error))
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.results) < count:
                self.changed.clear()
                await self.changed.wait()


async def claimed(store: SqliteStore, count: int) -> list[str]:
    ids = await accept(store, [new_message() for _ in range(count)])
    got = await store.claim("c1", count, time.time() + 1)
    assert sorted(m.id for m in got) == sorted(ids)
    return ids


def submitted(message_id: str, smsc_id: str) -> SubmitReport:
    return SubmitReport(message_id, "c1", time.time(), SubmitOutcome.SUBMITTED, (smsc_id,))


def delivered(smsc_id: str) -> Receipt:
    return Receipt("c1", smsc_id, ReceiptState.DELIVERED, time.time())


async def test_receipts_share_the_write_of_the_reports_before_them(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "db")
    await store.open()
    ids = await claimed(store, 3)
    written: list[SubmitReport] = []
    answers = Answers()
    writer = OutcomeWriter(store, written.extend, name="c1")
    for n, message_id in enumerate(ids):
        writer.report(submitted(message_id, f"s{n}"))
        writer.receipt(delivered(f"s{n}"), answers)
    await asyncio.wait_for(writer.drain(), WAIT)
    assert store.calls == [(3, 3)]  # one transaction for all six
    assert [r.message_id for r in written] == ids
    assert [error for _, error in answers.results] == [None] * 3
    matches = [match for match, _ in answers.results]
    assert [m.message_id for m in matches if m] == ids
    assert {m.message_status for m in matches if m} == {MessageStatus.DELIVERED}
    for record in await records(store, ids):
        assert record.status is MessageStatus.DELIVERED
        kinds = [e.kind for e in record.events]
        assert kinds[-3:] == ["submitted", "receipt", "delivered"]
        assert "arrived_before_submit" not in record.events[-2].detail  # not an orphan
    await writer.close()
    await store.close()


async def test_short_queues_take_small_batches_and_a_backlog_bigger_ones(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "db")
    await store.open()
    answers = Answers()
    writer = OutcomeWriter(store, lambda reports: None, name="c1")

    async def held_then(count: int) -> list[tuple[int, int]]:
        store.calls.clear()
        store.gate.clear()
        store.entered.clear()
        writer.receipt(delivered("first"), answers)
        await asyncio.wait_for(store.entered.wait(), WAIT)  # held in the store
        for n in range(count):
            writer.receipt(delivered(f"r{n}"), answers)
        store.gate.set()
        await asyncio.wait_for(writer.drain(), WAIT)
        return store.calls

    few = 2 * RECEIPT_BATCH - 1  # at most twice the batch waiting: batches of RECEIPT_BATCH
    assert await held_then(few) == [(0, 1), (0, RECEIPT_BATCH), (0, few - RECEIPT_BATCH)]
    many = RECEIPT_BACKLOG_BATCH + 3  # a backlog: batches of up to RECEIPT_BACKLOG_BATCH
    assert await held_then(many) == [(0, 1), (0, RECEIPT_BACKLOG_BATCH), (0, 3)]
    assert len(answers.results) == 2 + few + many
    assert all(error is None for _, error in answers.results)
    await writer.close()
    await store.close()


async def test_a_failed_write_refuses_its_receipts_and_keeps_its_reports(tmp_path: Path) -> None:
    """The SMSC is asked to resend the receipts (their errors); the reports, which have
    nobody to resend them, are written once the store is back."""
    store = GatedStore(tmp_path / "db")
    await store.open()
    ids = await claimed(store, 2)
    written: list[SubmitReport] = []
    answers = Answers()
    writer = OutcomeWriter(store, written.extend, name="c1", retry_initial=0.001)
    store.failures = 2
    for n, message_id in enumerate(ids):
        writer.report(submitted(message_id, f"s{n}"))
        writer.receipt(delivered(f"s{n}"), answers)
    await asyncio.wait_for(writer.drain(), WAIT)
    assert store.calls == [(2, 2), (2, 0), (2, 0)]
    assert writer.failures == 2
    assert [r.message_id for r in written] == ids
    assert all(match is None and isinstance(error, StoreError) for match, error in answers.results)
    recs = await records(store, ids)
    assert {r.status for r in recs} == {MessageStatus.SUBMITTED}
    # The SMSC sends them again: now they are stored.
    for n in range(len(ids)):
        writer.receipt(delivered(f"s{n}"), answers)
    await answers.wait_for(4)
    assert [m.message_id for m, _ in answers.results[2:] if m] == ids
    await writer.close()
    await store.close()


async def test_a_report_the_store_refuses_is_dropped_not_retried_for_ever(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "db")
    await store.open()
    good, bad = await claimed(store, 2)
    written: list[SubmitReport] = []
    answers = Answers()
    writer = OutcomeWriter(store, written.extend, name="c1")
    refused = SubmitReport(bad, "c1", time.time(), SubmitOutcome.SUBMITTED, ("",))  # no id
    writer.report(refused)
    writer.report(submitted(good, "s1"))
    writer.receipt(delivered("s1"), answers)
    await asyncio.wait_for(writer.drain(), WAIT)
    assert writer.failures == 0
    assert [r.message_id for r in written] == [bad, good]  # both leave "in progress"
    ((match, error),) = answers.results
    assert error is None
    assert match is not None
    assert match.message_id == good
    good_record, bad_record = await records(store, [good, bad])
    assert good_record.status is MessageStatus.DELIVERED
    assert bad_record.status is MessageStatus.ACCEPTED  # still dispatching: recover() requeues
    await writer.close()
    await store.close()

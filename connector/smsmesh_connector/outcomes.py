"""Submit reports and delivery receipts, written to the store together.

An SMSC often sends a message's delivery receipt right behind its submit_sm_resp.
Written apart, the report and the receipt take two transactions, and the receipt's
must wait for the report's to find the part it is about. `OutcomeWriter` queues both
and hands what each flush takes of them to one `Store.record_outcomes` call, reports
first: a receipt finds the part its report writes in the same transaction.

- A report is write-behind: `report()` never blocks the submit_sm_resp handler. If the
  store fails, the reports stay queued and are tried again with capped backoff; none
  is dropped, except one the store refuses as invalid (which would block the rest).
- A receipt is group-committed: `receipt()` takes a callback, called with the match
  once the receipt is stored, or with the error (the connector then answers the SMSC
  "retry later", and the SMSC sends it again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from smsmesh.batching import Done, Flusher, fail, finish
from smsmesh.model import Receipt, ReceiptMatch, SubmitReport
from smsmesh.store import Store

log = logging.getLogger("smsmesh.connector")

# Receipts per transaction. The connector shares the store's write lock with the
# routers, whose commits HTTP clients wait on: short transactions, back to back under
# load, keep those waits short. With SQLite and a receipt right behind every submit,
# 16 instead of up to 500 took throughput from ~4,600 to ~5,200 messages/s.
RECEIPT_BATCH = 16
# ... but one transaction at a time, 16 receipts each, is also a ceiling on how fast
# receipts are stored: when an SMSC sends them faster (the benchmark's instant receipts
# at 5,000 messages/s on 2 cores), a third of them were still queued when the stream
# ended, and the queue only grew. Once more than 32 wait, batches of up to this many
# (an SMSC's whole deliver window) work the backlog off: all stored by the end, at
# about the same submit rate (4,500-4,900 vs 4,900-5,100 msg/s, three pairs).
RECEIPT_BACKLOG_BATCH = 128
# Reports per transaction: a report is a small write, and a window's worth of them
# often arrives at once.
REPORT_BATCH = 1000


class OutcomeWriter(Flusher):
    """One flusher for a connector's submit reports and receipts (see the module doc).

    `reports_written` is called with each batch of reports once it is in the store
    (the submitter then frees their window slots).
    """

    def __init__(
        self,
        store: Store,
        reports_written: Callable[[Sequence[SubmitReport]], None],
        *,
        name: str,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        super().__init__(f"{name}-outcomes", retry_initial, retry_max)
        self._store = store
        self._reports_written = reports_written
        self._reports: list[SubmitReport] = []
        self._receipts: list[tuple[Receipt, Done[ReceiptMatch]]] = []

    @property
    def pending_reports(self) -> int:
        return len(self._reports)

    def report(self, report: SubmitReport) -> None:
        """Queue a submit outcome; it is written eventually, whatever the store does."""
        self._reports.append(report)
        self._wake()

    def receipt(self, receipt: Receipt, done: Done[ReceiptMatch]) -> None:
        """Queue a receipt; `done(match, None)` once stored, `done(None, error)` if not.
        RuntimeError once closing (the caller answers the SMSC "retry later")."""
        if self._closing:
            raise RuntimeError(f"{self._name} is closing")
        self._receipts.append((receipt, done))
        self._wake()

    def _has_work(self) -> bool:
        return bool(self._reports or self._receipts)

    def _waiting(self) -> str:
        return f"{len(self._reports)} submit reports"

    async def _write_next(self) -> None:
        """One transaction: the next receipts, and the reports queued before them. If it
        fails, the receipts are answered with the error (the SMSC sends them again) and
        the reports stay queued, to be tried again: nobody would send them again."""
        size = RECEIPT_BATCH
        if len(self._receipts) > 2 * size:
            size = RECEIPT_BACKLOG_BATCH
        receipts = self._receipts[:size]
        del self._receipts[:size]
        reports = self._reports[:REPORT_BATCH]
        try:
            matches = await self._write(reports, [r for r, _ in receipts])
        except Exception as exc:
            fail(self._name, receipts, exc)
            if reports:
                raise
            return
        if reports:
            del self._reports[: len(reports)]
            self._reports_written(reports)
        finish(self._name, receipts, matches)

    async def _write(
        self, reports: Sequence[SubmitReport], receipts: Sequence[Receipt]
    ) -> Sequence[ReceiptMatch]:
        try:
            return await self._store.record_outcomes(reports, receipts)
        except ValueError:
            if not reports:
                raise
        # A report the store refuses would otherwise be retried for ever and block every
        # report queued behind it: write them one by one, drop the bad one.
        for report in reports:
            try:
                await self._store.record_submits([report])
            except ValueError as exc:
                log.error("%s: dropping a submit report the store refuses: %s", self._name, exc)
        return await self._store.record_receipts(receipts)

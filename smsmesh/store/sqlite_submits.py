"""Recording "submitted" outcomes on SQLite, worked out before the write lock is taken.

A connector reports outcomes in batches (write-behind); nearly all say SUBMITTED for
a message it holds in `dispatching`. Those are read and turned into rows outside any
write transaction (a WAL read takes no lock), so SQLite's one write lock, which the
routers' accepts wait for, is held only for the inserts and updates. The message
update checks the state it was read in; if another writer moved the message on in
between, the write is rolled back and redone inside the lock (`StalePlan`).
Everything else (requeues, failures, a duplicate or stale report) is left to the
engine's one-report-at-a-time path inside the lock.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Any

from smsmesh.model import MessageStatus, SubmitOutcome, SubmitReport
from smsmesh.smpp.receipt import id_candidates
from smsmesh.store.rules import State, TimelineRows, dumps
from smsmesh.store.sqlite_tx import StalePlan, Tx, orphans_possible, padded_chunks, qmarks

# With what a receipt in the same batch needs to finalise the message (see `fresh`).
_READ_STATES = """
SELECT id, state, callback_url, client_ref, destination, trace_context
FROM messages WHERE id IN ({})
"""
_IDS_PER_READ = 512
# A message's submit, and a one-part message's final receipt with it when both come
# in one batch (`finish`): then each row is written once, with its final state.
_MARK = """
UPDATE messages SET state = ?, connection = ?, updated_at = ?, command_status = ?,
                    error = ?, trace_context = COALESCE(?, trace_context)
WHERE id = ? AND state IN ('dispatching', 'queued')
"""
_INSERT_PART = """
INSERT OR REPLACE INTO parts
    (message_id, part, connection, smsc_id, smsc_key, state, error_code, updated_at)
VALUES (?,?,?,?,?,?,?,?)
"""
_INSERT_PART_KEY = (
    "INSERT OR IGNORE INTO part_keys (connection, key, message_id, part) VALUES (?,?,?,?)"
)
# States a report may still change (the message is the reporting connector's).
OPEN_STATES = (State.DISPATCHING, State.QUEUED)


def report_detail(report: SubmitReport) -> dict[str, Any]:
    """The timeline detail every outcome's event starts from."""
    detail: dict[str, Any] = {"outcome": report.outcome.value}
    if report.command_status is not None:
        detail["command_status"] = report.command_status
    if report.error:
        detail["error"] = report.error
    return detail


class SubmittedRows(TimelineRows):
    """The writes that record messages as submitted, collected to run batched."""

    def __init__(self) -> None:
        # _MARK's and _INSERT_PART's parameters.
        self.marks: list[tuple[str, str, float, int | None, str | None, str | None, str]] = []
        self.parts: list[tuple[str, int, str, str, str, str | None, str | None, float]] = []
        self.keys: list[tuple[str, str, str, int]] = []
        self.events = []
        # (message id, receipt scope, [(part, smsc id)]): where early receipts may wait.
        self.submitted: list[tuple[str, str, list[tuple[int, str]]]] = []
        self.later: list[SubmitReport] = []  # for the one-at-a-time path
        # Planned messages (`plan_submits`) by id: (callback_url, client_ref, destination,
        # trace_context) as they will be once written, for receipts of the same batch.
        self.fresh: dict[str, tuple[str | None, str | None, str, str]] = {}
        # Fresh one-part messages a final receipt of the batch finishes (`finish`).
        self.finished: dict[str, tuple[str, str | None, float, str, str | None]] = {}

    def add(self, report: SubmitReport, detail: dict[str, Any]) -> None:
        mid, connection = report.message_id, report.connection
        trace = dumps(report.trace_context) if report.trace_context else None
        self.marks.append(
            (State.SUBMITTED.value, connection, report.at, report.command_status, None, trace, mid)
        )
        parts = list(enumerate(report.smsc_message_ids, start=1))
        scope = report.receipt_scope  # part_keys.connection: where receipts look
        for part, sid in parts:
            keys = id_candidates(sid)  # the canonical form first
            self.parts.append((mid, part, connection, sid, keys[0], None, None, report.at))
            self.keys.extend((scope, key, mid, part) for key in keys)
        detail["smsc_ids"] = list(report.smsc_message_ids)
        self.event(mid, report.at, "submitted", MessageStatus.SUBMITTED, connection, detail)
        self.submitted.append((mid, scope, parts))

    def finish(
        self,
        message_id: str,
        state: str,
        error_code: str | None,
        at: float,
        status: str,
        error: str | None,
    ) -> None:
        """Write the fresh one-part message `message_id` with the final receipt (part
        `state`, `error_code`, at `at`) and final `status` (`error`) it gets in this
        transaction, instead of as submitted and then updating both rows. The caller
        adds the events and the webhook, as for any final receipt."""
        self.finished[message_id] = (state, error_code, at, status, error)

    def write(self, tx: Tx) -> None:
        """Run the collected writes; StalePlan if a message was no longer open, or if a
        finished message may have a kept receipt, which has to be applied first."""
        if self.marks:
            marks, parts = self.marks, self.parts
            if self.finished:
                if orphans_possible(tx):
                    raise StalePlan
                marks, parts = self._finished_rows()
            cursor = tx.conn.executemany(_MARK, marks)
            if cursor.rowcount != len(marks):
                raise StalePlan
            tx.conn.executemany(_INSERT_PART, parts)
            tx.conn.executemany(_INSERT_PART_KEY, self.keys)
        tx.events.extend(self.events)

    def _finished_rows(self) -> tuple[list[Any], list[Any]]:
        """The rows, with the final state of each finished message and its part."""
        finished = self.finished
        marks = [
            row if (done := finished.get(row[6])) is None
            else (done[3], row[1], done[2], row[3], done[4], row[5], row[6])
            for row in self.marks
        ]  # fmt: skip
        parts = [
            row if (done := finished.get(row[0])) is None else (*row[:5], *done[:3])
            for row in self.parts
        ]
        return marks, parts


def plan_submits(conn: sqlite3.Connection, reports: Sequence[SubmitReport]) -> SubmittedRows:
    """The rows of the SUBMITTED reports for open messages, from one read; the other
    reports (and any message reported twice in the batch) in `later`."""
    plan = SubmittedRows()
    ids = sorted({r.message_id for r in reports if r.outcome is SubmitOutcome.SUBMITTED})
    rows: dict[str, tuple[Any, ...]] = {}
    for chunk in padded_chunks(ids, _IDS_PER_READ):
        for row in conn.execute(_READ_STATES.format(qmarks(len(chunk))), chunk):
            rows[row[0]] = row
    reported = Counter(r.message_id for r in reports)
    for report in reports:
        row = rows.get(report.message_id)
        if (
            report.outcome is SubmitOutcome.SUBMITTED
            and reported[report.message_id] == 1
            and row is not None
            and row[1] in OPEN_STATES
        ):
            plan.add(report, report_detail(report))
            trace = plan.marks[-1][5] or row[5]  # the report's, else the message's
            plan.fresh[report.message_id] = (row[2], row[3], row[4], trace)
        else:
            plan.later.append(report)
    return plan

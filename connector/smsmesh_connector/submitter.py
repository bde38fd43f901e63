"""The outbound half of a connector: claim messages from the store, submit them, report.

One task per message, started in claim order: a message's parts go out one after the
other (each waits for the previous part's response), while up to `window` messages are
in flight at once, so sending is pipelined across messages. A message takes one window
slot (a FIFO semaphore) before its first part, then a rate-limiter slot per part; the
session's own window is the same size and so never blocks.

What a crash can duplicate is bounded by the window: a message's window slot is given
back only when its outcome is durably recorded, not when its last response arrives, so
at most `window` messages are ever "sent but not recorded". After a kill -9, `recover()`
at the next start requeues them (and the claimed-but-unsent ones, which cost nothing).
Claiming is bounded too: at most `in_progress_limit` (default 2 x window) messages are
claimed and not yet recorded, so a queue of ready messages waits for every free slot.

Outcomes (see `classify`): OK on every part -> SUBMITTED with the SMSC ids; THROTTLED ->
slow the limiter down (once per episode, not once per response) and re-send the same
part in place, as long as the message is valid and we are not stopping; RETRY ->
requeued after `retry_delay`; FAILOVER -> requeued on the route's next target; REJECTED
-> final. A lost session or a missing response requeues the message at once: the SMSC
may have taken it, so that is where duplicates come from (at most the window).

Reports go through a write-behind queue (`outcomes`, shared with the receipts that
follow them): a response handler never waits for the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from opentelemetry.trace import SpanKind

from smsmesh.batching import WriteBehind
from smsmesh.model import ClaimedMessage, Event, SubmitOutcome, SubmitReport
from smsmesh.smpp.aio import AsyncSession, ResponseTimeout, SessionClosed
from smsmesh.smpp.codec import PduError
from smsmesh.smpp.pdu import Pdu, SubmitSmResp
from smsmesh.smpp.session import LocalProtocolError
from smsmesh.store import Store, StoreError
from smsmesh.telemetry import tracing
from smsmesh_connector.classify import Disposition, classify, status_name
from smsmesh_connector.compose import ComposeError, Composer
from smsmesh_connector.outcomes import OutcomeWriter
from smsmesh_connector.ratelimit import RateLimiter
from smsmesh_connector.settings import ConnectorSettings
from smsmesh_connector.state import ConnectorState

log = logging.getLogger("smsmesh.connector")

CLAIM_RETRY_SECONDS = 1.0  # after a failed claim
WORK_POLL_SECONDS = 1.0  # safety net: claim this often even without a wake-up


@dataclass(eq=False, slots=True)
class _Job:
    """One claimed message from claim until its outcome is durable."""

    message: ClaimedMessage
    task: asyncio.Task[None] | None = None
    sent: bool = False  # a part was handed to the session (the SMSC may have it)
    cancel_reason: str = "cancelled"
    throttle_noted: bool = False
    reported: bool = False
    holds_slot: bool = False  # a window slot, released once the outcome is durable


class Submitter:
    def __init__(
        self,
        settings: ConnectorSettings,
        store: Store,
        state: ConnectorState,
        limiter: RateLimiter,
        events: WriteBehind[tuple[str, Event]],
    ) -> None:
        self._settings = settings
        self._name = settings.name
        self._store = store
        self._state = state
        self._limiter = limiter
        self._events = events
        self._composer = Composer(settings)
        # Submit reports, and the inbound handler's receipts, go to the store through
        # this one writer (see `outcomes`).
        self.outcomes = OutcomeWriter(store, self._recorded, name=settings.name)
        self._capacity = settings.in_progress_limit
        # Claim in batches, yet never let the in-progress set fall below the window.
        self._min_claim = max(1, min(self._capacity // 4, self._capacity - settings.window))
        self._in_progress: dict[str, _Job] = {}
        # Window slots: taken before a message's first part is sent, given back when its
        # outcome is recorded. One gate for the connector's life, across sessions.
        self._gate = asyncio.Semaphore(settings.window)
        self._wake = asyncio.Event()
        self._hint = True  # the store may have work: claim before waiting
        self._stopping = False
        self._throttle_epoch = 0
        self._retry_timer: asyncio.TimerHandle | None = None
        self._retry_at = 0.0

    # -- public ---------------------------------------------------------------------------

    @property
    def in_progress(self) -> int:
        """Claimed messages whose outcome is not durable yet."""
        return len(self._in_progress)

    async def run(self, session: AsyncSession, stop: asyncio.Event) -> None:
        """Submit on `session` until `stop` is set or the session ends, then settle.

        On stop: messages not sent yet are requeued at once, in-flight ones get up to
        `drain_timeout` to be answered, then whatever is left is requeued. On a lost
        session everything unresolved is requeued at once (no answer can come).
        """
        self._stopping = False
        helpers = [
            asyncio.create_task(self._wake_on(stop.wait()), name="submitter-stop"),
            asyncio.create_task(self._wake_on(session.wait_closed()), name="submitter-closed"),
            asyncio.create_task(self._store_waker(), name="submitter-waker"),
        ]
        try:
            await self._claim_loop(session, stop)
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if stop.is_set() and not session.closed:
                await self._settle("connector stopping", drain=True)
            else:
                await self._settle("session lost", drain=False)

    async def flush(self, timeout: float) -> bool:
        """Write every queued report (and receipt); False if the store did not take them
        in time (they stay `dispatching` and the next start's `recover()` requeues them)."""
        try:
            async with asyncio.timeout(timeout):
                await self.outcomes.drain()
        except TimeoutError:
            log.error(
                "%s: %d submit reports could not be written within %.0f s",
                self._name,
                self.outcomes.pending_reports,
                timeout,
            )
            return False
        return True

    async def close(self) -> None:
        await self.outcomes.close()

    # -- claiming -------------------------------------------------------------------------

    async def _wake_on(self, waitable: Awaitable[object]) -> None:
        await waitable
        self._wake.set()

    async def _store_waker(self) -> None:
        """Turns store wake-ups (and, as a safety net, their timeouts) into claim hints."""
        while True:
            try:
                await self._store.wait_for_work(self._name, WORK_POLL_SECONDS)
            except StoreError as exc:
                log.warning("%s: waiting for work failed: %s", self._name, exc)
                await asyncio.sleep(WORK_POLL_SECONDS)
            self._hint = True
            self._wake.set()

    async def _claim_loop(self, session: AsyncSession, stop: asyncio.Event) -> None:
        drained = False
        while not stop.is_set() and not session.closed:
            if self._hint:
                self._hint = False
                drained = False
            free = self._capacity - len(self._in_progress)
            if drained or free < self._min_claim:
                # Nothing to do until the store hints at work or a report frees room.
                # No await since the checks above, so no wake-up can have been missed.
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                claimed = await self._store.claim(self._name, free, time.time())
            except StoreError as exc:
                log.warning("%s: claim failed: %s", self._name, exc)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLAIM_RETRY_SECONDS):
                        await stop.wait()
                continue
            drained = len(claimed) < free
            if stop.is_set() or session.closed:
                reason = "connector stopping" if stop.is_set() else "session lost"
                for message in claimed:
                    job = _Job(message)
                    self._in_progress[message.id] = job
                    self._finish(
                        job, self._requeue(message, f"not sent: {reason}", attempted=False)
                    )
                break
            for message in claimed:
                job = _Job(message)
                self._in_progress[message.id] = job
                job.task = asyncio.create_task(self._run_job(job, session))

    async def _settle(self, reason: str, *, drain: bool) -> None:
        running = [
            (job, job.task)
            for job in self._in_progress.values()
            if job.task is not None and not job.task.done()
        ]
        if not running:
            return
        self._stopping = True
        for job, task in running:
            if not job.sent or not drain:
                job.cancel_reason = f"not sent: {reason}" if not job.sent else reason
                task.cancel()
        in_flight = [task for job, task in running if job.sent and drain]
        if in_flight:
            log.info("%s: waiting for %d responses before unbinding", self._name, len(in_flight))
            _, late = await asyncio.wait(in_flight, timeout=self._settings.drain_timeout)
            for job, task in running:
                if task in late:
                    job.cancel_reason = f"no response before stop ({reason})"
                    task.cancel()
        await asyncio.gather(*(task for _, task in running), return_exceptions=True)
        for job, _ in running:
            if not job.reported:  # cancelled before its coroutine ever ran
                self._finish(job, self._requeue(job.message, job.cancel_reason, attempted=job.sent))

    # -- one message ----------------------------------------------------------------------

    async def _run_job(self, job: _Job, session: AsyncSession) -> None:
        message = job.message
        # The message's trace goes on here: a CONSUMER span, child of the router's
        # `accept` span whose context was stored with the message.
        with tracing.tracer().start_as_current_span(
            f"dispatch {self._name}",
            context=tracing.extract(message.trace_context) if tracing.enabled() else None,
            kind=SpanKind.CONSUMER,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            if span.is_recording():
                span.set_attributes(
                    {
                        **tracing.message_attributes(message.id),
                        **tracing.messaging_attributes(
                            "smsmesh", "process", "dispatch", self._name
                        ),
                        "smsmesh.attempt": message.attempts + 1,
                    }
                )
            try:
                report = await self._submit(job, session)
            except asyncio.CancelledError:
                # Our own task, cancelled by _settle (or loop shutdown): the outcome is a
                # requeue either way, and the cancellation ends here.
                report = self._requeue(job.message, job.cancel_reason, attempted=job.sent)
            except Exception as exc:  # a bug must not strand the message in `dispatching`
                log.exception("%s: submitting %s failed unexpectedly", self._name, message.id)
                report = self._requeue(job.message, f"internal error: {type(exc).__name__}")
            if span.is_recording():
                span.set_attribute("smsmesh.outcome", report.outcome.value)
                if report.failover:
                    span.set_attribute("smsmesh.failover", True)
                if report.outcome in (SubmitOutcome.REJECTED, SubmitOutcome.FAILED):
                    tracing.fail(span, report.outcome.value, report.error)
            self._finish(job, report)

    async def _submit(self, job: _Job, session: AsyncSession) -> SubmitReport:
        message = job.message
        try:
            pdus = self._composer.compose(message)
        except ComposeError as exc:
            return self._report(message, SubmitOutcome.REJECTED, error=str(exc))
        ids: list[str] = []
        submit_context: dict[str, str] = {}
        limiter = self._limiter
        timeout = self._settings.response_timeout
        # The slot is given back when the outcome is durable (see _record), not when
        # the last response arrives: so at most `window` messages are ever sent but not
        # yet recorded, which is what a crash can duplicate.
        await self._gate.acquire()
        job.holds_slot = True
        for part, pdu in enumerate(pdus, 1):
            while True:
                if time.time() >= message.expires_at:
                    # Requeued past its validity: the expiry sweeper ends it as expired.
                    return self._requeue(message, "validity ended before submission")
                await limiter.acquire()
                epoch = self._throttle_epoch
                pdu.sequence_number = 0  # the session numbers it (again, on a re-send)
                job.sent = True
                try:
                    response, submit_context = await self._request(
                        session, pdu, timeout, message, part, len(pdus)
                    )
                except ResponseTimeout:
                    return self._requeue(message, f"no submit_sm_resp within {timeout:g} s")
                except (SessionClosed, LocalProtocolError):
                    return self._requeue(message, "session lost before the response")
                except PduError as exc:
                    return self._report(
                        message, SubmitOutcome.REJECTED, error=f"cannot encode: {exc}"
                    )
                status = response.command_status
                disposition = classify(status)
                if disposition is Disposition.OK and not isinstance(response, SubmitSmResp):
                    disposition = Disposition.RETRY  # generic_nack with status 0
                if disposition is Disposition.OK:
                    ids.append(self._smsc_id(response, message, part))
                    self._state.counters.parts_submitted += 1
                    self._state.meter.add()
                    break
                if disposition is Disposition.THROTTLED:
                    self._throttled(job, status, epoch)
                    if self._stopping:
                        return self._requeue(message, "throttled while stopping", status)
                    continue
                return self._refused(message, disposition, status, part, len(pdus))
        # Stored with the message: receipts link to this submit span, and the submit
        # time gives the receipt latency.
        trace_context = {
            **message.trace_context,
            **submit_context,
            tracing.SUBMITTED_AT: f"{time.time():.3f}",
        }
        return self._report(
            message,
            SubmitOutcome.SUBMITTED,
            smsc_ids=tuple(ids),
            command_status=0,
            trace_context=trace_context,
        )

    async def _request(
        self,
        session: AsyncSession,
        pdu: Pdu,
        timeout: float,
        message: ClaimedMessage,
        part: int,
        parts: int,
    ) -> tuple[Pdu, dict[str, str]]:
        """Send one submit_sm inside its CLIENT span (the SMSC is the peer); return the
        response and that span's W3C context. Errors are recorded and re-raised."""
        settings = self._settings
        metrics = self._state.metrics
        with tracing.tracer().start_as_current_span(
            f"submit_sm {self._name}",
            kind=SpanKind.CLIENT,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            if span.is_recording():
                span.set_attributes(
                    {
                        **tracing.message_attributes(message.id),
                        **tracing.messaging_attributes("smpp", "send", "submit_sm", self._name),
                        tracing.SERVER_ADDRESS: settings.host,
                        tracing.SERVER_PORT: settings.port,
                        "smsmesh.part": part,
                        "smsmesh.parts": parts,
                    }
                )
            started = time.perf_counter()
            try:
                response = await session.request(pdu, timeout)
            except (ResponseTimeout, SessionClosed, LocalProtocolError) as exc:
                metrics.unanswered.inc()
                tracing.fail(span, type(exc).__name__)
                raise
            except PduError:
                tracing.fail(span, "PduError")
                raise
            status = response.command_status
            metrics.submit_response(status, time.perf_counter() - started)
            if span.is_recording():
                span.set_attribute("smpp.command_status", status)
                span.set_attribute("smpp.command_status.name", status_name(status))
                smsc_id = getattr(response, "message_id", "")
                if smsc_id:
                    span.set_attribute("smpp.message_id", smsc_id)
                if status != 0:
                    tracing.fail(span, status_name(status))
                return response, tracing.inject(span)
            return response, {}

    def _smsc_id(self, response: object, message: ClaimedMessage, part: int) -> str:
        smsc_id = getattr(response, "message_id", "").strip()
        if not smsc_id:
            # Accepted without an id: receipts can never match it; the sweeper will
            # expire it. A placeholder keeps the report valid for the store.
            log.warning("%s: SMSC accepted %s part %d without a message_id",
                        self._name, message.id, part)  # fmt: skip
            smsc_id = f"none-{message.id}-{part}"
        return smsc_id

    def _throttled(self, job: _Job, status: int, epoch: int) -> None:
        state = self._state
        state.counters.throttled += 1
        state.metrics.throttled.inc()
        if epoch == self._throttle_epoch:
            # The first throttle answer to a request sent at the current rate: slow
            # down. Answers to requests sent before that say nothing new.
            self._throttle_epoch += 1
            state.metrics.throttle_episodes.inc()
            achieved = state.achieved_tps
            self._limiter.throttled(achieved if achieved > 0 else None)
            state.throttled_until = time.time() + self._limiter_pause()
            log.info(
                "%s: throttled by the SMSC (%s); rate now %s/s",
                self._name,
                status_name(status),
                f"{self._limiter.rate:g}" if self._limiter.rate else "unlimited",
            )
        if not job.throttle_noted:
            job.throttle_noted = True
            self._events.put(
                (
                    job.message.id,
                    Event(
                        at=time.time(),
                        kind="throttled",
                        connection=self._name,
                        detail={"command_status": status, "status": status_name(status)},
                    ),
                )
            )

    def _limiter_pause(self) -> float:
        return self._limiter.pending_delay()

    def _refused(
        self, message: ClaimedMessage, disposition: Disposition, status: int, part: int, total: int
    ) -> SubmitReport:
        error = status_name(status) + (f" on part {part} of {total}" if total > 1 else "")
        if disposition is Disposition.REJECTED:
            return self._report(message, SubmitOutcome.REJECTED, command_status=status, error=error)
        if disposition is Disposition.FAILOVER:
            return self._report(
                message,
                SubmitOutcome.REQUEUE,
                command_status=status,
                error=error,
                retry_at=time.time(),
                failover=True,
            )
        return self._report(
            message,
            SubmitOutcome.REQUEUE,
            command_status=status,
            error=error,
            retry_at=time.time() + self._settings.retry_delay,
        )

    def _claim_at(self, when: float) -> None:
        """Claim again when a requeued message becomes due, rather than at the next
        poll: the store sends no wake-up for a time passing."""
        now = time.time()
        if when <= now:
            return
        timer = self._retry_timer
        if timer is not None and self._retry_at <= when + 0.05:
            return  # an earlier (or close enough) claim is already planned
        if timer is not None:
            timer.cancel()
        self._retry_at = when

        def due() -> None:
            self._retry_timer = None
            self._hint = True
            self._wake.set()

        self._retry_timer = asyncio.get_running_loop().call_later(when - now + 0.01, due)

    # -- reports --------------------------------------------------------------------------

    def _report(
        self,
        message: ClaimedMessage,
        outcome: SubmitOutcome,
        *,
        smsc_ids: tuple[str, ...] = (),
        command_status: int | None = None,
        error: str | None = None,
        retry_at: float | None = None,
        failover: bool = False,
        trace_context: dict[str, str] | None = None,
    ) -> SubmitReport:
        return SubmitReport(
            message_id=message.id,
            connection=self._name,
            at=time.time(),
            outcome=outcome,
            smsc_message_ids=smsc_ids,
            command_status=command_status,
            error=error,
            retry_at=retry_at,
            failover=failover,
            trace_context=trace_context or {},
            receipt_group=self._settings.receipt_group,
        )

    def _requeue(
        self,
        message: ClaimedMessage,
        error: str,
        command_status: int | None = None,
        *,
        attempted: bool = True,
    ) -> SubmitReport:
        now = time.time()
        return SubmitReport(
            message_id=message.id,
            connection=self._name,
            at=now,
            outcome=SubmitOutcome.REQUEUE,
            command_status=command_status,
            error=error,
            retry_at=now,
            attempted=attempted,
        )

    def _finish(self, job: _Job, report: SubmitReport) -> None:
        job.reported = True
        counters, metrics = self._state.counters, self._state.metrics
        if report.outcome is SubmitOutcome.SUBMITTED:
            counters.submitted += 1
            metrics.outcome("submitted")
        elif report.outcome is SubmitOutcome.REQUEUE:
            counters.requeued += 1
            metrics.outcome("failover" if report.failover else "requeued")
            if not report.failover and report.retry_at is not None:
                self._claim_at(report.retry_at)
        else:
            counters.rejected += 1
            metrics.outcome("rejected")
        self.outcomes.report(report)

    def _recorded(self, reports: Sequence[SubmitReport]) -> None:
        """Reports are in the store: their messages leave "in progress"."""
        in_progress = self._in_progress
        for report in reports:
            if report.outcome is SubmitOutcome.REQUEUE and not report.failover:
                self._hint = True  # back in our own queue: claimable now (or when due)
            job = in_progress.get(report.message_id)
            if job is not None and job.reported:
                del in_progress[report.message_id]
                if job.holds_slot:
                    job.holds_slot = False
                    self._gate.release()
        self._wake.set()

"""Webhook dispatcher: delivers the store's outbox of receipts and MO messages to applications.

Jobs are leased from the store, so any number of router replicas can run a dispatcher
side by side and a dispatcher that dies mid-request loses nothing: its lease runs out
and another one sends the job again (receivers get at-least-once delivery and can
de-duplicate on the `X-Smsmesh-Delivery` header). Failures back off exponentially with
jitter and give up after `max_attempts`, recording why on the message's timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass

import aiohttp
from opentelemetry.trace import Span, SpanKind
from yarl import URL

from smsmesh.batching import WriteBehind
from smsmesh.model import WebhookJob, WebhookResult
from smsmesh.store import Store
from smsmesh.telemetry import metrics, tracing

log = logging.getLogger(__name__)

USER_AGENT = "smsmesh-webhooks/0.1"


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    request_timeout: float = 10.0
    max_attempts: int = 10
    base_delay: float = 1.0
    max_delay: float = 600.0
    lease: float = 60.0
    concurrency: int = 64  # deliveries in flight at once
    idle_poll: float = 1.0  # a safety net: new jobs wake the dispatcher at once


def retry_delay(policy: WebhookPolicy, failed_attempts: int) -> float:
    """Exponential backoff with full jitter, capped: attempt n waits up to base * 2**(n-1)."""
    ceiling = min(policy.max_delay, policy.base_delay * (2 ** max(0, failed_attempts - 1)))
    return random.uniform(ceiling / 2, ceiling)


def _url_attributes(url: str) -> dict[str, str | int]:
    """The receiver's address for the span; never the query, it may hold a secret."""
    try:
        parsed = URL(url)
        port = parsed.port
    except ValueError:
        return {}  # the attempt itself fails and is recorded as such
    attributes: dict[str, str | int] = {"url.scheme": parsed.scheme, "url.path": parsed.path}
    if parsed.host:
        attributes[tracing.SERVER_ADDRESS] = parsed.host
    if port:
        attributes[tracing.SERVER_PORT] = port
    return attributes


def is_permanent(status: int) -> bool:
    """A receiver that answers 410 Gone asks us to stop; everything else is worth retrying."""
    return status == 410


class WebhookDispatcher:
    def __init__(self, store: Store, policy: WebhookPolicy | None = None) -> None:
        self._store = store
        self._policy = policy or WebhookPolicy()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        # Completions are written in batches: one commit per delivery would make the
        # store, not the receivers, the limit on how many webhooks go out per second.
        self._results: WriteBehind[WebhookResult] = WriteBehind(
            store.complete_webhooks, name="webhook-results"
        )
        self.delivered = 0
        self.failed_attempts = 0

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._policy.request_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT})
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stop claiming, let deliveries in flight finish briefly, write their results."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self._policy.request_timeout)
            for task in self._in_flight:
                task.cancel()  # its lease runs out and another dispatcher sends it
        await self._results.close()
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            free = self._policy.concurrency - len(self._in_flight)
            jobs: list[WebhookJob] = []
            if free > 0:
                try:
                    jobs = await self._store.claim_webhooks(free, time.time(), self._policy.lease)
                except Exception:
                    log.exception("claiming webhook jobs failed; retrying")
            for job in jobs:
                task = asyncio.create_task(self._deliver(job))
                self._in_flight.add(task)
                task.add_done_callback(self._done)
            if free <= 0:  # full: wait for a delivery to finish
                self._slot_freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_freed.wait(), self._policy.idle_poll)
            elif len(jobs) < free:
                # Drained: look again when a write adds a job (a receipt finished a
                # message), or after the poll interval for retries coming due.
                try:
                    await self._store.wait_for_webhooks(self._policy.idle_poll)
                except Exception:
                    log.exception("waiting for webhook jobs failed; polling")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), self._policy.idle_poll)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slot_freed.set()

    async def _deliver(self, job: WebhookJob) -> None:
        """One attempt, as a CLIENT span in the message's trace (its context was stored
        with the job); the request carries that span's `traceparent` to the application."""
        kind = job.kind.value
        attributes: dict[str, str | int] = {
            **tracing.message_attributes(job.message_id),
            "http.request.method": "POST",
            "smsmesh.webhook.kind": kind,
            "smsmesh.webhook.delivery": job.id,
            "smsmesh.webhook.attempt": job.attempts + 1,
            **_url_attributes(job.url),
        }
        started = time.perf_counter()
        with tracing.tracer().start_as_current_span(
            f"webhook {kind}",
            context=tracing.extract(job.trace_context) if tracing.enabled() else None,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self._attempt(job, span)
            finally:
                metrics.WEBHOOK_DURATION.labels(kind).observe(time.perf_counter() - started)

    async def _attempt(self, job: WebhookJob, span: Span) -> None:
        assert self._session is not None
        kind = job.kind.value
        error: str | None = None
        status = 0
        if tracing.enabled():
            trace_headers = tracing.inject(span)
        else:  # pass the stored context on as it is
            trace_headers = {k: v for k, v in job.trace_context.items() if k == "traceparent"}
        try:
            async with self._session.post(
                job.url,
                json=job.payload,
                headers={
                    "X-Smsmesh-Event": kind,
                    "X-Smsmesh-Delivery": str(job.id),
                    **trace_headers,
                },
            ) as response:
                status = response.status
                await response.read()
                if span.is_recording():
                    span.set_attribute("http.response.status_code", status)
                if 200 <= status < 300:
                    self._results.put(WebhookResult(job.id, True, time.time()))
                    self.delivered += 1
                    metrics.WEBHOOK_DELIVERIES.labels(kind).inc()
                    return
                error = f"HTTP {status}"
                tracing.fail(span, str(status))
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            tracing.fail(span, type(exc).__name__)
        except Exception as exc:
            # Whatever went wrong, the attempt's outcome must be written: an unrecorded
            # attempt would hold the job until its lease ran out (a minute by default).
            log.exception("webhook %s for message %s: unexpected error", job.id, job.message_id)
            error = type(exc).__name__
            tracing.fail(span, type(exc).__name__)
        self.failed_attempts += 1
        metrics.WEBHOOK_FAILURES.labels(kind).inc()
        attempts = job.attempts + 1
        give_up = attempts >= self._policy.max_attempts or is_permanent(status)
        retry_at = None if give_up else time.time() + retry_delay(self._policy, attempts)
        if give_up:
            metrics.WEBHOOK_GIVEN_UP.labels(kind).inc()
        else:
            metrics.WEBHOOK_RETRIES.labels(kind).inc()
        log.warning(
            "webhook %s for message %s failed (attempt %d): %s%s",
            job.id,
            job.message_id,
            attempts,
            error,
            "; giving up" if give_up else "",
        )
        self._results.put(WebhookResult(job.id, False, time.time(), retry_at, error))

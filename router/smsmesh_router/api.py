"""The JSON HTTP API applications call: send a message, read its status and timeline.

`POST /v1/messages` answers 202 only after the message is durable in the store (group
committed with its neighbours by a `Batcher`), so "accepted" always means "will reach
a final, reported state".
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from yarl import URL

from smsmesh.addresses import AddressError, classify_sender, parse_destination
from smsmesh.batching import Batcher
from smsmesh.model import (
    AcceptResult,
    MessageRecord,
    NewMessage,
    Priority,
    new_message_id,
)
from smsmesh.smpp.text import TextEncodingError, choose_encoding, count_segments
from smsmesh.store import Store
from smsmesh.telemetry import metrics, tracing
from smsmesh_router.config import AppConfig, RouterConfig
from smsmesh_router.errors import ApiError
from smsmesh_router.health import HealthView
from smsmesh_router.routing import Decision, RoutingInput, TargetState

MAX_BODY_BYTES = 64 * 1024
MAX_IDEMPOTENCY_KEY = 255
# Request item: the application the request authenticated as (for the rejection metric).
APPLICATION_KEY = web.RequestKey("application", str)


class SendRequest(BaseModel):
    """Body of `POST /v1/messages`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: Annotated[str, Field(min_length=1, max_length=32)]
    sender: Annotated[str | None, Field(alias="from", max_length=32)] = None
    text: str
    callback_url: Annotated[str | None, Field(max_length=2048, pattern=r"^https?://")] = None
    client_ref: Annotated[str | None, Field(max_length=128)] = None
    priority: Literal["bulk", "normal", "high"] = "normal"
    validity_seconds: Annotated[int | None, Field(ge=60, le=7 * 86400)] = None

    @field_validator("callback_url")
    @classmethod
    def _callback_is_a_url(cls, value: str | None) -> str | None:
        """Refuse now what the webhook dispatcher could never call (no host, bad port)."""
        if value is None:
            return None
        try:
            url = URL(value)
            port = url.port
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if not url.host or not port:
            raise ValueError("not a valid URL: it needs a host and a port above 0")
        return value


_PRIORITIES = {"bulk": Priority.BULK, "normal": Priority.NORMAL, "high": Priority.HIGH}


def _validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "body"
    if first["type"] == "extra_forbidden":
        return ApiError(400, "unknown_field", f"unknown field {field!r}")
    if first["type"] == "missing":
        return ApiError(400, "missing_field", f"field {field!r} is required")
    if first["type"] == "json_invalid":
        return ApiError(400, "invalid_json", "the body is not valid JSON")
    return ApiError(400, "invalid_field", f"{field}: {first['msg']}", {"field": field})


def iso(ts: float) -> str:
    """RFC 3339 UTC with milliseconds, the form the API uses for every time."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_json(record: MessageRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "status": record.status.value,
        "to": record.destination,
        "from": record.source,
        "client_ref": record.client_ref,
        "route": record.route,
        "connection": record.connection,
        "targets": list(record.targets),
        "priority": record.priority.name.lower(),
        "segments": record.segments,
        "attempts": record.attempts,
        "smsc_message_ids": list(record.smsc_message_ids),
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "expires_at": iso(record.expires_at),
        "events": [
            {
                "at": iso(e.at),
                "kind": e.kind,
                **({"status": e.status.value} if e.status else {}),
                **({"connection": e.connection} if e.connection else {}),
                **({"detail": e.detail} if e.detail else {}),
            }
            for e in record.events
        ],
    }


class MessagesApi:
    def __init__(
        self,
        store: Store,
        config: RouterConfig,
        health: HealthView,
        accept_batcher: Batcher[NewMessage, AcceptResult],
    ) -> None:
        self.store = store
        self.config = config  # replaced whole on reload; read once per request
        self.health = health
        self.batcher = accept_batcher

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/messages", self.send),
            web.get("/v1/messages/{id}", self.get),
            web.post("/v1/routes:explain", self.explain),
        ]

    # -- helpers ----------------------------------------------------------------------

    def authenticate(self, request: web.Request, config: RouterConfig) -> AppConfig:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <api key>'")
        app = config.application_for_key(token.strip())
        if app is None:
            raise ApiError(401, "unauthorized", "unknown API key")
        request[APPLICATION_KEY] = app.name
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(tracing.APPLICATION, app.name)
        return app

    async def _parse(self, request: web.Request) -> SendRequest:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise ApiError(413, "request_too_large", f"body over {MAX_BODY_BYTES} bytes")
        body = await request.read()
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "request_too_large", f"body over {MAX_BODY_BYTES} bytes")
        try:
            return SendRequest.model_validate_json(body)
        except ValidationError as exc:
            raise _validation_error(exc) from None

    def _plan(
        self, app: AppConfig, config: RouterConfig, req: SendRequest
    ) -> tuple[str, str, str, int, RoutingInput]:
        """Validate addresses and text; return (destination, sender, encoding, segments, input)."""
        try:
            destination = parse_destination(req.to)
        except AddressError as exc:
            raise ApiError(400, exc.code, exc.message, {"field": "to"}) from None
        raw_sender = req.sender or app.default_sender
        if not raw_sender:
            raise ApiError(400, "missing_field", "field 'from' is required (no default sender)")
        try:
            sender = classify_sender(raw_sender)
        except AddressError as exc:
            raise ApiError(400, exc.code, exc.message, {"field": "from"}) from None
        if not app.sender_allowed(sender.value):
            raise ApiError(
                403, "sender_not_allowed", f"application may not send as {sender.value!r}"
            )
        if not req.text:
            raise ApiError(400, "empty_text", "text must not be empty")
        try:
            encoding = choose_encoding(req.text)
            segments = count_segments(req.text, encoding)
        except TextEncodingError as exc:
            raise ApiError(400, "invalid_text", str(exc)) from None
        except ValueError as exc:  # more parts than a concatenated SMS can carry
            raise ApiError(400, "text_too_long", str(exc)) from None
        if segments > config.max_segments:
            raise ApiError(
                400,
                "text_too_long",
                f"text needs {segments} SMS parts; the limit is {config.max_segments}",
                {"segments": segments, "max_segments": config.max_segments},
            )
        routing_input = RoutingInput(
            destination=destination.e164,
            region=destination.region,
            sender=sender.value,
            application=app.name,
            priority=req.priority,
        )
        return destination.e164, sender.value, encoding.value, segments, routing_input

    # -- handlers ---------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        """`POST /v1/messages`, counted: accepted per application and route, refused
        per application and error code, and the time to durable acceptance."""
        started = time.perf_counter()
        try:
            response = await self._send(request)
        except ApiError as exc:
            application = request.get(APPLICATION_KEY, "unknown")
            metrics.APPLICATION_REJECTED.labels(application, exc.code).inc()
            raise
        except Exception:
            application = request.get(APPLICATION_KEY, "unknown")
            metrics.APPLICATION_REJECTED.labels(application, "internal_error").inc()
            raise
        metrics.ACCEPT_DURATION.observe(time.perf_counter() - started)
        return response

    async def _send(self, request: web.Request) -> web.Response:
        config = self.config
        app = self.authenticate(request, config)
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise ApiError(400, "invalid_idempotency_key", f"1 to {MAX_IDEMPOTENCY_KEY} characters")
        req = await self._parse(request)
        destination, sender, encoding, segments, routing_input = self._plan(app, config, req)
        message_id = new_message_id()
        tracer = tracing.tracer()
        server_span = trace.get_current_span()
        if server_span.is_recording():
            server_span.set_attributes(tracing.message_attributes(message_id))
        health = await self.health.current()
        split_input = replace(routing_input, split_key=message_id)
        decision = config.routing.decide(split_input, health, explain=False)
        failover = _took_failover(config, split_input, decision)
        if server_span.is_recording():
            # Routing is a pure, microsecond step: its outcome goes on the request's
            # span rather than a span of its own (a span per message costs more).
            server_span.set_attribute(tracing.ROUTE, decision.route or "")
            server_span.set_attribute("smsmesh.targets", list(decision.targets))
            server_span.set_attribute("smsmesh.route.failover", failover)
        if decision.route is None or not decision.targets:
            raise ApiError(422, "no_route", "no SmsRoute matches this message", {"to": destination})
        now = time.time()
        validity = req.validity_seconds or app.default_validity_seconds
        # The message enters its connection's queue: a PRODUCER span around the awaited
        # group commit, whose context is stored with the message for the connector.
        with tracer.start_as_current_span(
            f"accept {decision.targets[0]}", kind=SpanKind.PRODUCER
        ) as span:
            if span.is_recording():
                span.set_attributes(
                    {
                        **tracing.message_attributes(message_id),
                        **tracing.messaging_attributes(
                            "smsmesh", "send", "accept", decision.targets[0]
                        ),
                        tracing.ROUTE: decision.route,
                        tracing.APPLICATION: app.name,
                    }
                )
            message = NewMessage(
                id=message_id,
                application=app.name,
                source=sender,
                destination=destination,
                text=req.text,
                route=decision.route,
                targets=tuple(decision.targets),
                expires_at=now + validity,
                created_at=now,
                priority=_PRIORITIES[req.priority],
                segments=segments,
                client_ref=req.client_ref,
                callback_url=req.callback_url or app.callback_url,
                idempotency_key=idempotency_key,
                trace_context=_trace_context(span, request),
            )
            result = await self.batcher.submit(message)
            if result.duplicate and span.is_recording():
                span.set_attribute("smsmesh.duplicate", True)
                span.set_attributes(tracing.message_attributes(result.message_id))
        if result.duplicate:
            if server_span.is_recording():
                server_span.set_attributes(tracing.message_attributes(result.message_id))
        else:
            metrics.APPLICATION_ACCEPTED.labels(app.name).inc()
            metrics.ROUTE_MESSAGES.labels(decision.route).inc()
            if failover:
                metrics.ROUTE_FAILOVERS.labels(decision.route).inc()
        body = {
            "id": result.message_id,
            "status": "accepted",
            "route": decision.route,
            "segments": segments,
            "encoding": encoding,
        }
        headers = {"Location": f"/v1/messages/{result.message_id}"}
        if result.duplicate:
            headers["Idempotent-Replayed"] = "true"
        return web.json_response(body, status=202, headers=headers)

    async def get(self, request: web.Request) -> web.Response:
        app = self.authenticate(request, self.config)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(tracing.message_attributes(request.match_info["id"]))
        record = await self.store.get_message(request.match_info["id"], app.name)
        if record is None:
            raise ApiError(404, "not_found", "no such message for this application")
        return web.json_response(message_json(record))

    async def explain(self, request: web.Request) -> web.Response:
        """Which route and targets a message would take, and why; nothing is sent."""
        config = self.config
        app = self.authenticate(request, config)
        req = await self._parse(request)
        destination, sender, encoding, segments, routing_input = self._plan(app, config, req)
        decision = config.routing.decide(routing_input, await self.health.current())
        return web.json_response(
            {
                "to": destination,
                "from": sender,
                "encoding": encoding,
                "segments": segments,
                **_decision_json(decision),
            }
        )


def _decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "route": decision.route,
        "targets": list(decision.targets),
        "explanation": decision.explanation_json(),
    }


def _trace_context(span: trace.Span, request: web.Request) -> dict[str, str]:
    """What is stored with the message: the accept span's context when tracing, else the
    caller's own W3C headers, passed through untouched."""
    if tracing.enabled():
        return tracing.inject(span)
    return tracing.w3c_headers(request.headers)


def _took_failover(config: RouterConfig, routing_input: RoutingInput, decision: Decision) -> bool:
    """Whether health moved a later target ahead of the route's preferred first one.

    Only computed when some target is not available (otherwise the order is the route's
    own): routing the same input without health gives the preferred order.
    """
    if not decision.targets or all(n.state is TargetState.AVAILABLE for n in decision.target_notes):
        return False
    preferred = config.routing.decide(routing_input, {}, explain=False).targets
    return bool(preferred) and preferred[0] != decision.targets[0]

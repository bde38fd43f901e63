"""Status of every object, cert-manager/CloudNativePG style, computed from what was observed.

Pure functions of (object, verdict, connector Deployment, store snapshot, previous
conditions). `lastTransitionTime` moves only when a condition's status changes, and no
message contains a clock reading, so recomputing an unchanged world gives an identical
status and no write.

SmppConnection conditions:
    ConnectorAvailable  the Deployment controller runs a pod of the current spec
    Bound               the connector reported a live bind to the store recently
    Ready               valid, not paused, connector available and bound (the summary)
SmsRoute / SmsApplication conditions:
    ResolvedRefs        every reference resolves
    Ready               valid and published in the routing snapshot
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from smsmesh.model import ConnectionState
from smsmesh.resources import Condition, ConditionStatus, ConditionType, upsert_condition
from smsmesh_operator import names
from smsmesh_operator.evaluate import INVALID, Verdict
from smsmesh_operator.observed import ManagedObject

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN

PAUSED = "Paused"
BOUND = "Bound"
NOT_BOUND = "NotBound"
NOT_REPORTING = "NotReporting"
STORE_UNAVAILABLE = "StoreUnavailable"
STORE_NOT_CONFIGURED = "StoreNotConfigured"
CONNECTOR_UNAVAILABLE = "ConnectorUnavailable"
ACCEPTED = "Accepted"


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """What the store said at one moment (or why it could not be read)."""

    configured: bool = False
    states: Mapping[str, ConnectionState] = field(default_factory=dict)
    depths: Mapping[str, int] = field(default_factory=dict)
    submitted: Mapping[str, int] = field(default_factory=dict)  # over `rate_window` seconds
    rate_window: float = 60.0
    error: str | None = None
    taken_at: float = 0.0  # unix time

    @property
    def readable(self) -> bool:
        return self.configured and self.error is None


@dataclass(frozen=True, slots=True)
class Transition:
    """Something worth a Kubernetes Event."""

    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True, slots=True)
class _Cond:
    status: ConditionStatus
    reason: str
    message: str


def previous_conditions(status: Mapping[str, Any] | None) -> list[Condition]:
    """The conditions of a live status; malformed entries (not ours) are dropped."""
    out: list[Condition] = []
    for raw in (status or {}).get("conditions") or []:
        try:
            out.append(Condition.model_validate(raw))
        except ValidationError:
            continue
    return out


def _find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def _apply(
    base: list[Condition], generation: int | None, updates: list[tuple[str, _Cond]]
) -> list[Condition]:
    conditions = list(base)
    for type_, cond in updates:
        conditions = upsert_condition(
            conditions,
            type_,
            cond.status,
            cond.reason,
            cond.message,
            observed_generation=generation,
        )
    return conditions


def _bound(
    name: str, store: StoreSnapshot, now: float, stale_after: float
) -> tuple[_Cond, ConnectionState | None]:
    if not store.configured:
        return _Cond(
            UNKNOWN, STORE_NOT_CONFIGURED, "SMSMESH_STORE_URL is not set: bind state unknown"
        ), None
    if store.error is not None:
        return _Cond(UNKNOWN, STORE_UNAVAILABLE, f"cannot read the store: {store.error}"), None
    state = store.states.get(name)
    if state is None:
        return _Cond(FALSE, NOT_REPORTING, "the connector has not published its state"), None
    if now - state.updated_at > stale_after:
        message = f"the connector has not reported for more than {stale_after:g} s"
        return _Cond(FALSE, NOT_REPORTING, message), state
    if not state.bound:
        return _Cond(FALSE, NOT_BOUND, state.last_error or "the connector is not bound"), state
    return _Cond(TRUE, BOUND, "the connector is bound to the SMSC"), state


def _connector(verdict: Verdict, deployment: ManagedObject | None, paused: bool) -> _Cond:
    if paused:
        return _Cond(FALSE, PAUSED, "scaled to zero by the smsmesh.io/paused annotation")
    if deployment is None:
        if not verdict.ok:
            return _Cond(FALSE, "NotDeployed", "not deployed while the SmppConnection is not valid")
        return _Cond(FALSE, "NotDeployed", "the connector Deployment does not exist yet")
    if deployment.available():
        return _Cond(TRUE, "MinimumReplicasAvailable", "the connector pod is available")
    message = deployment.progress_message or "waiting for the connector pod to become available"
    return _Cond(FALSE, "Unavailable", message)


def connection_status(
    body: Mapping[str, Any],
    verdict: Verdict,
    deployment: ManagedObject | None,
    store: StoreSnapshot,
    *,
    now: float,
    stale_after: float,
    base: list[Condition],
) -> tuple[dict[str, Any], list[Transition]]:
    """(status in wire form, events to post) for an SmppConnection."""
    meta = body.get("metadata") or {}
    name = str(meta.get("name", ""))
    generation = meta.get("generation")
    paused = names.is_paused(meta.get("annotations"))
    connector = _connector(verdict, deployment, paused)
    bound, state = _bound(name, store, now, stale_after)
    if not verdict.ok:
        ready = _Cond(FALSE, verdict.reason, verdict.message)
    elif paused:
        ready = _Cond(FALSE, PAUSED, f"paused by annotation {names.ANNOTATION_PAUSED}=true")
    elif connector.status != TRUE:
        ready = _Cond(FALSE, CONNECTOR_UNAVAILABLE, connector.message)
    elif bound.status != TRUE:
        ready = _Cond(FALSE, bound.reason, bound.message)
    else:
        ready = _Cond(TRUE, BOUND, "the connector is running and bound")
    conditions = _apply(
        base,
        generation,
        [
            (ConditionType.READY, ready),
            (ConditionType.CONNECTOR_AVAILABLE, connector),
            (ConditionType.BOUND, bound),
        ],
    )
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [c.to_wire() for c in conditions],
        "bound": None if bound.status == UNKNOWN else bound.status == TRUE,
        "queueDepth": store.depths.get(name, 0) if store.readable else None,
        "lastError": state.last_error if state is not None and state.last_error else None,
        "achievedTps": (
            round(store.submitted.get(name, 0) / store.rate_window, 2) if store.readable else None
        ),
    }
    return status, _transitions(base, conditions)


def resource_status(
    body: Mapping[str, Any], verdict: Verdict, *, base: list[Condition]
) -> tuple[dict[str, Any], list[Transition]]:
    """(status in wire form, events to post) for an SmsRoute or SmsApplication."""
    generation = (body.get("metadata") or {}).get("generation")
    if verdict.ok:
        ready = _Cond(
            TRUE, ACCEPTED, f"published in the routing snapshot {names.ROUTING_CONFIGMAP}"
        )
        refs = _Cond(TRUE, "Resolved", "every reference resolves")
    elif verdict.reason == INVALID:
        ready = _Cond(FALSE, verdict.reason, verdict.message)
        refs = _Cond(UNKNOWN, verdict.reason, "not checked while the spec is invalid")
    else:
        ready = _Cond(FALSE, verdict.reason, verdict.message)
        refs = _Cond(FALSE, verdict.reason, verdict.message)
    conditions = _apply(
        base, generation, [(ConditionType.READY, ready), (ConditionType.RESOLVED_REFS, refs)]
    )
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [c.to_wire() for c in conditions],
    }
    return status, _transitions(base, conditions)


def _transitions(before: list[Condition], after: list[Condition]) -> list[Transition]:
    out: list[Transition] = []
    ready_before = _find(before, ConditionType.READY)
    ready_after = _find(after, ConditionType.READY)
    if ready_after is not None:
        was = ready_before.reason if ready_before is not None else None
        if ready_after.reason == PAUSED and was != PAUSED:
            out.append(Transition("Paused", "connector scaled to zero; the bind is released"))
        elif was == PAUSED and ready_after.reason != PAUSED:
            out.append(Transition("Resumed", "connector scaled back to one"))
        if ready_after.status == FALSE and ready_after.reason.startswith(("Invalid", "Unresolved")):
            changed = ready_before is None or (
                ready_before.reason,
                ready_before.message,
            ) != (ready_after.reason, ready_after.message)
            if changed:
                out.append(Transition(ready_after.reason, ready_after.message, warning=True))
    bound_before = _find(before, ConditionType.BOUND)
    bound_after = _find(after, ConditionType.BOUND)
    if bound_after is not None:
        was_bound = bound_before is not None and bound_before.status == TRUE
        if bound_after.status == TRUE and not was_bound:
            out.append(Transition("Bound", bound_after.message))
        elif was_bound and bound_after.status != TRUE:
            out.append(Transition("Unbound", bound_after.message, warning=True))
    return out


def normalized(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """A status for comparison: no null fields, conditions in their canonical wire form."""
    out = {k: v for k, v in (status or {}).items() if v is not None and k != "conditions"}
    out["conditions"] = [c.to_wire() for c in previous_conditions(status)]
    return out

"""The routing engine: which SmsRoute takes a message, and in which order its targets
are tried. Pure (no I/O, no clock, no randomness), so the answer to "which route would
you take, and why" is exactly the route a real message takes.

Rules:

* Routes are evaluated by ascending `spec.priority`, then name (then namespace);
  the first route whose match criteria all hold wins. An empty match takes anything.
* Within a criterion the listed values are alternatives: destination prefixes (the
  longest matching one is reported), countries (the destination's ISO region),
  sender globs (case-sensitive, `*` and `?`), application names, priority names.
* Targets come back in three tiers, each in the route's order: available
  connections, then connections with no health report yet, then unavailable ones.
  Unavailable targets are kept as later failover targets: a message is durable and
  waits for a connection to come back rather than failing. When every target is
  unavailable the decision still carries them all, and says so.
* Weights: when a route's targets carry weights and the input has a `split_key`
  (the message id), each tier is ordered by a weighted draw seeded by that key, so a
  route splits first attempts in proportion to the weights, and the same message
  always gets the same order. Weight 0 targets come last within their tier
  (failover only). Without a split key the route's order is used.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from smsmesh.addresses import normalize_sender_glob
from smsmesh.resources.models import SmsRoute

PRIORITY_NAMES = ("bulk", "normal", "high")


@dataclass(frozen=True, slots=True)
class RoutingInput:
    """The facts about a message that routing may look at."""

    destination: str  # E.164 digits, no '+'
    region: str | None  # ISO 3166-1 alpha-2 of the destination; None if non-geographic
    sender: str  # as classified: digits without '+', or the alphanumeric text
    application: str  # SmsApplication name
    priority: str | IntEnum = "normal"  # bulk | normal | high (or smsmesh.model.Priority)
    split_key: str | None = None  # stable per message (its id): seeds weighted splits


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """What the router currently believes about a connection."""

    available: bool
    reason: str = ""


class TargetState(StrEnum):
    AVAILABLE = "available"
    UNKNOWN = "unknown"  # no health report for this connection
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class RouteEvaluation:
    """Why one route did or did not match."""

    route: str
    matched: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TargetNote:
    """Where one target of the chosen route was placed, and why."""

    connection: str
    state: TargetState
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of routing one message.

    `route` is None when no route matched (the API answers `no_route`).
    `targets[0]` is tried first. `explanation` lists the routes evaluated, in order,
    up to and including the one that matched (empty when `decide(explain=False)`).
    """

    route: str | None
    targets: tuple[str, ...]
    explanation: tuple[RouteEvaluation, ...]
    target_notes: tuple[TargetNote, ...]
    summary: str

    @property
    def all_unavailable(self) -> bool:
        """The route matched but none of its targets is known to be available."""
        return bool(self.targets) and not any(
            n.state == TargetState.AVAILABLE for n in self.target_notes
        )

    def explanation_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "routes": [
                {"route": e.route, "matched": e.matched, "reasons": list(e.reasons)}
                for e in self.explanation
            ],
            "targets": [
                {"connection": n.connection, "state": n.state.value, "reason": n.reason}
                for n in self.target_notes
            ],
        }


def _priority_name(priority: str | IntEnum) -> str:
    if isinstance(priority, IntEnum):
        return priority.name.lower()
    return priority.lower()


def _normalize_prefix(prefix: str) -> str:
    if prefix.startswith("+"):
        return prefix[1:]
    if prefix.startswith("00"):
        return prefix[2:]
    return prefix


def _listed(values: Iterable[str]) -> str:
    return "[" + ", ".join(values) + "]"


@dataclass(frozen=True, slots=True)
class _Route:
    name: str
    priority: int
    prefixes: tuple[str, ...]  # longest first, so the first hit is the most specific
    countries: frozenset[str]
    sender_globs: tuple[str, ...]
    sender_re: re.Pattern[str] | None
    applications: frozenset[str]
    priorities: frozenset[str]
    targets: tuple[str, ...]
    weights: tuple[int, ...] | None

    @classmethod
    def from_resource(cls, route: SmsRoute) -> _Route:
        match = route.spec.match
        prefixes = sorted(
            {_normalize_prefix(p) for p in match.destination_prefixes},
            key=lambda p: (-len(p), p),
        )
        globs = tuple(dict.fromkeys(normalize_sender_glob(g) for g in match.senders))
        sender_re = (
            re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)) if globs else None
        )
        weights = tuple(t.weight for t in route.spec.targets if t.weight is not None)
        return cls(
            name=route.metadata.name,
            priority=route.spec.priority,
            prefixes=tuple(prefixes),
            countries=frozenset(c.upper() for c in match.countries),
            sender_globs=globs,
            sender_re=sender_re,
            applications=frozenset(match.applications),
            priorities=frozenset(p.value for p in match.priorities),
            targets=tuple(t.connection for t in route.spec.targets),
            weights=weights if len(weights) == len(route.spec.targets) else None,
        )

    @property
    def is_catch_all(self) -> bool:
        return not (
            self.prefixes
            or self.countries
            or self.sender_globs
            or self.applications
            or self.priorities
        )

    def matches(self, msg: RoutingInput, priority: str) -> bool:
        """The fast path: all criteria, short-circuiting, no strings built."""
        return (
            (not self.prefixes or msg.destination.startswith(self.prefixes))
            and (not self.countries or msg.region in self.countries)
            and (self.sender_re is None or self.sender_re.match(msg.sender) is not None)
            and (not self.applications or msg.application in self.applications)
            and (not self.priorities or priority in self.priorities)
        )

    def evaluate(self, msg: RoutingInput, priority: str) -> RouteEvaluation:
        """Every criterion, with a reason for each, for "why this route (not)"."""
        if self.is_catch_all:
            return RouteEvaluation(self.name, True, ("empty match: takes every message",))
        reasons: list[str] = []
        ok = True
        if self.prefixes:
            hit = next((p for p in self.prefixes if msg.destination.startswith(p)), None)
            if hit is not None:
                reasons.append(f"destination prefix {hit} matched")
            else:
                ok = False
                reasons.append(
                    f"destination matches none of prefixes {_listed(sorted(self.prefixes))}"
                )
        if self.countries:
            listed = _listed(sorted(self.countries))
            if msg.region is None:
                ok = False
                reasons.append(f"destination has no country (non-geographic), not in {listed}")
            elif msg.region in self.countries:
                reasons.append(f"country {msg.region} in {listed}")
            else:
                ok = False
                reasons.append(f"country {msg.region} not in {listed}")
        if self.sender_re is not None:
            hit = next((g for g in self.sender_globs if fnmatch.fnmatchcase(msg.sender, g)), None)
            if hit is not None:
                reasons.append(f"sender {msg.sender} matched {hit}")
            else:
                ok = False
                reasons.append(f"sender {msg.sender} not in {_listed(self.sender_globs)}")
        if self.applications:
            listed = _listed(sorted(self.applications))
            if msg.application in self.applications:
                reasons.append(f"application {msg.application} in {listed}")
            else:
                ok = False
                reasons.append(f"application {msg.application} not in {listed}")
        if self.priorities:
            listed = _listed(p for p in PRIORITY_NAMES if p in self.priorities)
            if priority in self.priorities:
                reasons.append(f"priority {priority} in {listed}")
            else:
                ok = False
                reasons.append(f"priority {priority} not in {listed}")
        return RouteEvaluation(self.name, ok, tuple(reasons))

    def describe(self) -> dict[str, Any]:
        """The compiled route as JSON: normalised criteria and targets (GET /v1/routes)."""
        return {
            "name": self.name,
            "priority": self.priority,
            "match": {
                "destination_prefixes": list(self.prefixes),
                "countries": sorted(self.countries),
                "senders": list(self.sender_globs),
                "applications": sorted(self.applications),
                "priorities": [p for p in PRIORITY_NAMES if p in self.priorities],
            },
            "targets": [
                {"connection": t, "weight": None if self.weights is None else self.weights[i]}
                for i, t in enumerate(self.targets)
            ],
        }

    def base_order(self, split_key: str | None) -> tuple[str, ...]:
        if self.weights is None or split_key is None:
            return self.targets
        return _weighted_order(self.targets, self.weights, split_key)


def _uniform(split_key: str, connection: str) -> float:
    """A stable number in (0, 1) for one (message, target) pair."""
    digest = hashlib.blake2b(f"{split_key}\0{connection}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 1) / (2**64 + 2)


def _weighted_order(
    targets: tuple[str, ...], weights: tuple[int, ...], key: str
) -> tuple[str, ...]:
    """Weighted sampling without replacement (Efraimidis-Spirakis, as exponential
    clocks -ln(u)/w, smallest first): the first element is target i with probability
    w_i / sum(w). Weight 0 sorts last."""

    def rank(item: tuple[int, str]) -> tuple[int, float, int]:
        index, name = item
        weight = weights[index]
        if weight <= 0:
            return (1, 0.0, index)
        return (0, -math.log(_uniform(key, name)) / weight, index)

    return tuple(name for _, name in sorted(enumerate(targets), key=rank))


def _place_targets(
    order: tuple[str, ...], health: Mapping[str, TargetHealth]
) -> tuple[tuple[str, ...], tuple[TargetNote, ...]]:
    tiers: dict[TargetState, list[TargetNote]] = {s: [] for s in TargetState}
    for name in order:
        h = health.get(name)
        if h is None:
            note = TargetNote(
                name, TargetState.UNKNOWN, "no health reported yet; tried after available targets"
            )
        elif h.available:
            note = TargetNote(name, TargetState.AVAILABLE, h.reason or "available")
        else:
            why = h.reason or "unavailable"
            note = TargetNote(
                name, TargetState.UNAVAILABLE, f"{why}; kept as a later failover target"
            )
        tiers[note.state].append(note)
    notes = tuple(n for state in TargetState for n in tiers[state])
    return tuple(n.connection for n in notes), notes


class RoutingTable:
    """Compiled routes, immutable. Build a new table on every configuration change."""

    __slots__ = ("_routes",)

    def __init__(self, routes: Sequence[_Route]) -> None:
        self._routes = tuple(routes)

    @classmethod
    def compile(cls, routes: Sequence[SmsRoute]) -> RoutingTable:
        """Sort by (priority, name, namespace), normalise prefixes and globs once."""
        seen: set[tuple[str, str]] = set()
        for route in routes:
            key = (route.metadata.namespace, route.metadata.name)
            if key in seen:
                raise ValueError(f"SmsRoute {key[0]}/{key[1]} given twice")
            seen.add(key)
        ordered = sorted(
            routes, key=lambda r: (r.spec.priority, r.metadata.name, r.metadata.namespace)
        )
        return cls([_Route.from_resource(r) for r in ordered])

    @property
    def route_names(self) -> tuple[str, ...]:
        """Route names in evaluation order."""
        return tuple(r.name for r in self._routes)

    def describe(self) -> list[dict[str, Any]]:
        """Every route in evaluation order, as `_Route.describe` shows it."""
        return [r.describe() for r in self._routes]

    def connections(self) -> frozenset[str]:
        """Every connection some route can send to."""
        return frozenset(t for r in self._routes for t in r.targets)

    def __len__(self) -> int:
        return len(self._routes)

    def decide(
        self,
        msg: RoutingInput,
        health: Mapping[str, TargetHealth] | None = None,
        *,
        explain: bool = True,
    ) -> Decision:
        """Route one message. With `explain=False` no reasons are built (the fast path
        for sending); the route and target order are the same either way."""
        health = {} if health is None else health
        priority = _priority_name(msg.priority)
        evaluations: list[RouteEvaluation] = []
        chosen: _Route | None = None
        for route in self._routes:
            if explain:
                evaluation = route.evaluate(msg, priority)
                evaluations.append(evaluation)
                matched = evaluation.matched
            else:
                matched = route.matches(msg, priority)
            if matched:
                chosen = route
                break
        if chosen is None:
            summary = (
                f"no route matched ({len(self._routes)} evaluated)"
                if self._routes
                else "no routes are configured"
            )
            return Decision(None, (), tuple(evaluations), (), summary)
        targets, notes = _place_targets(chosen.base_order(msg.split_key), health)
        available = [n for n in notes if n.state == TargetState.AVAILABLE]
        if available:
            summary = f"route {chosen.name} matched; first target {targets[0]}"
        else:
            summary = (
                f"route {chosen.name} matched but none of its targets is available; "
                "the message waits in the queue for one of them"
            )
        return Decision(chosen.name, targets, tuple(evaluations), notes, summary)

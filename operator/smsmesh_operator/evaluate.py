"""Validation, done once for everyone: which objects of a namespace are usable, and why not.

The API server already enforces the CRD schema and its CEL rules; this adds what only the
pydantic models know (e.g. a default sender outside the allowed senders) and what spans
objects (`ResourceSet.validate_references`: route targets, applications, Secrets and keys).
Secrets are judged by their key names only; their values are never read here.

An object that fails either check gets `Ready=False` and is left out of what the operator
publishes; the rest are used. Only existence cascades: a route whose target connection
exists but is not Ready stays in the snapshot (the router fails over around an
unavailable target, which is a runtime matter), while a route to a connection that does
not exist (or cannot even be parsed) is itself unresolved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from smsmesh.resources import (
    ResourceError,
    ResourceSet,
    Secret,
    SmppConnection,
    SmsApplication,
    SmsRoute,
    parse_resource,
)
from smsmesh_operator.observed import SecretInfo

VALID = "Valid"
INVALID = "InvalidSpec"
UNRESOLVED = "UnresolvedReferences"

# The loader's advice for local mode; in a cluster the fix is the Secret itself.
_LOCAL_HINT = re.compile(r"; (?:add it to the folder|add the key) or set SMSMESH_SECRET_\w+$")
_SUBJECT = re.compile(r"^(SmppConnection|SmsRoute|SmsApplication|SmscSimulator)/([^:]+): (.*)$")


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str
    name: str
    reason: str = VALID
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason == VALID

    @property
    def message(self) -> str:
        return "; ".join(self.problems)


@dataclass
class Evaluation:
    """Parsed objects of one namespace and a verdict for every object seen."""

    namespace: str
    connections: dict[str, SmppConnection] = field(default_factory=dict)
    routes: dict[str, SmsRoute] = field(default_factory=dict)
    applications: dict[str, SmsApplication] = field(default_factory=dict)
    verdicts: dict[tuple[str, str], Verdict] = field(default_factory=dict)

    def verdict(self, kind: str, name: str) -> Verdict:
        return self.verdicts.get((kind, name), Verdict(kind, name))

    def usable_connections(self) -> list[SmppConnection]:
        return [c for n, c in sorted(self.connections.items()) if self.verdict(c.kind, n).ok]

    def usable_routes(self) -> list[SmsRoute]:
        return [r for n, r in sorted(self.routes.items()) if self.verdict(r.kind, n).ok]

    def usable_applications(self) -> list[SmsApplication]:
        return [a for n, a in sorted(self.applications.items()) if self.verdict(a.kind, n).ok]


def _document(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the models validate: the object without status (the operator's own output)."""
    return {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}


def _secret_stub(namespace: str, info: SecretInfo) -> Secret | None:
    """A Secret with the right key names and empty values: enough to check references."""
    try:
        return Secret.model_validate(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": info.name, "namespace": namespace},
                "stringData": dict.fromkeys(sorted(info.keys), ""),
            }
        )
    except ValueError:
        return None


def evaluate(
    namespace: str,
    bodies: Iterable[Mapping[str, Any]],
    secrets: Iterable[SecretInfo],
) -> Evaluation:
    """Judge every smsmesh object in `bodies` (one namespace) against the others."""
    result = Evaluation(namespace)
    resources = ResourceSet(environ={})
    for body in bodies:
        kind = str(body.get("kind", ""))
        name = str((body.get("metadata") or {}).get("name", ""))
        try:
            parsed = parse_resource(_document(body))
        except ResourceError as exc:
            problems: tuple[str, ...] = exc.problems or (str(exc),)
            result.verdicts[(kind, name)] = Verdict(kind, name, INVALID, problems)
            continue
        if isinstance(parsed, SmppConnection):
            result.connections[name] = parsed
        elif isinstance(parsed, SmsRoute):
            result.routes[name] = parsed
        elif isinstance(parsed, SmsApplication):
            result.applications[name] = parsed
        else:
            continue
        resources.add(parsed)
        result.verdicts[(kind, name)] = Verdict(kind, name)
    for info in secrets:
        stub = _secret_stub(namespace, info)
        if stub is not None and stub.name not in resources.secrets:
            resources.add(stub)
    grouped: dict[tuple[str, str], list[str]] = {}
    for problem in resources.validate_references():
        match = _SUBJECT.match(problem)
        if match is None:  # every problem names its object; keep any other visible
            continue
        kind, name, text = match.groups()
        grouped.setdefault((kind, name), []).append(_LOCAL_HINT.sub("", text))
    for (kind, name), texts in grouped.items():
        if (kind, name) in result.verdicts:
            result.verdicts[(kind, name)] = Verdict(kind, name, UNRESOLVED, tuple(texts))
    return result

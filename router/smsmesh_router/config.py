"""The router's configuration: one immutable snapshot compiled from the resources.

A reload builds a whole new snapshot and swaps it in with one assignment, so a
request always sees one consistent set of applications, keys and routes, and a bad
edit (a route pointing nowhere, a missing Secret) leaves the previous snapshot live.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from smsmesh.resources import ResourceSet
from smsmesh_router.routing import RoutingTable

DEFAULT_MAX_SEGMENTS = 10


def key_digest(key: str) -> bytes:
    """API keys are held only as SHA-256 digests; lookups compare digests."""
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True, slots=True)
class AppConfig:
    name: str
    default_sender: str | None
    allowed_senders: tuple[re.Pattern[str], ...]
    callback_url: str | None
    default_validity_seconds: int

    def sender_allowed(self, sender: str) -> bool:
        return not self.allowed_senders or any(p.fullmatch(sender) for p in self.allowed_senders)


@dataclass(frozen=True, slots=True)
class RouterConfig:
    applications: Mapping[str, AppConfig]
    key_digests: Mapping[bytes, str]  # sha256(api key) -> application name
    routing: RoutingTable
    max_segments: int = DEFAULT_MAX_SEGMENTS
    problems: tuple[str, ...] = field(default=())

    def application_for_key(self, key: str) -> AppConfig | None:
        # A dict lookup on the digest leaks nothing useful about the key through timing.
        app = self.key_digests.get(key_digest(key))
        return None if app is None else self.applications[app]


def build_config(
    resources: ResourceSet, *, max_segments: int = DEFAULT_MAX_SEGMENTS
) -> RouterConfig:
    """Compile resources into a snapshot; raises `ResourceError` on unresolvable Secrets."""
    applications: dict[str, AppConfig] = {}
    digests: dict[bytes, str] = {}
    for app in resources.applications.values():
        spec = app.spec
        name = app.metadata.name
        for ref in spec.api_key_secret_refs:
            digests[key_digest(resources.secret_value(ref))] = name
        applications[name] = AppConfig(
            name=name,
            default_sender=spec.default_sender,
            allowed_senders=tuple(
                re.compile(fnmatch.translate(glob)) for glob in spec.allowed_senders
            ),
            callback_url=spec.callback_url,
            default_validity_seconds=spec.default_validity_seconds,
        )
    return RouterConfig(
        applications=applications,
        key_digests=digests,
        routing=RoutingTable.compile(list(resources.routes.values())),
        max_segments=max_segments,
        problems=tuple(resources.validate_references()),
    )

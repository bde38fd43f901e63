"""The router's configuration on Kubernetes: the operator's routing snapshot, followed live.

The operator validates SmsRoutes and SmsApplications once and publishes the valid ones
per namespace as two objects: ConfigMap `smsmesh-routing` (`routing.yaml`) and Secret
`smsmesh-routing-keys` (`keys.yaml`, v1 Secret documents with exactly the API keys the
applications reference). A router therefore needs get/list/watch on those two named
objects and nothing else: no access to the custom resources, none to other Secrets.

Each object is followed with LIST (fieldSelector metadata.name=...) then WATCH from the
list's resourceVersion, with bookmarks and a server-side timeout; the stream is resumed
from the last resourceVersion, and re-listed after 410 Gone or an error (with back-off).
The ConfigMap names the digest of the keys.yaml it goes with (annotation
smsmesh.io/keys-hash); a new configuration is built only from a matching pair, so the
router never runs with routes of one snapshot and keys of another. A pair that fails to
build keeps the previous configuration (logged).

Credentials: in a pod, the mounted ServiceAccount token (re-read on every connection, as
the kubelet rotates it) and CA with KUBERNETES_SERVICE_HOST/PORT; outside, $KUBECONFIG
(token or client-certificate users); or an explicit `KubeAccess` (tests).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from smsmesh.resources import ResourceError, ResourceSet, parse_resource
from smsmesh_router.config import RouterConfig, build_config

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
ROUTING_KEY = "routing.yaml"
KEYS_KEY = "keys.yaml"
KEYS_HASH_ANNOTATION = "smsmesh.io/keys-hash"
KEYS_HASH_LENGTH = 20
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)


class KubeAccessError(Exception):
    """No way to reach the API server was found or configured."""


class SnapshotError(Exception):
    """A snapshot that cannot be used (the previous configuration stays live)."""


class SnapshotPending(SnapshotError):
    """The two objects are from different snapshots: the operator is between its two
    writes, and the second one is on its way."""


def keys_digest(text: str) -> str:
    """The digest the operator writes in the keys-hash annotation: sha256 of keys.yaml."""
    return hashlib.sha256(text.encode()).hexdigest()[:KEYS_HASH_LENGTH]


# -- credentials ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeAccess:
    """Where the API server is and how to authenticate to it."""

    server: str
    ca_file: str | None = None
    ca_data: str | None = None  # PEM
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    client_cert: str | None = None
    client_key: str | None = None
    insecure: bool = False

    def bearer(self) -> str | None:
        """The token; a token file is read each time (rotated tokens keep working)."""
        if self.token_file is not None:
            return self.token_file.read_text(encoding="utf-8").strip() or None
        return self.token

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert and self.client_key:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx

    @classmethod
    def in_cluster(
        cls, environ: Mapping[str, str] = os.environ, root: Path = SERVICE_ACCOUNT_DIR
    ) -> KubeAccess:
        host = environ.get("KUBERNETES_SERVICE_HOST")
        port = environ.get("KUBERNETES_SERVICE_PORT", "443")
        token = root / "token"
        if not host or not token.exists():
            raise KubeAccessError(
                "not in a pod: no KUBERNETES_SERVICE_HOST or no ServiceAccount token "
                f"at {token}; set KUBECONFIG to run outside a cluster"
            )
        host = f"[{host}]" if ":" in host else host
        ca = root / "ca.crt"
        return cls(
            server=f"https://{host}:{port}",
            ca_file=str(ca) if ca.exists() else None,
            token_file=token,
        )

    @classmethod
    def from_kubeconfig(cls, path: Path) -> KubeAccess:
        """The current context of a kubeconfig (token, tokenFile or client certificate)."""
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            context_name = config["current-context"]
            context = _named(config, "contexts", context_name)["context"]
            cluster = _named(config, "clusters", context["cluster"])["cluster"]
            user = _named(config, "users", context["user"]).get("user") or {}
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise KubeAccessError(f"{path}: not a usable kubeconfig ({exc})") from None
        base = path.parent
        ca_data = cluster.get("certificate-authority-data")
        token_file = user.get("tokenFile")
        cert, key = user.get("client-certificate"), user.get("client-key")
        if user.get("client-certificate-data") and user.get("client-key-data"):
            cert = _private_file(_b64(user["client-certificate-data"]), "cert")
            key = _private_file(_b64(user["client-key-data"]), "key")
        return cls(
            server=str(cluster["server"]).rstrip("/"),
            ca_file=_relative(base, cluster.get("certificate-authority")),
            ca_data=_b64(ca_data) if ca_data else None,
            token=user.get("token"),
            token_file=Path(_relative(base, token_file) or "") if token_file else None,
            client_cert=_relative(base, cert),
            client_key=_relative(base, key),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> KubeAccess:
        """$KUBECONFIG (its first file) if set, else the pod's ServiceAccount."""
        kubeconfig = environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        if kubeconfig:
            return cls.from_kubeconfig(Path(kubeconfig).expanduser())
        return cls.in_cluster(environ)


def _named(config: Mapping[str, Any], section: str, name: str) -> dict[str, Any]:
    for item in config.get(section) or []:
        if item.get("name") == name:
            return dict(item)
    raise KeyError(f"{section} has no entry {name!r}")


def _relative(base: Path, value: str | None) -> str | None:
    if not value:
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _b64(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise KubeAccessError(f"kubeconfig holds invalid base64 data ({exc})") from None


def _private_file(content: str, suffix: str) -> str:
    """ssl needs files for client certificates; write them readable by this user only."""
    fd, name = tempfile.mkstemp(prefix="smsmesh-kube-", suffix=f".{suffix}")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(content)
    return name


# -- snapshot --------------------------------------------------------------------------------


def load_documents(text: str, resources: ResourceSet, *, origin: str) -> None:
    """Add every smsmesh object and Secret of a multi-document YAML string to `resources`.

    Raises `ResourceError` naming `origin` and the document for invalid YAML or objects.
    """
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ResourceError(f"{origin}: not valid YAML: {exc}") from None
    for index, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise ResourceError(f"{origin}, document {index}: not a mapping")
        obj = parse_resource(doc, document=index)
        if obj is None:
            raise ResourceError(
                f"{origin}, document {index}: unexpected {doc.get('apiVersion')}/{doc.get('kind')}"
            )
        resources.add(obj)


def decode_secret_value(secret: Mapping[str, Any], key: str) -> str | None:
    data = (secret.get("data") or {}).get(key)
    if data is None:
        return None
    try:
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise SnapshotError(f"Secret data {key!r} is not base64-encoded UTF-8") from None


def config_from_snapshot(
    configmap: Mapping[str, Any] | None, secret: Mapping[str, Any] | None
) -> RouterConfig:
    """A router configuration from the two snapshot objects.

    Raises `SnapshotError` when they are missing, do not belong together yet (the
    ConfigMap names another keys.yaml than the Secret holds) or do not build.
    """
    if configmap is None:
        raise SnapshotError("the routing ConfigMap does not exist (is the operator running?)")
    if secret is None:
        raise SnapshotError("the routing keys Secret does not exist (is the operator running?)")
    routing = (configmap.get("data") or {}).get(ROUTING_KEY)
    keys = decode_secret_value(secret, KEYS_KEY)
    if routing is None or keys is None:
        raise SnapshotError(f"the snapshot lacks {ROUTING_KEY} or {KEYS_KEY}")
    wanted = ((configmap.get("metadata") or {}).get("annotations") or {}).get(KEYS_HASH_ANNOTATION)
    if wanted != keys_digest(keys):
        raise SnapshotPending("routing ConfigMap and keys Secret are from different snapshots")
    resources = ResourceSet(environ={})
    try:
        load_documents(routing, resources, origin=ROUTING_KEY)
        load_documents(keys, resources, origin=KEYS_KEY)
        config = build_config(resources)
    except (ResourceError, ValueError) as exc:
        raise SnapshotError(str(exc)) from None
    return config


# -- watching ----------------------------------------------------------------------------------


class _Gone(Exception):
    """The resourceVersion is too old (410): list again."""


class ObjectFollower:
    """Keeps `current` equal to one named object (None while it does not exist)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        access: KubeAccess,
        path: str,
        name: str,
        on_change: Callable[[], None],
        *,
        watch_timeout: float,
        request_timeout: float,
    ) -> None:
        self._session = session
        self._access = access
        self._path = path  # the collection, e.g. /api/v1/namespaces/ns/configmaps
        self._selector = f"metadata.name={name}"
        self._on_change = on_change
        self._watch_timeout = watch_timeout
        self._request_timeout = request_timeout
        self.current: dict[str, Any] | None = None
        self.resource_version: str | None = None
        self.listed = asyncio.Event()

    def _headers(self) -> dict[str, str]:
        token = self._access.bearer()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _set(self, obj: dict[str, Any] | None) -> None:
        if obj != self.current:
            self.current = obj
            self._on_change()

    async def list_once(self) -> None:
        params = {"fieldSelector": self._selector}
        timeout = aiohttp.ClientTimeout(total=self._request_timeout)
        async with self._session.get(
            self._path, params=params, headers=self._headers(), timeout=timeout
        ) as response:
            if response.status != 200:
                raise SnapshotError(f"LIST {self._path}: HTTP {response.status}")
            body = await response.json()
        items = body.get("items") or []
        self.resource_version = body["metadata"]["resourceVersion"]
        first = not self.listed.is_set()
        self.listed.set()
        obj = items[0] if items else None
        if first:  # the first listing counts even when the object does not exist
            self.current = obj
            self._on_change()
        else:
            self._set(obj)

    async def watch_once(self) -> None:
        """One watch request, until the server ends it; `_Gone` when re-listing is due."""
        params = {
            "watch": "1",
            "fieldSelector": self._selector,
            "resourceVersion": self.resource_version or "",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(int(self._watch_timeout)),
        }
        # The server ends the stream after timeoutSeconds and sends bookmarks meanwhile:
        # silence for much longer than that means a dead connection.
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._request_timeout, sock_read=self._watch_timeout + 30
        )
        async with self._session.get(
            self._path, params=params, headers=self._headers(), timeout=timeout
        ) as response:
            if response.status == 410:
                raise _Gone()
            if response.status != 200:
                raise SnapshotError(f"WATCH {self._path}: HTTP {response.status}")
            async for line in response.content:
                if line.strip():
                    self._event(json.loads(line))

    def _event(self, event: Mapping[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone()
            raise SnapshotError(f"watch error: {obj.get('message')}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind in ("ADDED", "MODIFIED"):
            self._set(dict(obj))
        elif kind == "DELETED":
            self._set(None)

    async def run(self) -> None:
        """List, then watch forever; re-list after 410 or errors (with back-off)."""
        failures = 0
        need_list = self.resource_version is None
        while True:
            try:
                if need_list:
                    await self.list_once()
                    need_list = False
                await self.watch_once()
                failures = 0
                continue
            except _Gone:
                log.info("watch of %s expired (410); listing again", self._path)
                need_list = True
                continue
            except (aiohttp.ClientError, OSError, SnapshotError, ValueError, KeyError) as exc:
                # OSError includes timeouts and a token file missing during rotation.
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("following %s failed (%s); again in %g s", self._path, exc, delay)
                need_list = True
            await asyncio.sleep(delay)


class KubeSnapshotSource:
    """Feeds the router configurations built from the operator's routing snapshot."""

    def __init__(
        self,
        namespace: str,
        configmap: str = "smsmesh-routing",
        secret: str = "smsmesh-routing-keys",
        *,
        apply: Callable[[RouterConfig], None],
        access: KubeAccess | None = None,
        watch_timeout: float = 240.0,
        request_timeout: float = 30.0,
    ) -> None:
        self.namespace = namespace
        self.configmap = configmap
        self.secret = secret
        self._apply = apply
        self._access = access
        self._watch_timeout = watch_timeout
        self._request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None
        self._followers: list[ObjectFollower] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._applied_pair: tuple[str | None, str | None] | None = None
        self.applied = 0  # configurations that went live
        self.rejected = 0  # snapshots that did not build
        self.last_error: str | None = None
        self.changed = asyncio.Condition()  # notified after every attempt
        self._notifications: set[asyncio.Task[None]] = set()

    async def start(self, initial_timeout: float = 10.0) -> None:
        """Start following; waits up to `initial_timeout` for the first listing of both
        objects (applying them if they build), then returns either way."""
        access = self._access or KubeAccess.from_environment()
        self._access = access
        self._session = aiohttp.ClientSession(
            base_url=access.server,
            connector=aiohttp.TCPConnector(ssl=access.ssl_context()),
        )
        prefix = f"/api/v1/namespaces/{self.namespace}"
        for plural, name in (("configmaps", self.configmap), ("secrets", self.secret)):
            follower = ObjectFollower(
                self._session,
                access,
                f"{prefix}/{plural}",
                name,
                self._on_change,
                watch_timeout=self._watch_timeout,
                request_timeout=self._request_timeout,
            )
            self._followers.append(follower)
            self._tasks.append(asyncio.create_task(follower.run(), name=f"follow {name}"))
        try:
            async with asyncio.timeout(initial_timeout):
                for follower in self._followers:
                    await follower.listed.wait()
        except TimeoutError:
            log.warning(
                "no routing snapshot from %s/%s after %g s; starting without routes",
                self.namespace,
                self.configmap,
                initial_timeout,
            )

    def _on_change(self) -> None:
        if not all(f.listed.is_set() for f in self._followers):
            return  # the other object has not been listed yet
        configmap, secret = (f.current for f in self._followers)
        pair = tuple(_version(o) for o in (configmap, secret))
        if pair == self._applied_pair:
            return
        try:
            config = config_from_snapshot(configmap, secret)
        except SnapshotPending as exc:
            log.debug("%s", exc)
        except SnapshotError as exc:
            self.rejected += 1
            self.last_error = str(exc)
            log.warning("routing snapshot not applied, keeping the previous one: %s", exc)
        else:
            self._apply(config)
            self._applied_pair = (pair[0], pair[1])
            self.applied += 1
            self.last_error = None
            log.info(
                "routing snapshot applied: %d routes, %d applications",
                len(config.routing),
                len(config.applications),
            )
            for problem in config.problems:
                log.debug("snapshot note: %s", problem)
        task = asyncio.get_running_loop().create_task(self._notify())
        self._notifications.add(task)  # held until done: the loop keeps only weak refs
        task.add_done_callback(self._notifications.discard)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _version(obj: Mapping[str, Any] | None) -> str | None:
    return None if obj is None else (obj.get("metadata") or {}).get("resourceVersion")

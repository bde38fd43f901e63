"""Local mode reads the same resource YAML a platform team would `kubectl apply`.

`load_folder` turns a folder of multi-document YAML files into a `ResourceSet`:
every document validated by its model, errors naming the file, the document index,
the object and the field. Secrets are ordinary `v1/Secret` documents; any value can
be overridden from the environment (`SMSMESH_SECRET_<NAME>_<KEY>`), so a real password
never has to be written into a file.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from pydantic import ValidationError

from smsmesh.resources.models import (
    KINDS,
    Resource,
    Secret,
    SecretKeyRef,
    SmppConnection,
    SmsApplication,
    SmscSimulator,
    SmsRoute,
)

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml")
ENV_PREFIX = "SMSMESH_SECRET_"
_NON_ALNUM = re.compile(r"[^A-Za-z0-9]")
_T = TypeVar("_T")
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ResourceError(Exception):
    """A resource file or object that cannot be used, with where it is and what is wrong."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | None = None,
        document: int | None = None,
        kind: str | None = None,
        name: str | None = None,
        problems: tuple[str, ...] = (),
    ) -> None:
        where = []
        if file is not None:
            where.append(str(file))
        if document is not None:
            where.append(f"document {document}")
        if kind:
            where.append(f"{kind}/{name}" if name else kind)
        text = f"{', '.join(where)}: {message}" if where else message
        if problems:
            text += "".join(f"\n  - {p}" for p in problems)
        super().__init__(text)
        self.file = file
        self.document = document
        self.kind = kind
        self.name = name
        self.problems = problems


def secret_env_name(secret: str, key: str) -> str:
    """`SMSMESH_SECRET_<NAME>_<KEY>`: upper case, every other character as '_'."""
    return ENV_PREFIX + _NON_ALNUM.sub("_", f"{secret}_{key}").upper()


def _pydantic_problems(exc: ValidationError) -> tuple[str, ...]:
    """One line per error: the camelCase field path and pydantic's message.

    The input value is never shown: it may be a Secret's data.
    """
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or "(document)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        out.append(f"{path}: {message}")
    return tuple(out)


def parse_resource(
    doc: Mapping[str, Any], *, file: Path | None = None, document: int | None = None
) -> Resource | Secret | None:
    """Validate one object (a YAML document, or a body from the API server).

    None for kinds smsmesh does not handle; `ResourceError` for an invalid object of a
    kind it does handle.
    """
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    name = name if isinstance(name, str) else None
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise ResourceError(
            "every document needs apiVersion and kind", file=file, document=document
        )
    model = KINDS.get((api_version, kind))
    if model is None:
        if kind in {k for _, k in KINDS}:
            raise ResourceError(
                f"unsupported apiVersion {api_version!r} for {kind}",
                file=file,
                document=document,
                kind=kind,
                name=name,
            )
        return None
    try:
        return cast("Resource | Secret", model.model_validate(doc))
    except ValidationError as exc:
        raise ResourceError(
            "invalid",
            file=file,
            document=document,
            kind=kind,
            name=name,
            problems=_pydantic_problems(exc),
        ) from None


def _put(table: dict[str, _T], name: str, obj: _T) -> None:
    if name in table:
        kind = getattr(obj, "kind", type(obj).__name__)
        raise ResourceError(f"{kind} {name!r} is defined twice", kind=kind, name=name)
    table[name] = obj


@dataclass
class ResourceSet:
    """Everything read from a folder, each kind by name."""

    connections: dict[str, SmppConnection] = field(default_factory=dict)
    routes: dict[str, SmsRoute] = field(default_factory=dict)
    applications: dict[str, SmsApplication] = field(default_factory=dict)
    simulators: dict[str, SmscSimulator] = field(default_factory=dict)
    secrets: dict[str, Secret] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)

    def add(self, obj: Resource | Secret) -> None:
        """Add an object; a second object of the same kind and name is an error."""
        name = obj.metadata.name
        if isinstance(obj, SmppConnection):
            _put(self.connections, name, obj)
        elif isinstance(obj, SmsRoute):
            _put(self.routes, name, obj)
        elif isinstance(obj, SmsApplication):
            _put(self.applications, name, obj)
        elif isinstance(obj, SmscSimulator):
            _put(self.simulators, name, obj)
        elif isinstance(obj, Secret):
            _put(self.secrets, name, obj)
        else:
            raise TypeError(f"not a resource smsmesh handles: {type(obj).__name__}")

    def secret_value(self, ref: SecretKeyRef) -> str:
        """The value of a Secret key: the environment override if set, else the Secret's.

        Raises `ResourceError` naming the Secret, the key and the env var to set; the
        message never contains a secret value.
        """
        env = secret_env_name(ref.name, ref.key)
        value = self.environ.get(env)
        if value is not None:
            return value
        secret = self.secrets.get(ref.name)
        if secret is None:
            raise ResourceError(
                f"Secret {ref.name!r} not found (needed for key {ref.key!r}); "
                f"add it to the folder or set {env}"
            )
        try:
            return secret.get(ref.key)
        except KeyError as exc:
            raise ResourceError(f"{exc.args[0]}; add the key or set {env}") from None

    def _secret_problem(self, ref: SecretKeyRef, user: str) -> str | None:
        try:
            self.secret_value(ref)
        except ResourceError as exc:
            return f"{user}: {exc}"
        return None

    def validate_references(self) -> list[str]:
        """Problems with references between objects, one sentence each; empty if none.

        Missing references do not stop local mode (a route to an unknown connection
        can never be used, messages for it fail clearly), so callers decide whether to
        refuse or to warn.
        """
        problems: list[str] = []
        for name, route in sorted(self.routes.items()):
            for target in route.spec.targets:
                conn = self.connections.get(target.connection)
                if conn is None:
                    problems.append(
                        f"SmsRoute/{name}: target connection {target.connection!r} does not exist"
                    )
                elif conn.spec.bind_type == "receiver":
                    problems.append(
                        f"SmsRoute/{name}: target connection {target.connection!r} is a "
                        "receiver bind and cannot send"
                    )
            for app_name in route.spec.match.applications:
                if app_name not in self.applications:
                    problems.append(
                        f"SmsRoute/{name}: match.applications names unknown {app_name!r}"
                    )
        for name, conn in sorted(self.connections.items()):
            inbound = conn.spec.inbound.application
            if inbound is not None:
                app_obj = self.applications.get(inbound)
                if app_obj is None:
                    problems.append(
                        f"SmppConnection/{name}: inbound.application {inbound!r} does not exist"
                    )
                elif not app_obj.spec.inbound.webhook_url:
                    problems.append(
                        f"SmppConnection/{name}: inbound.application {inbound!r} has no "
                        "inbound.webhookUrl to deliver to"
                    )
            creds = conn.spec.credentials_secret_ref
            for ref in (creds.system_id_ref(), creds.password_ref()):
                problem = self._secret_problem(ref, f"SmppConnection/{name}")
                if problem:
                    problems.append(problem)
            if conn.spec.tls.ca_secret_ref is not None:
                problem = self._secret_problem(
                    conn.spec.tls.ca_secret_ref, f"SmppConnection/{name}"
                )
                if problem:
                    problems.append(problem)
        for name, app in sorted(self.applications.items()):
            for ref in app.spec.api_key_secret_refs:
                problem = self._secret_problem(ref, f"SmsApplication/{name}")
                if problem:
                    problems.append(problem)
        for name, sim in sorted(self.simulators.items()):
            sim_creds = sim.spec.credentials_secret_ref
            if sim_creds is not None:
                for ref in (sim_creds.system_id_ref(), sim_creds.password_ref()):
                    problem = self._secret_problem(ref, f"SmscSimulator/{name}")
                    if problem:
                        problems.append(problem)
        return problems


def resource_files(path: Path) -> list[Path]:
    """The YAML files of a folder (not its subfolders), sorted by name; or the file itself."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ResourceError(f"{path}: no such file or folder")
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)


def _documents(file: Path) -> Iterator[tuple[int, Any]]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResourceError(f"cannot read: {exc}", file=file) from None
    index = 0
    try:
        for index, doc in enumerate(yaml.load_all(text, Loader=_Loader), start=1):
            yield index, doc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ResourceError(
            f"not valid YAML{where}: {problem}", file=file, document=index + 1
        ) from None


def _objects(doc: Any, file: Path, index: int) -> Iterator[Mapping[str, Any]]:
    """A document's objects: itself, or the items of a `kind: List` (kubectl output)."""
    if doc is None:
        return
    if not isinstance(doc, Mapping):
        raise ResourceError("a document must be a mapping (an object)", file=file, document=index)
    if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from _objects(item, file, index)
        return
    yield doc


def load_folder(path: Path | str, *, environ: Mapping[str, str] | None = None) -> ResourceSet:
    """Read every *.yaml/*.yml file in `path` (sorted; multi-document) into a ResourceSet.

    Unknown kinds are skipped with a warning (logged and kept in `.warnings`); any
    invalid smsmesh object raises `ResourceError`.
    """
    folder = Path(path)
    resources = ResourceSet(environ=os.environ if environ is None else environ)
    origins: dict[tuple[str, str], str] = {}
    for file in resource_files(folder):
        for index, doc in _documents(file):
            for obj in _objects(doc, file, index):
                resource = parse_resource(obj, file=file, document=index)
                if resource is None:
                    message = (
                        f"{file}, document {index}: skipping {obj.get('apiVersion')}/"
                        f"{obj.get('kind')} (not an smsmesh kind)"
                    )
                    log.warning("%s", message)
                    resources.warnings.append(message)
                    continue
                key = (resource.kind, resource.metadata.name)
                if key in origins:
                    raise ResourceError(
                        f"defined twice (first in {origins[key]})",
                        file=file,
                        document=index,
                        kind=key[0],
                        name=key[1],
                    )
                origins[key] = f"{file}, document {index}"
                resources.add(resource)
    return resources

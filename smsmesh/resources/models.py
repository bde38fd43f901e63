"""The custom resources of smsmesh, as pydantic models: the single source of truth.

Everything else is derived from these classes: the CRD YAML in `crds/` (see
`crdgen`), the local-mode loader (see `loader`), and what the operator, router and
connectors read. Field names are snake_case in Python and camelCase on the wire, as
Kubernetes users expect (`credentialsSecretRef`, `bindType`).

Design, after cert-manager and CloudNativePG:

* `spec` is what a platform team wants, `status` is what smsmesh observed. Specs forbid
  unknown fields so a typo (`tsp: 50`) fails loudly instead of being ignored; statuses
  ignore unknown fields so an older reader survives a newer writer.
* Status carries standard `conditions` (`metav1.Condition` shape, one `Ready`) and a
  top-level `observedGeneration`, which is what kstatus, Flux and Argo CD read.
* Credentials never sit in a spec: only references to Secrets.
* Rules that span several fields are pydantic validators here AND CEL
  `x-kubernetes-validations` in the CRD (attached with `_cel(...)`), so a cluster
  rejects at `kubectl apply` what local mode rejects at load time. Tests check that
  both agree on the same documents.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from smsmesh.addresses import AddressError, classify_sender, normalize_sender_glob

GROUP = "smsmesh.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# -- reusable value types ----------------------------------------------------------------

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
HOST = r"^[A-Za-z0-9.:\-\[\]]+$"
DIGIT_PREFIX = r"^(\+|00)?[1-9][0-9]{0,14}$"
NUMBER = r"^\+?[0-9]{1,15}$"
COUNTRY = r"^[A-Z]{2}$"
# Sender globs: the characters a sender id may have, plus `*` and `?` as wildcards.
SENDER_GLOB = r"^[A-Za-z0-9 +*?._&'!#%@()\-,/:;=<>\"$]{1,20}$"

_LABEL_RE = re.compile(DNS1123_LABEL)
_SUBDOMAIN_RE = re.compile(DNS1123_SUBDOMAIN)


def _check_label(value: str) -> str:
    if len(value) > 63 or not _LABEL_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use at most 63 lower-case letters, digits and "
            "'-', starting and ending with a letter or digit (RFC 1123 label)"
        )
    return value


def _check_subdomain(value: str) -> str:
    if len(value) > 253 or not _SUBDOMAIN_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (RFC 1123 subdomain)"
        )
    return value


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
    return value


def _cel(*rules: tuple[str, str]) -> dict[str, Any]:
    """JSON-schema extra carrying CEL rules (rule, message) for the CRD.

    Guard every field a rule reads with has(): the API server also evaluates rules
    against `default: {}` before nested defaults are filled in.
    """
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


# A name of another smsmesh resource (connection, application): becomes part of pod,
# metric and env-var names, hence the strict RFC 1123 label.
ResourceName = Annotated[
    str,
    Field(min_length=1, max_length=63, pattern=DNS1123_LABEL),
]
SecretName = Annotated[
    str,
    Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN),
]
SecretKey = Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY)]
HttpUrl = Annotated[
    str,
    Field(max_length=2048, pattern=r"^https?://[^\s]+$"),
    AfterValidator(_check_http_url),
]
DigitPrefix = Annotated[
    str,
    Field(
        pattern=DIGIT_PREFIX,
        description="E.164 digits, country code first, optionally after '+' or '00'",
    ),
]
InboundNumber = Annotated[
    str,
    Field(pattern=NUMBER, description="a number or prefix (digits, optional '+'), or a short code"),
]
SenderGlob = Annotated[
    str,
    Field(pattern=SENDER_GLOB, description="a sender, or a glob with * and ? (case-sensitive)"),
]
Seconds = Annotated[float, Field(gt=0, le=86400)]


class _Wire(BaseModel):
    """camelCase on the wire, snake_case in Python; accepts either when reading."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as Kubernetes JSON: camelCase, no nulls, enums as strings."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _Observed(_Wire):
    """Status parts: written by smsmesh, read tolerantly (unknown fields ignored)."""

    model_config = ConfigDict(extra="ignore")


# -- metadata ----------------------------------------------------------------------------


class ObjectMeta(_Observed):
    """Standard object metadata (the subset smsmesh reads; other fields are ignored)."""

    name: str = Field(description="RFC 1123 label: lower-case letters, digits and '-'")
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = None
    creation_timestamp: datetime | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        # Names of smsmesh objects end up in pod, Service and metric names: keep them labels.
        return _check_label(value)


class SecretMeta(ObjectMeta):
    """Secret metadata: Kubernetes allows dotted (subdomain) Secret names."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_subdomain(value)


# -- status ------------------------------------------------------------------------------


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Condition(_Observed):
    """One aspect of the object's observed state, in the `metav1.Condition` shape."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="CamelCase condition type, e.g. Ready, Bound",
    )
    status: ConditionStatus
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase machine-readable reason for the last transition",
    )
    message: str = Field(default="", max_length=32768, description="human-readable detail")
    last_transition_time: datetime = Field(
        default_factory=_now, description="when status last changed (not reason or message)"
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed for"
    )


class ConditionType:
    """Condition types smsmesh writes. `Ready` is the summary everyone reads."""

    READY = "Ready"
    BOUND = "Bound"
    CREDENTIALS_RESOLVED = "CredentialsResolved"
    CONNECTOR_AVAILABLE = "ConnectorAvailable"
    RESOLVED_REFS = "ResolvedRefs"


def upsert_condition(
    conditions: Iterable[Condition],
    type: str,
    status: ConditionStatus | bool,
    reason: str,
    message: str = "",
    *,
    observed_generation: int | None = None,
    now: datetime | None = None,
) -> list[Condition]:
    """Return `conditions` with `type` set; `lastTransitionTime` moves only on a status change.

    Keeping the timestamp stable when only the reason or message changes is what
    makes a reconcile idempotent (no status write when nothing changed).
    """
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    out: list[Condition] = []
    replaced = False
    for cond in conditions:
        if cond.type != type:
            out.append(cond)
            continue
        replaced = True
        changed = cond.status != status
        out.append(
            Condition(
                type=type,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=(now or _now()) if changed else cond.last_transition_time,
                observed_generation=observed_generation,
            )
        )
    if not replaced:
        out.append(
            Condition(
                type=type,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now or _now(),
                observed_generation=observed_generation,
            )
        )
    return out


_CONDITIONS_SCHEMA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class ResourceStatus(_Observed):
    """What smsmesh last observed. Read `Ready`, and trust it only when
    `observedGeneration` equals `metadata.generation`."""

    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, json_schema_extra=_CONDITIONS_SCHEMA
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status was computed for"
    )

    def condition(self, type: str) -> Condition | None:
        for cond in self.conditions:
            if cond.type == type:
                return cond
        return None

    def is_ready(self) -> bool:
        cond = self.condition(ConditionType.READY)
        return cond is not None and cond.status == ConditionStatus.TRUE


# -- references --------------------------------------------------------------------------


class SecretKeyRef(_Wire):
    """A key in a Secret in the same namespace."""

    name: SecretName
    key: SecretKey


class CredentialsSecretRef(_Wire):
    """The Secret (same namespace) that holds the SMPP system_id and password."""

    name: SecretName
    system_id_key: SecretKey = "systemId"
    password_key: SecretKey = "password"

    def system_id_ref(self) -> SecretKeyRef:
        return SecretKeyRef(name=self.name, key=self.system_id_key)

    def password_ref(self) -> SecretKeyRef:
        return SecretKeyRef(name=self.name, key=self.password_key)


# -- SmppConnection ----------------------------------------------------------------------


class BindType(StrEnum):
    TRANSCEIVER = "transceiver"
    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"


class LongMessages(StrEnum):
    """How a text longer than one SMS is split: UDH with an 8- or 16-bit reference,
    SAR TLVs, or one submit_sm with message_payload."""

    UDH8 = "udh8"
    UDH16 = "udh16"
    SAR = "sar"
    PAYLOAD = "payload"


class DefaultEncoding(StrEnum):
    """What data_coding 0 means to this SMSC. Texts outside it go as UCS-2."""

    GSM7 = "gsm7"
    LATIN1 = "latin1"


VALID_TON = (0, 1, 2, 3, 4, 5, 6)
VALID_NPI = (0, 1, 3, 4, 6, 8, 9, 10, 14, 18)


def _ton_npi(name: str, valid: tuple[int, ...], *, allow_auto: bool) -> Any:
    """An SMPP TON/NPI field: an integer from `valid`, or "auto" where allowed."""
    listed = ", ".join(map(str, valid))
    if allow_auto:
        rule = f"type(self) == string ? self == 'auto' : self in [{listed}]"
        message = f"{name} must be 'auto' or one of {listed}"
    else:
        rule = f"self in [{listed}]"
        message = f"{name} must be one of {listed}"

    def check(value: int | str) -> int | str:
        if isinstance(value, str):
            if allow_auto and value == "auto":
                return value
            raise ValueError(message)
        if value not in valid:
            raise ValueError(message)
        return value

    return AfterValidator(check), rule, message


_SRC_TON_CHECK, _SRC_TON_RULE, _SRC_TON_MSG = _ton_npi("sourceTon", VALID_TON, allow_auto=True)
_SRC_NPI_CHECK, _SRC_NPI_RULE, _SRC_NPI_MSG = _ton_npi("sourceNpi", VALID_NPI, allow_auto=True)
_DST_TON_CHECK, _DST_TON_RULE, _DST_TON_MSG = _ton_npi("destTon", VALID_TON, allow_auto=False)
_DST_NPI_CHECK, _DST_NPI_RULE, _DST_NPI_MSG = _ton_npi("destNpi", VALID_NPI, allow_auto=False)


class TlsConfig(_Wire):
    """TLS towards the SMSC. Off by default: most carriers still use plain SMPP on a VPN."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "(has(self.enabled) && self.enabled)"
                " || (!has(self.serverName) && !has(self.caSecretRef)"
                " && (!has(self.insecureSkipVerify) || !self.insecureSkipVerify))",
                "tls.serverName, tls.caSecretRef and tls.insecureSkipVerify "
                "require tls.enabled: true",
            ),
            (
                "!has(self.insecureSkipVerify) || !self.insecureSkipVerify"
                " || !has(self.caSecretRef)",
                "tls.insecureSkipVerify and tls.caSecretRef contradict each other; set one",
            ),
        )
    )

    enabled: bool = False
    server_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=HOST,
        description="name to verify in the certificate (default: host)",
    )
    ca_secret_ref: SecretKeyRef | None = Field(
        default=None, description="PEM CA bundle to trust instead of the system roots"
    )
    insecure_skip_verify: bool = Field(
        default=False, description="do not verify the certificate (testing only)"
    )

    @model_validator(mode="after")
    def _needs_enabled(self) -> TlsConfig:
        if not self.enabled:
            given = [
                wire
                for wire, value in (
                    ("serverName", self.server_name),
                    ("caSecretRef", self.ca_secret_ref),
                    ("insecureSkipVerify", self.insecure_skip_verify or None),
                )
                if value is not None
            ]
            if given:
                raise ValueError(
                    f"tls.{', tls.'.join(given)} set but tls.enabled is false; "
                    "set tls.enabled: true or remove them"
                )
        if self.insecure_skip_verify and self.ca_secret_ref is not None:
            raise ValueError(
                "tls.insecureSkipVerify and tls.caSecretRef contradict each other; set one"
            )
        return self


class Throughput(_Wire):
    """How fast this bind may submit, enforced by its connector."""

    tps: float | None = Field(
        default=None,
        gt=0,
        le=100000,
        description="submit_sm per second allowed by the carrier; null means unlimited",
    )
    window: int = Field(
        default=10, ge=1, le=1000, description="submit_sm awaiting a response at most"
    )


class KeepAlive(_Wire):
    """enquire_link keeps NAT and firewalls from dropping an idle bind."""

    enquire_link_seconds: Seconds = Field(default=30, description="idle time before enquire_link")
    response_timeout_seconds: Seconds = Field(
        default=10, description="time to wait for any response PDU before declaring it lost"
    )


class Reconnect(_Wire):
    """Exponential back-off between bind attempts."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.maxDelaySeconds) || !has(self.initialDelaySeconds)"
                " || self.maxDelaySeconds >= self.initialDelaySeconds",
                "reconnect.maxDelaySeconds must be >= reconnect.initialDelaySeconds",
            )
        )
    )

    initial_delay_seconds: Seconds = 1
    max_delay_seconds: Seconds = 60
    multiplier: float = Field(default=2, ge=1, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> Reconnect:
        if self.max_delay_seconds < self.initial_delay_seconds:
            raise ValueError(
                f"reconnect.maxDelaySeconds ({self.max_delay_seconds:g}) must be >= "
                f"reconnect.initialDelaySeconds ({self.initial_delay_seconds:g})"
            )
        return self


class Submit(_Wire):
    """How messages are put on the wire to this SMSC."""

    registered_delivery: bool = Field(default=True, description="ask for delivery receipts")
    source_ton: Annotated[
        int | str,
        _SRC_TON_CHECK,
        Field(
            json_schema_extra=_cel((_SRC_TON_RULE, _SRC_TON_MSG)),
            description="TON of the sender; auto: alphanumeric 5, short code 3, "
            "international 1, national 2",
        ),
    ] = "auto"
    source_npi: Annotated[
        int | str,
        _SRC_NPI_CHECK,
        Field(
            json_schema_extra=_cel((_SRC_NPI_RULE, _SRC_NPI_MSG)),
            description="NPI of the sender; auto: alphanumeric and short code 0, else 1",
        ),
    ] = "auto"
    dest_ton: Annotated[
        int, _DST_TON_CHECK, Field(json_schema_extra=_cel((_DST_TON_RULE, _DST_TON_MSG)))
    ] = 1
    dest_npi: Annotated[
        int, _DST_NPI_CHECK, Field(json_schema_extra=_cel((_DST_NPI_RULE, _DST_NPI_MSG)))
    ] = 1
    long_messages: LongMessages = LongMessages.UDH8
    default_encoding: DefaultEncoding = DefaultEncoding.GSM7
    service_type: str = Field(default="", max_length=5, description="SMPP service_type")
    max_attempts: int = Field(
        default=5, ge=1, le=100, description="submission attempts before giving up"
    )
    retry_delay_seconds: Seconds = Field(
        default=5, description="wait before retrying a throttled or failed submit"
    )


class ConnectionInbound(_Wire):
    """Where mobile-originated messages that arrive on this bind go."""

    application: ResourceName | None = Field(
        default=None,
        description="SmsApplication receiving MOs from this bind (otherwise matched by "
        "the applications' inbound.numbers)",
    )


class SmppConnectionSpec(_Wire):
    """One SMPP bind to an SMSC. smsmesh runs exactly one connector for it."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.inbound) || !has(self.inbound.application)"
                " || !has(self.bindType) || self.bindType != 'transmitter'",
                "inbound.application needs a bind that receives: bindType transceiver or receiver",
            )
        )
    )

    host: str = Field(min_length=1, max_length=253, pattern=HOST)
    port: int = Field(default=2775, ge=1, le=65535)
    credentials_secret_ref: CredentialsSecretRef
    system_type: str = Field(default="", max_length=12, description="SMPP system_type")
    bind_type: BindType = BindType.TRANSCEIVER
    tls: TlsConfig = Field(default_factory=TlsConfig)
    throughput: Throughput = Field(default_factory=Throughput)
    keep_alive: KeepAlive = Field(default_factory=KeepAlive)
    reconnect: Reconnect = Field(default_factory=Reconnect)
    submit: Submit = Field(default_factory=Submit)
    inbound: ConnectionInbound = Field(default_factory=ConnectionInbound)
    receipt_group: ResourceName | None = Field(
        default=None,
        description="SmppConnections naming the same group share their delivery receipts: "
        "a receipt arriving on any of their binds matches a message submitted on any "
        "other (binds of one SMSC account, e.g. a transmitter and a receiver)",
    )

    @model_validator(mode="after")
    def _inbound_needs_receiving_bind(self) -> SmppConnectionSpec:
        if self.inbound.application and self.bind_type == BindType.TRANSMITTER:
            raise ValueError(
                "inbound.application needs a bind that receives: bindType transceiver or receiver"
            )
        return self


class SmppConnectionStatus(ResourceStatus):
    """Live state of the bind, written by the operator from what the connector reports."""

    bound: bool | None = None
    achieved_tps: float | None = Field(default=None, description="submits/s, recent average")
    queue_depth: int | None = Field(default=None, description="messages waiting for this bind")
    last_error: str | None = None


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str  # string, integer, number, boolean, date
    json_path: str
    description: str = ""
    priority: int = 0  # 1: only with -o wide


@dataclass(frozen=True)
class CrdInfo:
    """What the CRD needs beyond the schema."""

    plural: str
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = ("smsmesh",)
    scope: str = "Namespaced"


_READY = PrinterColumn(
    "Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Ready condition"
)
_REASON = PrinterColumn(
    "Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', priority=1
)
_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")


class _Resource(_Wire):
    """Fields every smsmesh object has. Subclasses fix apiVersion, kind, spec and status."""

    # The API server only asks custom resource names to be subdomains; smsmesh names
    # become pod, Service and env-var names, so it asks for labels, as local mode does.
    # (A root rule cannot set fieldPath to metadata.name: kubectl shows the message only.)
    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "size(self.metadata.name) <= 63"
                " && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
                "metadata.name must be an RFC 1123 label: at most 63 lower-case letters, "
                "digits and '-'",
            )
        )
    )

    crd: ClassVar[CrdInfo]

    api_version: str
    kind: str
    metadata: ObjectMeta

    def manifest(self) -> dict[str, Any]:
        """The object as one would `kubectl apply` it: no status, no empty metadata maps."""
        out = self.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude={"status": True}
        )
        meta = out["metadata"]
        for key in ("labels", "annotations"):
            if not meta.get(key):
                meta.pop(key, None)
        return out

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def generation(self) -> int | None:
        return self.metadata.generation


class SmppConnection(_Resource):
    """An upstream SMPP bind to a carrier's SMSC: address, credentials (by Secret
    reference), bind type, TLS, throughput limit, window, keep-alive and reconnect policy."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="smppconnections",
        short_names=("smppconn", "smppc"),
        printer_columns=(
            PrinterColumn("Host", "string", ".spec.host"),
            PrinterColumn("Port", "integer", ".spec.port", priority=1),
            PrinterColumn("Bind", "boolean", ".status.bound", "bind is up"),
            PrinterColumn("Bind Type", "string", ".spec.bindType", priority=1),
            PrinterColumn("TPS", "number", ".status.achievedTps", "submits/s, last minute"),
            PrinterColumn("TPS Limit", "number", ".spec.throughput.tps"),
            PrinterColumn("Window", "integer", ".spec.throughput.window"),
            PrinterColumn("Queue", "integer", ".status.queueDepth", "messages waiting"),
            PrinterColumn("Last Error", "string", ".status.lastError", priority=1),
            _READY,
            _REASON,
            _AGE,
        ),
    )

    api_version: Literal["smsmesh.io/v1alpha1"] = "smsmesh.io/v1alpha1"
    kind: Literal["SmppConnection"] = "SmppConnection"
    spec: SmppConnectionSpec
    status: SmppConnectionStatus = Field(default_factory=SmppConnectionStatus)


# -- SmsRoute ----------------------------------------------------------------------------


class PriorityClass(StrEnum):
    """Message priority lanes, as applications name them."""

    BULK = "bulk"
    NORMAL = "normal"
    HIGH = "high"


class RouteMatch(_Wire):
    """Which messages the route takes. All given criteria must match (AND); the values
    within one criterion are alternatives (OR). An empty match takes every message."""

    destination_prefixes: list[DigitPrefix] = Field(default_factory=list, max_length=256)
    countries: list[Annotated[str, Field(pattern=COUNTRY)]] = Field(
        default_factory=list,
        max_length=256,
        description="ISO 3166-1 alpha-2 codes (upper case) of the destination",
    )
    senders: list[SenderGlob] = Field(default_factory=list, max_length=64)
    applications: list[ResourceName] = Field(
        default_factory=list, max_length=64, description="SmsApplication names"
    )
    priorities: list[PriorityClass] = Field(default_factory=list, max_length=3)

    @field_validator("senders")
    @classmethod
    def _normalize_senders(cls, globs: list[str]) -> list[str]:
        return [normalize_sender_glob(g) for g in globs]

    @field_validator("countries", mode="before")
    @classmethod
    def _hint_upper_case(cls, value: Any) -> Any:
        if isinstance(value, list):
            for item in value:
                if isinstance(item, str) and re.fullmatch(r"[a-z]{2}", item):
                    raise ValueError(f"country {item!r} must be upper case: {item.upper()!r}")
        return value


class RouteTarget(_Wire):
    """A connection this route can use."""

    connection: ResourceName = Field(description="SmppConnection name (same namespace)")
    weight: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="share of first attempts among available targets; 0 = failover only. "
        "Set on every target of the route or on none",
    )


class SmsRouteSpec(_Wire):
    """Which messages go where, in what order of preference."""

    priority: int = Field(default=100, ge=0, le=1_000_000, description="lower is evaluated first")
    match: RouteMatch = Field(default_factory=RouteMatch)
    targets: list[RouteTarget] = Field(
        min_length=1,
        max_length=16,
        description="connections in order of preference; later ones are failover",
        json_schema_extra=_cel(
            (
                "self.all(t, self.exists_one(u, u.connection == t.connection))",
                "each connection may appear only once in targets",
            ),
            (
                "self.all(t, has(t.weight)) || self.all(t, !has(t.weight))",
                "set weight on every target or on none",
            ),
        ),
    )

    @field_validator("targets")
    @classmethod
    def _targets_consistent(cls, targets: list[RouteTarget]) -> list[RouteTarget]:
        seen: set[str] = set()
        for target in targets:
            if target.connection in seen:
                raise ValueError(
                    f"connection {target.connection!r} appears more than once in targets"
                )
            seen.add(target.connection)
        weighted = [t.weight is not None for t in targets]
        if any(weighted) and not all(weighted):
            raise ValueError("set weight on every target or on none")
        return targets


class SmsRouteStatus(ResourceStatus):
    """Whether the route's references resolve (`ResolvedRefs`) and it is in use (`Ready`)."""


class SmsRoute(_Resource):
    """A routing rule: messages matching `match` go to `targets`, first available first.
    Routes are evaluated by ascending priority, then name; the first match wins."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="smsroutes",
        short_names=("smsroute",),
        printer_columns=(
            PrinterColumn("Priority", "integer", ".spec.priority"),
            PrinterColumn("Targets", "string", ".spec.targets[*].connection"),
            _READY,
            _AGE,
        ),
    )

    api_version: Literal["smsmesh.io/v1alpha1"] = "smsmesh.io/v1alpha1"
    kind: Literal["SmsRoute"] = "SmsRoute"
    spec: SmsRouteSpec
    status: SmsRouteStatus = Field(default_factory=SmsRouteStatus)


# -- SmsApplication ----------------------------------------------------------------------


class ApplicationInbound(_Wire):
    """Mobile-originated messages for this application."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.numbers) || size(self.numbers) == 0 || has(self.webhookUrl)",
                "inbound.numbers needs inbound.webhookUrl to deliver to",
            )
        )
    )

    webhook_url: HttpUrl | None = Field(default=None, description="POST target for MOs")
    numbers: list[InboundNumber] = Field(
        default_factory=list,
        max_length=256,
        description="destination numbers or prefixes of MOs that belong to this application",
    )

    @model_validator(mode="after")
    def _numbers_need_webhook(self) -> ApplicationInbound:
        if self.numbers and not self.webhook_url:
            raise ValueError("inbound.numbers needs inbound.webhookUrl to deliver to")
        return self


MAX_VALIDITY_SECONDS = 7 * 86400


class SmsApplicationSpec(_Wire):
    """An application allowed to send: its API keys, senders and callbacks."""

    api_key_secret_refs: list[SecretKeyRef] = Field(
        min_length=1,
        max_length=8,
        description="Secrets holding API keys; several allow rotation without downtime",
    )
    default_sender: str | None = Field(
        default=None,
        max_length=16,
        description="sender used when a request has none (must fit allowedSenders)",
    )
    allowed_senders: list[SenderGlob] = Field(
        default_factory=list, max_length=64, description="globs; empty allows any sender"
    )
    callback_url: HttpUrl | None = Field(
        default=None, description="default URL for delivery-status webhooks"
    )
    inbound: ApplicationInbound = Field(default_factory=ApplicationInbound)
    max_tps: float | None = Field(
        default=None, gt=0, le=100000, description="messages/s this application may send"
    )
    default_validity_seconds: int = Field(
        default=86400,
        ge=60,
        le=MAX_VALIDITY_SECONDS,
        description="how long a message may wait for delivery (at most 7 days)",
    )

    @field_validator("allowed_senders")
    @classmethod
    def _normalize_senders(cls, globs: list[str]) -> list[str]:
        # "+3161*" and "3161*" both match the sender value "31612345678".
        return [normalize_sender_glob(g) for g in globs]

    @field_validator("default_sender")
    @classmethod
    def _sender_is_valid(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            # Kept as written: "+6834002" must stay international, its digits alone
            # would read as a short code.
            classify_sender(value)
            return value.strip()
        except AddressError as exc:
            raise ValueError(exc.message) from None

    @model_validator(mode="after")
    def _default_sender_allowed(self) -> SmsApplicationSpec:
        # Not expressible in CEL without a glob function; the operator reports it too.
        if (
            self.default_sender
            and self.allowed_senders
            and not any(
                fnmatchcase(classify_sender(self.default_sender).value, g)
                for g in self.allowed_senders
            )
        ):
            raise ValueError(
                f"defaultSender {self.default_sender!r} is not in allowedSenders "
                f"{self.allowed_senders}"
            )
        return self


class SmsApplicationStatus(ResourceStatus):
    """Whether the API key Secrets resolve."""


class SmsApplication(_Resource):
    """An application (account) allowed to send through smsmesh, and where its delivery
    receipts and inbound messages go."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="smsapplications",
        short_names=("smsapp",),
        printer_columns=(
            PrinterColumn("Default Sender", "string", ".spec.defaultSender"),
            PrinterColumn("Senders", "string", ".spec.allowedSenders"),
            PrinterColumn("Max TPS", "number", ".spec.maxTps", priority=1),
            _READY,
            _AGE,
        ),
    )

    api_version: Literal["smsmesh.io/v1alpha1"] = "smsmesh.io/v1alpha1"
    kind: Literal["SmsApplication"] = "SmsApplication"
    spec: SmsApplicationSpec
    status: SmsApplicationStatus = Field(default_factory=SmsApplicationStatus)


# -- SmscSimulator -----------------------------------------------------------------------


class ReceiptOutcome(StrEnum):
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"
    MIXED = "mixed"  # a deterministic mix of the above, for dashboards and tests


class SmscSimulatorSpec(_Wire):
    """A fake SMSC for local mode and tests. Never point production traffic at it."""

    host: str = Field(default="127.0.0.1", max_length=253, pattern=HOST)
    port: int = Field(default=2775, ge=1, le=65535)
    credentials_secret_ref: CredentialsSecretRef | None = Field(
        default=None, description="binds must present these credentials; unset accepts any"
    )
    receipt_delay_seconds: float = Field(default=1, ge=0, le=3600)
    receipt_outcome: ReceiptOutcome = ReceiptOutcome.DELIVERED
    throttle_tps: float | None = Field(
        default=None, gt=0, le=100000, description="answer ESME_RTHROTTLED above this rate"
    )
    error_rate: float = Field(
        default=0, ge=0, le=1, description="share of submits answered with an error"
    )
    mo_interval_seconds: float | None = Field(
        default=None, gt=0, le=86400, description="send a mobile-originated message this often"
    )


class SmscSimulatorStatus(ResourceStatus):
    pass


class SmscSimulator(_Resource):
    """FOR LOCAL MODE AND TESTS ONLY: an SMSC simulator that accepts binds, answers
    submits and sends delivery receipts. Useful in-cluster for test setups."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="smscsimulators",
        short_names=("smscsim",),
        printer_columns=(
            PrinterColumn("Host", "string", ".spec.host"),
            PrinterColumn("Port", "integer", ".spec.port"),
            PrinterColumn("Outcome", "string", ".spec.receiptOutcome"),
            _READY,
            _AGE,
        ),
    )

    api_version: Literal["smsmesh.io/v1alpha1"] = "smsmesh.io/v1alpha1"
    kind: Literal["SmscSimulator"] = "SmscSimulator"
    spec: SmscSimulatorSpec
    status: SmscSimulatorStatus = Field(default_factory=SmscSimulatorStatus)


# -- Secret (core/v1), local mode only ---------------------------------------------------


class Secret(_Wire):
    """A core/v1 Secret, read from YAML in local mode (in a cluster, the API server's).

    `stringData` wins over `data` for the same key, as the API server merges them.
    Values are never shown in errors or repr.
    """

    # Validation errors must never print a Secret's data, even via str(exc).
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    api_version: Literal["v1"] = "v1"
    kind: Literal["Secret"] = "Secret"
    metadata: SecretMeta
    type: str | None = None
    data: dict[str, str] = Field(default_factory=dict, repr=False)
    string_data: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("data")
    @classmethod
    def _base64(cls, data: dict[str, str]) -> dict[str, str]:
        for key, value in data.items():
            try:
                base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise ValueError(
                    f"data.{key} is not base64-encoded UTF-8 (use stringData for plain text)"
                ) from None
        return data

    @property
    def name(self) -> str:
        return self.metadata.name

    def keys(self) -> list[str]:
        return sorted(set(self.data) | set(self.string_data))

    def get(self, key: str) -> str:
        """The decoded value of `key`; `KeyError` naming the Secret and its keys if absent."""
        if key in self.string_data:
            return self.string_data[key]
        if key in self.data:
            return base64.b64decode(self.data[key]).decode("utf-8")
        raise KeyError(
            f"Secret {self.metadata.name!r} has no key {key!r} (keys: {', '.join(self.keys())})"
        )


Resource = SmppConnection | SmsRoute | SmsApplication | SmscSimulator
CUSTOM_KINDS: tuple[type[_Resource], ...] = (
    SmppConnection,
    SmsRoute,
    SmsApplication,
    SmscSimulator,
)
KINDS: dict[tuple[str, str], type[_Resource] | type[Secret]] = {
    **{(API_VERSION, cls.__name__): cls for cls in CUSTOM_KINDS},
    ("v1", "Secret"): Secret,
}

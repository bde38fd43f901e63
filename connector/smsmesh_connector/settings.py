"""Everything one connector process needs to know, resolved once at start-up.

`ConnectorSettings` is a frozen value built from an `SmppConnection` (plus the Secret
holding its credentials and the application that receives its MOs), so the rest of
the connector never touches resource models or Secrets. The password is kept out of
`repr` so that logging the settings (or an exception carrying them) cannot leak it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from smsmesh.addresses import classify_sender
from smsmesh.resources import ResourceError, ResourceSet, SmppConnection, load_folder
from smsmesh.smpp.pdu import BindType
from smsmesh.smpp.text import Encoding, SplitMode

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS towards the SMSC. Certificates are verified (hostname included) unless
    `insecure`; `ca_data` (PEM text) or `ca_file` replace the system roots."""

    enabled: bool = False
    server_name: str | None = None
    ca_file: str | None = None
    ca_data: str | None = field(default=None, repr=False)
    insecure: bool = False

    def context(self) -> ssl.SSLContext | None:
        """The client context to connect with, or None for plain TCP."""
        if not self.enabled:
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


@dataclass(frozen=True, slots=True)
class Addressing:
    """TON/NPI policy: `None` for the source means "derive from the sender" (auto)."""

    source_ton: int | None = None
    source_npi: int | None = None
    dest_ton: int = 1
    dest_npi: int = 1

    def source(self, sender: str) -> tuple[int, int]:
        """TON and NPI for `sender`; raises AddressError when auto cannot classify it."""
        ton, npi = self.source_ton, self.source_npi
        if ton is None or npi is None:
            kind = classify_sender(sender)
            ton = kind.ton if ton is None else ton
            npi = kind.npi if npi is None else npi
        return ton, npi


@dataclass(frozen=True, slots=True)
class ConnectorSettings:
    name: str
    store_url: str
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str = ""
    bind_type: BindType = BindType.TRANSCEIVER
    tls: TlsSettings = field(default_factory=TlsSettings)
    # -- throughput ----------------------------------------------------------------------
    tps: float | None = None
    window: int = 10
    claim_batch: int | None = None  # messages in progress at most; None: 2 x window
    # -- timers --------------------------------------------------------------------------
    enquire_link_interval: float = 30.0
    response_timeout: float = 10.0
    connect_timeout: float = 10.0
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0
    reconnect_multiplier: float = 2.0
    stable_bind_seconds: float = 30.0  # a bind that lasted this long resets the backoff
    state_interval: float = 2.0
    drain_timeout: float = 20.0
    # -- submission ----------------------------------------------------------------------
    long_messages: SplitMode = SplitMode.UDH8
    # What data_coding 0 means to this SMSC: GSM7 (the SMPP default) or Latin-1.
    default_alphabet: Encoding = Encoding.GSM7
    # With a GSM7 default: send Latin-1 texts as data_coding 3 instead of UCS-2.
    allow_latin1: bool = False
    registered_delivery: bool = True
    # Receipts are matched across every connection with the same group (empty: none).
    receipt_group: str = ""
    service_type: str = ""
    addressing: Addressing = field(default_factory=Addressing)
    max_attempts: int = 5
    retry_delay: float = 5.0
    # -- inbound -------------------------------------------------------------------------
    inbound_application: str | None = None
    inbound_webhook_url: str | None = None
    # Without inbound_application: (number prefix digits, application, webhook URL) of
    # the applications' inbound.numbers; an MO goes to the longest matching prefix.
    inbound_numbers: tuple[tuple[str, str, str], ...] = ()
    # How long a part of a concatenated MO waits (unacknowledged) for its siblings so
    # the whole text is stored as one message; 0 stores every part on its own at once.
    mo_reassembly_wait: float = 1.0

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("window must be at least 1")
        if self.claim_batch is not None and self.claim_batch < 1:
            raise ValueError("claim_batch must be at least 1")
        if self.tps is not None and self.tps <= 0:
            raise ValueError("tps must be positive or None")
        if self.default_alphabet not in (Encoding.GSM7, Encoding.LATIN1):
            raise ValueError("default_alphabet must be gsm7 or latin1")

    def inbound_target(self, destination: str) -> tuple[str | None, str | None]:
        """(application, webhook URL) for an MO sent to `destination`; (None, None) when
        no application claims it (it is stored, no webhook is sent)."""
        if self.inbound_application is not None:
            return self.inbound_application, self.inbound_webhook_url
        digits = destination.lstrip("+")
        best: tuple[str, str, str] | None = None
        for entry in self.inbound_numbers:
            if digits.startswith(entry[0]) and (best is None or len(entry[0]) > len(best[0])):
                best = entry
        return (best[1], best[2]) if best is not None else (None, None)

    @property
    def in_progress_limit(self) -> int:
        """How many claimed messages may be in progress (claimed, not yet recorded)."""
        return self.claim_batch if self.claim_batch is not None else 2 * self.window


def _policy(value: int | str) -> int | None:
    return None if value == AUTO else int(value)


def settings_from_connection(
    connection: SmppConnection, resources: ResourceSet, store_url: str
) -> ConnectorSettings:
    """Resolve an SmppConnection (credentials, CA, inbound application) into settings.

    Raises ResourceError (never quoting a secret) when a referenced Secret, key or
    application is missing.
    """
    spec = connection.spec
    creds = spec.credentials_secret_ref
    system_id = resources.secret_value(creds.system_id_ref())
    password = resources.secret_value(creds.password_ref())
    ca_data = None
    if spec.tls.ca_secret_ref is not None:
        ca_data = resources.secret_value(spec.tls.ca_secret_ref)
    inbound_app = spec.inbound.application
    webhook_url = None
    if inbound_app is not None:
        app = resources.applications.get(inbound_app)
        if app is None:
            raise ResourceError(
                f"inbound.application {inbound_app!r} does not exist",
                kind="SmppConnection",
                name=connection.name,
            )
        webhook_url = app.spec.inbound.webhook_url
    numbers: list[tuple[str, str, str]] = []
    if inbound_app is None and spec.bind_type != "transmitter":
        for app_name, app in sorted(resources.applications.items()):
            url = app.spec.inbound.webhook_url
            if url:
                numbers.extend((n.lstrip("+"), app_name, url) for n in app.spec.inbound.numbers)
    submit = spec.submit
    return ConnectorSettings(
        name=connection.name,
        store_url=store_url,
        host=spec.host,
        port=spec.port,
        system_id=system_id,
        password=password,
        system_type=spec.system_type,
        bind_type=BindType(spec.bind_type.value),
        tls=TlsSettings(
            enabled=spec.tls.enabled,
            server_name=spec.tls.server_name,
            ca_data=ca_data,
            insecure=spec.tls.insecure_skip_verify,
        ),
        tps=spec.throughput.tps,
        window=spec.throughput.window,
        enquire_link_interval=spec.keep_alive.enquire_link_seconds,
        response_timeout=spec.keep_alive.response_timeout_seconds,
        reconnect_initial=spec.reconnect.initial_delay_seconds,
        reconnect_max=spec.reconnect.max_delay_seconds,
        reconnect_multiplier=spec.reconnect.multiplier,
        long_messages=SplitMode(submit.long_messages.value),
        default_alphabet=Encoding(submit.default_encoding.value),
        registered_delivery=submit.registered_delivery,
        receipt_group=spec.receipt_group or "",
        service_type=submit.service_type,
        addressing=Addressing(
            source_ton=_policy(submit.source_ton),
            source_npi=_policy(submit.source_npi),
            dest_ton=submit.dest_ton,
            dest_npi=submit.dest_npi,
        ),
        max_attempts=submit.max_attempts,
        retry_delay=submit.retry_delay_seconds,
        inbound_application=inbound_app,
        inbound_webhook_url=webhook_url,
        inbound_numbers=tuple(numbers),
    )


def load_settings(folder: Path, connection_name: str, store_url: str) -> ConnectorSettings:
    """Read the resource folder and resolve the named SmppConnection."""
    resources = load_folder(folder)
    connection = resources.connections.get(connection_name)
    if connection is None:
        known = ", ".join(sorted(resources.connections)) or "none"
        raise ResourceError(
            f"SmppConnection {connection_name!r} not found in {folder} (found: {known})"
        )
    return settings_from_connection(connection, resources, store_url)


__all__ = [
    "AUTO",
    "Addressing",
    "ConnectorSettings",
    "TlsSettings",
    "load_settings",
    "settings_from_connection",
]
